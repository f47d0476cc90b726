"""Two workers; one stops mid-stream and the other takes over its partitions with their state.

The survivor must restore the departed worker's table partitions from the changelog and
carry on; when the second worker comes back, the partitions move again. At the end every
user's state equals the truth computed from the input.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from streams.admin import ensure_topics
from streams.codecs import encode_event
from streams.records import Event
from tests.conftest import start_worker, wait_until
from tests.integration.kafka_helpers import confirm, producer
from tests.integration.test_crash import user_counts

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_USERS = 300
N_EVENTS = 15_000


def owners(worker) -> set[str]:
    status, routes = worker.get("/router/user_state/")
    assert status == 200
    return {url for url, partitions in routes.items() if any(partitions.values())}


def test_partitions_move_with_their_state_when_a_worker_leaves_and_returns(env):
    env.extra["MICROMOMENT_TRIGGER_EVENT_TYPES"] = "recommendation_request"
    settings = env.settings
    ensure_topics(settings)
    first = start_worker(env)
    second = start_worker(env)
    try:
        wait_until(lambda: owners(first) == {first.url, second.url}, timeout=60,
                   message="both workers owning partitions")
        rng = random.Random(7)
        users = [f"user-{n:04d}" for n in range(N_USERS)]
        truth = {user: 0 for user in users}
        plan = [users[rng.randrange(N_USERS)] for _ in range(N_EVENTS)]
        for user in plan:
            truth[user] += 1

        send_errors: list[BaseException] = []

        def produce() -> None:  # a steady stream over ~10 s while the group changes
            p = producer(env.broker.bootstrap)
            try:
                start = int(time.time() * 1000)
                futures = []
                for n, user in enumerate(plan):
                    value, headers = encode_event(Event(f"r{n}", user, f"item-{n % 97}", "view", start + n), "json")
                    futures.append(p.send(settings.topic_events, key=user.encode(), value=value, headers=headers))
                    if n % 1500 == 1499:
                        p.flush()
                        time.sleep(1.0)
                p.flush()
                confirm(futures)
            except BaseException as exc:  # surfaced by the test thread below
                send_errors.append(exc)
            finally:
                p.close()

        stream = threading.Thread(target=produce)
        stream.start()
        time.sleep(3.0)
        second.stop()  # graceful leave mid-stream
        wait_until(lambda: owners(first) == {first.url}, timeout=90,
                   message="the survivor owning every partition")
        time.sleep(2.0)
        second = start_worker(env)  # and back
        stream.join()
        assert not send_errors, f"the test's own producer failed: {send_errors[0]!r}"
        wait_until(lambda: owners(first) == {first.url, second.url}, timeout=90,
                   message="partitions shared again")
        try:
            wait_until(lambda: user_counts(first, users) == truth, timeout=180, interval=3.0,
                       message="every user's event_count to equal the truth")
        except AssertionError:
            counts = user_counts(first, users)
            wrong = {u: (counts[u], truth[u]) for u in users if counts[u] != truth[u]}
            raise AssertionError(f"{len(wrong)} users wrong (count, truth), e.g. "
                                 f"{dict(list(wrong.items())[:8])}; lost {sum(max(0, t - c) for c, t in wrong.values())}, "
                                 f"doubled {sum(max(0, c - t) for c, t in wrong.values())}") from None
        assert user_counts(second, users) == truth  # routed answers agree on both workers
    finally:
        first.stop()
        second.stop()
