"""Two workers share the partitions; ``GET /users/{id}`` answers right on either one.

A trap seen here before: keys encoded differently on the topic and the table made the
router send half the requests to a worker that did not own the user (see NOTES).
"""

from __future__ import annotations

import time

import pytest

from streams.admin import ensure_topics
from streams.codecs import encode_event
from streams.records import Event
from tests.conftest import wait_until
from tests.integration.kafka_helpers import send_all

pytestmark = pytest.mark.integration


def test_users_endpoint_routes_to_the_owner_on_both_workers(env, worker_factory):
    settings = env.settings
    ensure_topics(settings)
    first = worker_factory()
    second = worker_factory()
    # Both are members once each has logged a ready worker; give the rebalance time to settle.
    truth: dict[str, int] = {}
    records = []
    now = int(time.time() * 1000)
    for n in range(600):
        user = f"user-{n % 60:03d}"
        truth[user] = truth.get(user, 0) + 1
        value, headers = encode_event(Event(f"e{n}", user, f"item-{n % 17}", "purchase", now + n), "json")
        records.append((user.encode(), value, headers))
    send_all(env.broker.bootstrap, settings.topic_events, records)

    def all_right() -> bool:
        for worker in (first, second):
            for user, count in truth.items():
                status, body = worker.get(f"/users/{user}")
                if status != 200 or body["event_count"] != count:
                    return False
        return True

    wait_until(all_right, timeout=90, interval=1.0, message="every user's count on both workers")
    # The test means something only if both workers own partitions of the user table.
    status, routes = first.get("/router/user_state/")
    assert status == 200
    owners = {url for url, partitions in routes.items() if partitions}
    assert owners == {first.url, second.url}, routes
