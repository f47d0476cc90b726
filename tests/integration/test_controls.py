"""The user stays in control, on a real worker: muted categories and items, personalization
strength, "reset my history", and cold start for a brand-new user and a brand-new item.

One worker serves the module (a group join costs seconds); every test uses its own users.
Controls travel on ``users`` and events on ``events``: two topics, so a test waits until
the worker shows the profile (``GET /users/{id}``) before asking for a recommendation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from streams.admin import ensure_topics
from streams.codecs import encode, encode_event
from streams.produce import item_record
from streams.records import Event, ItemUpdate
from tests.conftest import Env, start_worker, wait_until
from tests.integration.kafka_helpers import read_topic, recommendations, send_all

pytestmark = pytest.mark.integration

#: 20 shoes, 17 bags, 3 hats: few enough hats that a new one can reach a top 10.
CATALOG = ([(f"shoe-{n:02d}", "shoes") for n in range(20)]
           + [(f"bag-{n:02d}", "bags") for n in range(17)]
           + [(f"hat-{n:02d}", "hats") for n in range(3)])
CATEGORY = dict(CATALOG)
#: Sources that use nothing learned about the user.
NON_PERSONAL = {"popularity", "context", "explore"}


def now_ms() -> int:
    return int(time.time() * 1000)


def event(user: str, item: str | None, kind: str = "view", **extra) -> tuple[bytes, bytes, list]:
    ev = Event(extra.pop("event_id", f"e-{uuid.uuid4().hex}"), user, item, kind, now_ms(), **extra)
    return (user.encode(), *encode_event(ev, "json"))


def request(user: str, event_id: str) -> tuple[bytes, bytes, list]:
    return event(user, None, "recommendation_request", event_id=event_id)


def user_record(data: dict, fmt: str = "json") -> tuple[bytes, bytes, list]:
    return (data["user_id"].encode(), *encode("user", data, fmt))


@pytest.fixture(scope="module")
def live(broker, tmp_path_factory):
    env = Env(broker, tmp_path_factory.mktemp("controls"),
              extra={"MICROMOMENT_TOP_K": "10", "MICROMOMENT_CHECKPOINT_INTERVAL": "0"})
    settings = env.settings
    ensure_topics(settings)
    items = [(item.encode(), *encode("item", item_record(ItemUpdate(item, categories=(cat,))),
                                     "json")) for item, cat in CATALOG]
    send_all(broker.bootstrap, settings.topic_items, items)
    worker = start_worker(env)
    # Everybody's popularity: bags most popular, so a shoe lover's list is not popularity.
    warm = [event(f"warm-{n % 9}", item, "click") for n, (item, cat) in enumerate(CATALOG * 2)
            if cat != "shoes"]
    send_all(broker.bootstrap, settings.topic_events, warm)
    yield env, settings, worker
    worker.stop()


def send(live, topic: str, records: list) -> None:
    env, settings, _ = live
    send_all(env.broker.bootstrap, getattr(settings, f"topic_{topic}"), records)


def rec_for(live, trigger_id: str, timeout: float = 30) -> dict:
    env, settings, _ = live
    recs = recommendations(env.broker.bootstrap, settings.topic_recommendations,
                           until=lambda rs: any(r["trigger_event_id"] == trigger_id for r in rs),
                           timeout=timeout)
    return next(r for r in recs if r["trigger_event_id"] == trigger_id)


def ask(live, user: str) -> dict:
    trigger = f"req-{uuid.uuid4().hex}"
    send(live, "events", [request(user, trigger)])
    return rec_for(live, trigger)


def user_view(live, user: str, until, what: str) -> dict:
    _, _, worker = live
    return wait_until(lambda: (lambda r: r[1] if r[0] == 200 and until(r[1]) else None)(
        worker.get(f"/users/{user}")), timeout=30, message=what)


def shoe_lover(live, user: str, n: int = 4) -> dict:
    """A user who viewed ``n`` shoes: their next list is mostly shoes."""
    send(live, "events", [event(user, f"shoe-{k:02d}") for k in range(n)])
    user_view(live, user, lambda v: v["event_count"] >= n, f"{user}'s {n} events")
    return ask(live, user)


def categories(rec: dict) -> list[str]:
    return [CATEGORY.get(item["item_id"], "?") for item in rec["items"]]


def test_muted_category_and_items_leave_the_next_list(live):
    user = "mute-me"
    before = shoe_lover(live, user)
    assert categories(before).count("shoes") >= 3, before["items"]
    bag = next((item["item_id"] for item in before["items"]
                if CATEGORY[item["item_id"]] != "shoes"), "bag-00")
    send(live, "users", [user_record({"user_id": user, "muted_categories": ["shoes"],
                                      "muted_items": [bag]}, fmt="avro")])
    view = user_view(live, user, lambda v: v["controls"]["muted_categories"] == ["shoes"],
                     "the muting applied")
    assert view["controls"]["muted_items"] == [bag] and view["event_count"] == 5  # + request
    after = ask(live, user)
    assert len(after["items"]) == 10
    assert "shoes" not in categories(after), after["items"]
    assert bag not in [item["item_id"] for item in after["items"]]
    # Unmuting (an upsert without controls) brings the shoes back.
    send(live, "users", [user_record({"user_id": user})])
    user_view(live, user, lambda v: v["controls"]["muted_categories"] == [], "the unmuting")
    assert "shoes" in categories(ask(live, user))


def test_personalization_strength_zero_gives_the_non_personalized_list(live):
    user = "no-personal"
    before = shoe_lover(live, user)
    assert {item["source"] for item in before["items"]} - NON_PERSONAL, "personalized before"
    send(live, "users", [user_record({"user_id": user, "personalization_strength": 0.0})])
    user_view(live, user, lambda v: v["controls"]["personalization_strength"] == 0.0,
              "strength 0 applied")
    after = ask(live, user)
    assert after["items"] and {item["source"] for item in after["items"]} <= NON_PERSONAL, \
        after["items"]
    assert categories(after).count("shoes") < categories(before).count("shoes")
    # Still learned from: back at full strength, the list is personal again at once.
    send(live, "users", [user_record({"user_id": user, "personalization_strength": 1})])
    user_view(live, user, lambda v: v["controls"]["personalization_strength"] == 1.0,
              "strength 1 applied")
    assert {item["source"] for item in ask(live, user)["items"]} - NON_PERSONAL


def test_invalid_controls_are_dead_lettered_and_change_nothing(live):
    env, settings, _ = live
    user = "bad-controls"
    send(live, "users", [user_record({"user_id": user, "muted_categories": ["hats"]})])
    user_view(live, user, lambda v: v["controls"]["muted_categories"] == ["hats"], "profile")
    send(live, "users", [(user.encode(), b'{"user_id": "bad-controls", "novelty": 7}', [])])
    records = read_topic(env.broker.bootstrap, settings.topic_dead_letters, timeout=30,
                         until=lambda rs: any(r.key == user.encode() for r in rs))
    assert any(b"novelty" in r.value for r in records if r.key == user.encode())
    time.sleep(0.5)
    assert user_view(live, user, lambda v: True, "profile")["controls"]["muted_categories"] \
        == ["hats"]


def test_reset_history_clears_state_and_learning_but_keeps_profile_and_controls(live):
    env, settings, worker = live
    user = "start-over"
    send(live, "users", [user_record({"user_id": user, "consent_personalization": True,
                                      "attributes": {"tier": "gold"},
                                      "muted_items": ["bag-00"], "novelty": 0.25})])
    user_view(live, user, lambda v: v["controls"]["muted_items"] == ["bag-00"], "profile")
    before = shoe_lover(live, user, n=5)
    assert {item["source"] for item in before["items"]} - NON_PERSONAL, "personalized before"

    send(live, "users", [user_record({"user_id": user, "reset_history": True})])
    view = user_view(live, user, lambda v: v["event_count"] == 0, "the reset")
    # A new user, with the profile and controls kept (the reset record's defaults not applied).
    assert view["recent_items"] == [] and view["purchased"] == []
    assert view["attributes"] == {"tier": "gold"} and view["consent_personalization"] is True
    assert view["controls"]["muted_items"] == ["bag-00"] and view["controls"]["novelty"] == 0.25
    # The state's changelog ends with a tombstone for the user.
    changelog = f"{settings.app_id}-user_state-changelog"
    records = read_topic(env.broker.bootstrap, changelog, timeout=30,
                         until=lambda rs: any(r.key == user.encode() and r.value is None
                                              for r in rs))
    last = [r for r in sorted(records, key=lambda r: r.offset) if r.key == user.encode()][-1]
    assert last.value is None
    # Cold start: nothing learned about them is used, the muted item still never shown.
    after = ask(live, user)
    assert after["items"] and {item["source"] for item in after["items"]} <= NON_PERSONAL, \
        after["items"]
    assert "bag-00" not in [item["item_id"] for item in after["items"]]
    assert user_view(live, user, lambda v: v["event_count"] == 1, "one new event")
    # A user with no profile who resets answers 404 afterwards: there is nothing left.
    send(live, "events", [event("anon-reset", "shoe-01")])
    user_view(live, "anon-reset", lambda v: v["event_count"] == 1, "anon's event")
    send(live, "users", [user_record({"user_id": "anon-reset", "reset_history": True})])
    wait_until(lambda: worker.get("/users/anon-reset")[0] == 404, timeout=30,
               message="anon-reset gone")


def test_cold_start_brand_new_user_and_brand_new_item(live):
    first = ask(live, "never-seen-before")
    assert len(first["items"]) == 10
    assert {item["source"] for item in first["items"]} <= NON_PERSONAL
    assert all(item["reason"].strip() for item in first["items"])
    # A hat lover; then a hat nobody has interacted with is listed: it is recommended.
    user = "hat-lover"
    send(live, "events", [event(user, f"hat-{k:02d}", "click") for k in range(2)])
    user_view(live, user, lambda v: v["event_count"] == 2, "the hat clicks")
    send(live, "items", [(b"hat-new", *encode("item", item_record(
        ItemUpdate("hat-new", categories=("hats",))), "json"))])
    time.sleep(1.5)  # the catalog replicator applies it on every worker
    rec = ask(live, user)
    ids = [item["item_id"] for item in rec["items"]]
    assert "hat-new" in ids, rec["items"]
    new = rec["items"][ids.index("hat-new")]
    assert new["source"] not in NON_PERSONAL and new["reason"].strip()


def test_controls_command_keeps_the_rest_of_the_profile(live):
    env, _, worker = live
    user = "cli-user"
    send(live, "users", [user_record({"user_id": user, "consent_personalization": False,
                                      "attributes": {"tier": "gold"}, "muted_items": ["bag-01"]})])
    user_view(live, user, lambda v: v["controls"]["muted_items"] == ["bag-01"], "profile")
    base = [sys.executable, "-m", "streams", "controls", user, "--worker", worker.url]
    variables = dict(os.environ, **env.variables)
    shown = subprocess.run(base, capture_output=True, text=True, timeout=30, env=variables)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["muted_items"] == ["bag-01"]
    changed = subprocess.run([*base, "--mute-category", "hats", "--novelty", "0.9"],
                             capture_output=True, text=True, timeout=30, env=variables)
    assert changed.returncode == 0, changed.stderr
    view = user_view(live, user, lambda v: v["controls"]["muted_categories"] == ["hats"],
                     "the command's change")
    assert view["controls"]["muted_items"] == ["bag-01"] and view["controls"]["novelty"] == 0.9
    assert view["consent_personalization"] is False and view["attributes"] == {"tier": "gold"}
    bad = subprocess.run([*base, "--personalization", "2"], capture_output=True, text=True,
                         timeout=30, env=variables)
    assert bad.returncode == 2 and "personalization_strength" in bad.stderr
