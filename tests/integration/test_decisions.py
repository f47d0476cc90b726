"""The decision loop on the real embedded broker and a real worker process.

Requests go in on ``decisions`` (JSON and Avro), answers are read back from
``decisions.out``, rewards go in on ``rewards``, and the policy's change shows in the
next answers and in ``GET /decisions``. One worker serves the module.
"""

from __future__ import annotations

import json
import time
import uuid

import orjson
import pytest

from streams.admin import ensure_topics
from streams.codecs import decode, encode
from tests.conftest import Env, start_worker, wait_until
from tests.integration.kafka_helpers import dead_letters, read_topic, send_all

pytestmark = pytest.mark.integration

ACTIONS = [{"id": "beach", "features": {"tone": "warm"}},
           {"id": "city", "features": {"tone": "cold"}},
           {"id": "forest", "features": {"tone": "cold", "green": 1.0}}]
POINTS = {"homepage-hero": {"policy": "epsilon-greedy", "epsilon": 0.1},
          "push-timing": {"policy": "thompson", "reward_window_s": 1.0, "default_reward": 0.0}}
SETS = {"push-times": [{"id": "morning"}, {"id": "noon"}, {"id": "evening"}]}


@pytest.fixture(scope="module")
def live(broker, tmp_path_factory):
    env = Env(broker, tmp_path_factory.mktemp("decisions"))
    p = env.prefix
    env.extra.update({"MICROMOMENT_TOPIC_DECISIONS": f"{p}-decisions",
                      "MICROMOMENT_TOPIC_DECISIONS_OUT": f"{p}-decisions.out",
                      "MICROMOMENT_TOPIC_REWARDS": f"{p}-rewards",
                      "MICROMOMENT_DECISION_POINTS": json.dumps(POINTS),
                      "MICROMOMENT_DECISION_ACTION_SETS": json.dumps(SETS)})
    settings = env.settings
    ensure_topics(settings)
    worker = start_worker(env)
    yield env, settings, worker
    worker.stop()


def request(user: str, point: str = "homepage-hero", **extra) -> dict:
    body = {"decision_id": f"d-{uuid.uuid4().hex}", "decision_point": point, "user_id": user,
            "context": {"device": "mobile"}, "actions": ACTIONS}
    body.update(extra)
    return body


def as_record(body: dict, fmt: str = "json") -> tuple[bytes, bytes, list]:
    value, headers = encode("decision_request", body, fmt)
    return body["user_id"].encode(), value, headers


def reward_record(user: str, decision_id: str, value: float, **extra) -> tuple[bytes, bytes, list]:
    body = {"decision_id": decision_id, "value": value, "timestamp": int(time.time() * 1000),
            **extra}
    return user.encode(), orjson.dumps(body), [("content-type", b"application/json")]


def decisions_for(live, ids: set[str], timeout: float = 60) -> dict[str, list[dict]]:
    env, settings, _ = live
    box: dict[str, list[dict]] = {}

    def until(records) -> bool:
        box.clear()
        for r in records:
            d = dict(decode("decision", r.value, r.headers), _key=r.key)
            box.setdefault(d["decision_id"], []).append(d)
        return ids <= set(box)

    read_topic(env.broker.bootstrap, settings.topic_decisions_out, until=until, timeout=timeout)
    return box


def hero(worker) -> dict:
    return worker.get("/decisions")[1]["points"]["homepage-hero"]


def test_rewards_change_the_policy(live):
    env, settings, worker = live
    users = [f"hero-user-{n}" for n in range(40)]
    first = [request(u) for u in users]
    send_all(env.broker.bootstrap, settings.topic_decisions, [as_record(b) for b in first])
    answers = decisions_for(live, {b["decision_id"] for b in first})
    for body in first:
        (answer,) = answers[body["decision_id"]]
        assert answer["_key"] == body["user_id"].encode()
        assert answer["decision_point"] == "homepage-hero"
        assert sorted(a["id"] for a in answer["actions"]) == ["beach", "city", "forest"]
        assert sum(a["probability"] for a in answer["actions"]) == pytest.approx(1.0)
        assert answer["actions"][0]["slot_probability"] == answer["actions"][0]["probability"]
    # The environment: only "forest" is ever clicked.
    shown = {b["decision_id"]: answers[b["decision_id"]][0]["actions"][0]["id"] for b in first}
    rewards = [reward_record(b["user_id"], b["decision_id"],
                             1.0 if shown[b["decision_id"]] == "forest" else 0.0) for b in first]
    send_all(env.broker.bootstrap, settings.topic_rewards, rewards)
    wait_until(lambda: hero(worker)["rewards_received"] == 40, timeout=60,
               message="40 rewards applied")
    stats = worker.get("/decisions")[1]["points"]["homepage-hero"]
    assert stats["policy_version"] == "epsilon-greedy@40"

    after = request("hero-user-after")
    send_all(env.broker.bootstrap, settings.topic_decisions, [as_record(after, "avro")])
    (answer,) = decisions_for(live, {after["decision_id"]})[after["decision_id"]]
    probabilities = {a["id"]: a["probability"] for a in answer["actions"]}
    assert probabilities["forest"] == pytest.approx(0.9 + 0.1 / 3)
    assert answer["policy_version"] == "epsilon-greedy@40"
    status, metrics = 200, worker.get("/decisions")[1]
    assert status == 200 and metrics["counts"]["reward_applied"] >= 40


def test_redelivered_request_and_reward_are_applied_once(live):
    env, settings, worker = live
    body = request("dup-user")
    send_all(env.broker.bootstrap, settings.topic_decisions, [as_record(body), as_record(body)])
    answers = decisions_for(live, {body["decision_id"]})
    wait_until(lambda: len(decisions_for(live, {body["decision_id"]})[body["decision_id"]]) == 2,
               timeout=30, message="the redelivered request answered again")
    first, again = decisions_for(live, {body["decision_id"]})[body["decision_id"]]
    assert first == again  # the stored answer, not a second draw
    before = worker.get("/decisions")[1]["points"]["homepage-hero"]["rewards_received"]
    reward = reward_record("dup-user", body["decision_id"], 1.0)
    send_all(env.broker.bootstrap, settings.topic_rewards, [reward, reward])
    wait_until(lambda: worker.get("/decisions")[1]["counts"].get("duplicate_reward", 0) >= 1,
               timeout=30, message="the duplicate reward seen")
    assert worker.get("/decisions")[1]["points"]["homepage-hero"]["rewards_received"] == before + 1
    assert answers  # the first read saw it too


def test_invalid_requests_and_stray_rewards_are_dead_lettered(live):
    env, settings, worker = live
    empty = request("bad-user", actions=[])
    dup = request("bad-user", actions=[{"id": "x"}, {"id": "x"}])
    nan = request("bad-user")
    nan_bytes = orjson.dumps(nan).replace(b'"device":"mobile"', b'"hour":NaN')
    wrong_key = request("bad-user")
    send_all(env.broker.bootstrap, settings.topic_decisions, [
        as_record(empty), as_record(dup), (b"bad-user", nan_bytes, []),
        (b"someone-else", orjson.dumps(wrong_key), [])])
    send_all(env.broker.bootstrap, settings.topic_rewards,
             [reward_record("bad-user", "never-decided", 1.0)])
    letters = dead_letters(env.broker.bootstrap, settings.topic_dead_letters,
                           until=lambda ls: len([x for x in ls if x["topic"] in (
                               settings.topic_decisions, settings.topic_rewards)]) >= 5)
    by_type = {x["error_type"]: x for x in letters
               if x["topic"] in (settings.topic_decisions, settings.topic_rewards)}
    assert {"no_actions", "duplicate_action", "invalid_json", "key_mismatch",
            "unknown_decision"} <= set(by_type)
    assert by_type["no_actions"]["value"] == as_record(empty)[1]  # original bytes kept
    assert "more than once" in by_type["duplicate_action"]["reason"]


def test_reward_window_closes_with_the_default_and_late_rewards_are_rejected(live):
    env, settings, worker = live
    body = request("push-user", point="push-timing", actions=None, action_set="push-times",
                   context={"weekday": "sat"})
    send_all(env.broker.bootstrap, settings.topic_decisions, [as_record(body)])
    (answer,) = decisions_for(live, {body["decision_id"]})[body["decision_id"]]
    assert sorted(a["id"] for a in answer["actions"]) == ["evening", "morning", "noon"]
    wait_until(lambda: worker.get("/decisions")[1]["points"]["push-timing"][
                   "rewards_defaulted"] >= 1,
               timeout=30, message="the default reward after the 1 s window")
    send_all(env.broker.bootstrap, settings.topic_rewards,
             [reward_record("push-user", body["decision_id"], 1.0)])
    letters = dead_letters(env.broker.bootstrap, settings.topic_dead_letters,
                           until=lambda ls: any(x["error_type"] == "decision_closed" for x in ls))
    late = next(x for x in letters if x["error_type"] == "decision_closed")
    assert "expired" in late["reason"]
    stats = worker.get("/decisions")[1]["points"]["push-timing"]
    assert stats["rewards_received"] == 0 and stats["reward_rate"] == 0.0
