"""Forget-a-user on a real worker: 404, changelog tombstones, cold learners, no id in logs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from streams.admin import ensure_topics
from streams.checkpoints import read_checkpoints
from streams.codecs import encode, encode_event
from streams.records import Event
from tests.conftest import wait_until
from tests.integration.kafka_helpers import read_topic, recommendations, send_all

pytestmark = pytest.mark.integration

TOKEN = "test-admin-token"


def delete(worker, user: str, token: str | None) -> int:
    request = urllib.request.Request(f"{worker.url}/users/{user}", method="DELETE")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def last_value_per_key(bootstrap: str, topic: str, keys: set[bytes]) -> dict[bytes, bytes | None]:
    records = read_topic(bootstrap, topic, until=lambda rs: {r.key for r in rs} >= keys, timeout=30)
    last: dict[bytes, bytes | None] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.key in keys:
            last[record.key] = record.value
    return last


def newest_checkpoint(settings):
    found = read_checkpoints(settings, timeout_s=10)
    return max(found.values(), key=lambda c: c.created_at).load() if found else None


def knows(model, user: str) -> bool:
    return model is not None and (model.content.knows_user(user) or model.mf.knows_user(user))


def test_forget_erases_state_profile_and_learners(env, worker_factory):
    env.extra.update(MICROMOMENT_ADMIN_TOKEN=TOKEN, MICROMOMENT_CHECKPOINT_INTERVAL="1")
    settings = env.settings
    ensure_topics(settings)
    worker = worker_factory()
    bootstrap = env.broker.bootstrap
    catalog = []
    for n in range(30):
        value, headers = encode("item", {"item_id": f"item-{n}", "categories": [f"c{n % 3}"]}, "json")
        catalog.append((f"item-{n}".encode(), value, headers))
    send_all(bootstrap, settings.topic_items, catalog)
    users = ["gdpr-alice", "gdpr-bob"]
    now = int(time.time() * 1000)
    records = []
    for user in users:
        value, headers = encode("user", {"user_id": user, "attributes": {"tier": "gold"}}, "json")
        send_all(bootstrap, settings.topic_users, [(user.encode(), value, headers)])
        for n in range(6):
            event = Event(f"{user}-{n}", user, f"item-{3 * n}", "click", now + n)  # all category c0
            records.append((user.encode(), *encode_event(event, "json")))
    send_all(bootstrap, settings.topic_events, records)
    for user in users:
        wait_until(lambda: (lambda r: r[0] == 200 and r[1]["event_count"] == 6)(worker.get(f"/users/{user}")),
                   timeout=60, message=f"{user}'s state")
    before = recommendations(bootstrap, settings.topic_recommendations,
                             until=lambda rs: sum(r["user_id"] == "gdpr-alice" for r in rs) >= 6)
    assert any(item["source"] != "popularity" for r in before if r["user_id"] == "gdpr-alice"
               for item in r["items"]), "alice was personalized before"

    wait_until(lambda: knows(newest_checkpoint(settings), "gdpr-alice"), timeout=30,
               message="a learner checkpoint holding alice")

    # By the CLI, waiting for the erasure.
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "streams", "forget", "gdpr-alice", "--wait",
                             "--worker", worker.url], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, **env.variables))
    assert result.returncode == 0, result.stderr
    assert "erased" in result.stderr
    assert time.monotonic() - started < 15, "erasure should take seconds"
    # By the admin endpoint: the token is required.
    assert delete(worker, "gdpr-bob", token=None) == 403
    assert delete(worker, "gdpr-bob", token="wrong") == 403
    assert delete(worker, "gdpr-bob", token=TOKEN) == 202
    wait_until(lambda: worker.get("/users/gdpr-bob")[0] == 404, timeout=30, message="bob erased")
    assert worker.get("/users/gdpr-alice")[0] == 404

    # Tombstones: the last record of each user in both changelogs and on `users` is null.
    keys = {user.encode() for user in users}
    for topic in (*settings.changelog_topics, settings.topic_users):
        last = wait_until(lambda: (lambda l: l if all(l.get(k, b"x") is None for k in keys) else None)(
            last_value_per_key(bootstrap, topic, keys)), timeout=30, message=f"tombstones on {topic}")
        assert last == {key: None for key in keys}, topic

    # Checkpoints forgot them too: the newest one, rewritten within seconds, holds neither.
    wait_until(lambda: not any(knows(newest_checkpoint(settings), user) for user in users),
               timeout=15, message="a learner checkpoint without the forgotten users")

    # Learners forgot alice: her next list is cold (popularity), while she is a new user.
    request = Event("after-forget", "gdpr-alice", None, "recommendation_request", int(time.time() * 1000))
    send_all(bootstrap, settings.topic_events, [(b"gdpr-alice", *encode_event(request, "json"))])
    after = recommendations(bootstrap, settings.topic_recommendations,
                            until=lambda rs: any(r["trigger_event_id"] == "after-forget" for r in rs))
    rec = next(r for r in after if r["trigger_event_id"] == "after-forget")
    # Nothing personal: popularity (global or in this context) and exploration only.
    assert rec["items"] and {item["source"] for item in rec["items"]} <= {
        "popularity", "context", "explore"}
    assert worker.get("/users/gdpr-alice")[1]["event_count"] == 1  # only the new request

    # Logs name forgotten users only by pseudonym.
    log = worker.log()
    assert "forgot user u:" in log
    assert "gdpr-alice" not in log and "gdpr-bob" not in log
