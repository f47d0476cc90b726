"""The feedback loop on a real worker: a reward on a recommended item changes the user's next
recommendation, and the worker's metrics count rewards and score challengers.

One worker serves the module (a group join costs seconds); every test uses its own users.
"""

from __future__ import annotations

import time
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.admin import ensure_topics
from streams.codecs import encode, encode_event
from streams.produce import item_record
from streams.records import Event, ItemUpdate
from tests.conftest import Env, start_worker, wait_until
from tests.integration.kafka_helpers import recommendations, send_all

pytestmark = pytest.mark.integration

CATALOG = ([(f"shoe-{n:02d}", "shoes") for n in range(15)]
           + [(f"bag-{n:02d}", "bags") for n in range(15)]
           + [(f"hat-{n:02d}", "hats") for n in range(15)])
CATEGORY = dict(CATALOG)
NON_PERSONAL = {"popularity", "context", "explore"}


def now_ms() -> int:
    return int(time.time() * 1000)


def event(user: str, item: str | None, kind: str = "view", **extra) -> tuple[bytes, bytes, list]:
    ev = Event(extra.pop("event_id", f"e-{uuid.uuid4().hex}"), user, item, kind, now_ms(), **extra)
    return (user.encode(), *encode_event(ev, "json"))


@pytest.fixture(scope="module")
def live(broker, tmp_path_factory):
    env = Env(broker, tmp_path_factory.mktemp("feedback"),
              extra={"MICROMOMENT_TOP_K": "8", "MICROMOMENT_CHECKPOINT_INTERVAL": "0"})
    settings = env.settings
    ensure_topics(settings)
    items = [(item.encode(), *encode("item", item_record(ItemUpdate(item, categories=(cat,))),
                                     "json")) for item, cat in CATALOG]
    send_all(broker.bootstrap, settings.topic_items, items)
    worker = start_worker(env)
    # Everybody's popularity: the first three items of each category are the bestsellers,
    # so a new user's (non-personalized) list mixes the three categories.
    clicks = [item for item, _ in CATALOG] + [item for item, _ in CATALOG
                                              if int(item[-2:]) < 3] * 3
    warm = [event(f"warm-{n % 7}", item, "click") for n, item in enumerate(clicks)]
    send_all(broker.bootstrap, settings.topic_events, warm)
    yield env, settings, worker
    worker.stop()


def rec_for(live, trigger_id: str, timeout: float = 30) -> dict:
    env, settings, _ = live
    recs = recommendations(env.broker.bootstrap, settings.topic_recommendations,
                           until=lambda rs: any(r["trigger_event_id"] == trigger_id for r in rs),
                           timeout=timeout)
    return next(r for r in recs if r["trigger_event_id"] == trigger_id)


def send_event(live, record: tuple[bytes, bytes, list]) -> None:
    env, settings, _ = live
    send_all(env.broker.bootstrap, settings.topic_events, [record])


def ask(live, user: str) -> dict:
    trigger = f"req-{uuid.uuid4().hex}"
    send_event(live, event(user, None, "recommendation_request", event_id=trigger))
    return rec_for(live, trigger)


def scrape(worker) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(worker.url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples, name, **labels) -> float:
    return sum(value for (n, lbls), value in samples.items()
               if n == name and all(dict(lbls).get(k) == v for k, v in labels.items()))


def test_a_reward_on_a_recommended_item_changes_the_next_recommendation(live):
    user = "rewarder"
    first = ask(live, user)  # a brand-new user: the non-personalized list
    assert first["strategy"] == "champion"
    assert all(0.0 < item["propensity"] <= 1.0 for item in first["items"])
    assert {item["source"] for item in first["items"]} <= NON_PERSONAL, first["items"]
    clicked = next(item["item_id"] for item in first["items"]
                   if CATEGORY.get(item["item_id"]) == "hats")
    # The click carries the recommendation's id: a reward for that impression. A click is
    # also a trigger, so the answer to it is the user's next recommendation.
    click_id = f"click-{uuid.uuid4().hex}"
    send_event(live, event(user, clicked, "click", event_id=click_id,
                           recommendation_id=first["recommendation_id"]))
    second = rec_for(live, click_id)
    ids = [item["item_id"] for item in second["items"]]
    assert ids != [item["item_id"] for item in first["items"]]
    assert clicked not in ids
    hats = [item for item in second["items"] if CATEGORY.get(item["item_id"]) == "hats"]
    first_hats = [item for item in first["items"] if CATEGORY.get(item["item_id"]) == "hats"]
    assert len(hats) > len(first_hats), second["items"]
    assert any(clicked in item["reason"] and item["source"] not in NON_PERSONAL
               for item in hats), hats


def test_rewards_and_strategies_show_in_the_metrics(live):
    worker = live[2]
    user = "metric-clicker"
    rec = ask(live, user)
    for item in rec["items"][:2]:
        send_event(live, event(user, item["item_id"], "click",
                               recommendation_id=rec["recommendation_id"]))
    send_event(live, event(user, rec["items"][2]["item_id"], "add_to_cart",
                           recommendation_id=rec["recommendation_id"]))

    def counted():
        samples = scrape(worker)
        return samples if (total(samples, "micromoment_rewards_total", event_type="click") >= 2
                           and total(samples, "micromoment_rewards_total",
                                     event_type="add_to_cart") >= 1) else None

    samples = wait_until(counted, timeout=20, message="rewards counted in /metrics")
    strategies = {dict(labels)["strategy"] for name, labels in samples
                  if name == "micromoment_online_hit_rate"}
    assert "champion" in strategies and len(strategies) >= 2, strategies
    assert ("micromoment_exploration_share", ()) in samples
    assert ("micromoment_bursts_skipped_total", ()) in samples
