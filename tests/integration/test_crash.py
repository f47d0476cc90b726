"""Kill -9 the worker repeatedly mid-stream; every user's state must equal the truth.

This is the verifier style of Kafka Streams' own system tests: the input is known, the
processor is killed at random points and restarted, and at the end the state must equal a
recomputation from the input, with nothing lost and nothing counted twice.
"""

from __future__ import annotations

import random
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from streams.admin import ensure_topics
from streams.codecs import encode_event
from streams.records import Event
from tests.conftest import start_worker, wait_until
from tests.integration.kafka_helpers import confirm, producer, recommendations

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_EVENTS = 50_000
N_USERS = 1_000
KILLS = 3


def processed(worker) -> float:
    with urllib.request.urlopen(worker.url + "/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("micromoment_events_total{") and 'outcome="processed"' in line:
                yield float(line.rsplit(" ", 1)[1])


def user_counts(worker, users: list[str]) -> dict[str, int]:
    def one(user: str) -> tuple[str, int]:
        try:
            with urllib.request.urlopen(f"{worker.url}/users/{user}", timeout=10) as resp:
                return user, orjson.loads(resp.read())["event_count"]
        except urllib.error.HTTPError:
            return user, 0

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, users))


@pytest.mark.timeout(600)  # 50k events, three restarts; ~2.5 min alone, twice that beside the suite
def test_kill_dash_nine_three_times_loses_and_doubles_nothing(env):
    # State is what is verified, so only explicit requests trigger a recommendation (the
    # ranking cost is not what this test is about); one at the end checks they resume.
    env.extra["MICROMOMENT_TRIGGER_EVENT_TYPES"] = "recommendation_request"
    rng = random.Random(20261123)
    settings = env.settings
    phases: dict[str, float] = {}
    clock = time.monotonic()
    ensure_topics(settings)
    users = [f"user-{n:04d}" for n in range(N_USERS)]
    truth = {user: 0 for user in users}
    start = int(time.time() * 1000)
    p = producer(env.broker.bootstrap)
    futures = []
    for n in range(N_EVENTS):
        user = users[rng.randrange(N_USERS)]
        truth[user] += 1
        kind = rng.choice(("view", "click", "add_to_cart", "purchase", "like"))
        value, headers = encode_event(Event(f"c{n}", user, f"item-{rng.randrange(500)}", kind, start + n), "json")
        futures.append(p.send(settings.topic_events, key=user.encode(), value=value, headers=headers))
    p.flush()
    confirm(futures)
    p.close()
    phases["produce"] = time.monotonic() - clock

    kills = 0
    worker = start_worker(env)
    try:
        while kills < KILLS:
            # Kill at a random point while the backlog is being worked through.
            target = rng.uniform(0.15, 0.85) * N_EVENTS * (kills + 1) / (KILLS + 1)
            wait_until(lambda: sum(processed(worker)) >= min(target, 2_000), timeout=120,
                       message="some progress before the kill")
            time.sleep(rng.uniform(0.2, 2.0))
            worker.process.send_signal(signal.SIGKILL)
            worker.process.wait()
            kills += 1
            restarted = time.monotonic()
            worker = start_worker(env)
            phases[f"restart {kills}"] = time.monotonic() - restarted
        settle = time.monotonic()
        wait_until(lambda: sum(processed(worker)) > 0 and user_counts(worker, users) == truth,
                   timeout=300, interval=3.0, message="every user's event_count to equal the truth")
        phases["settle"] = time.monotonic() - settle
        print("crash test phases (s):", {k: round(v, 1) for k, v in phases.items()})
        counts = user_counts(worker, users)
        assert sum(counts.values()) == N_EVENTS
        lost = {u: truth[u] - c for u, c in counts.items() if c < truth[u]}
        doubled = {u: c - truth[u] for u, c in counts.items() if c > truth[u]}
        assert not lost and not doubled
        # Recommendations resume after the last restart.
        request = Event("after-crash", users[0], None, "recommendation_request", int(time.time() * 1000))
        p = producer(env.broker.bootstrap)
        value, headers = encode_event(request, "json")
        p.send(settings.topic_events, key=users[0].encode(), value=value, headers=headers)
        p.flush()
        p.close()
        recs = recommendations(env.broker.bootstrap, settings.topic_recommendations,
                               until=lambda rs: any(r["trigger_event_id"] == "after-crash" for r in rs))
        assert next(r for r in recs if r["trigger_event_id"] == "after-crash")["items"]
    finally:
        worker.stop()
