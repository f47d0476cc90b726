"""Broker trouble: a worker started before the broker waits for it; a broker that freezes
for longer than the session timeout and comes back loses nothing it kept.

The embedded broker keeps data in memory, so "comes back" is simulated by freezing the
process (SIGSTOP/SIGCONT): unreachable for the clients, with its data intact, as a broker
behind a network partition or in a long GC pause would be.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from streams.admin import ensure_topics
from streams.broker import EmbeddedBroker, free_port
from streams.codecs import encode_event
from streams.records import Event
from tests.conftest import Env, Worker, wait_until
from tests.integration.kafka_helpers import send_all
from tests.integration.test_crash import user_counts

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def events(prefix: str, users: list[str], per_user: int) -> list[tuple[bytes, bytes, list]]:
    now = int(time.time() * 1000)
    records = []
    for n in range(per_user):
        for user in users:
            value, headers = encode_event(Event(f"{prefix}-{user}-{n}", user, f"item-{n}", "view", now + n), "json")
            records.append((user.encode(), value, headers))
    return records


def test_worker_waits_for_the_broker_and_survives_a_frozen_broker(tmp_path):
    port = free_port()
    broker = EmbeddedBroker(port=port, log=tmp_path / "broker.log")
    env = Env(broker, tmp_path, extra={"MICROMOMENT_TRIGGER_EVENT_TYPES": "recommendation_request",
                                       "MICROMOMENT_BROKER_WAIT": "60"})
    # Start the worker first: nothing listens on the port yet.
    log_path = tmp_path / "worker.log"
    web_port = free_port()
    variables = dict(os.environ, **env.variables, MICROMOMENT_WEB_PORT=str(web_port),
                     MICROMOMENT_DATADIR=str(tmp_path / "data"))
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "streams", "worker"], stdout=log,
                                   stderr=subprocess.STDOUT, env=variables, stdin=subprocess.DEVNULL)
    worker = Worker(process, web_port, log_path)
    try:
        wait_until(lambda: "waiting for a Kafka broker" in worker.log(), timeout=30,
                   message="the worker saying it waits for the broker")
        time.sleep(2.0)
        assert process.poll() is None, "the worker gave up instead of waiting"
        broker.start()
        ensure_topics(env.settings)
        wait_until(lambda: _ready(worker), timeout=90, message="the worker ready once the broker is up")

        users = [f"user-{n:02d}" for n in range(40)]
        send_all(broker.bootstrap, env.settings.topic_events, events("before", users, 5))
        wait_until(lambda: user_counts(worker, users) == {u: 5 for u in users}, timeout=60,
                   message="events before the freeze")

        broker._process.send_signal(signal.SIGSTOP)  # unreachable, data kept
        time.sleep(15.0)  # longer than the 10 s session timeout
        broker._process.send_signal(signal.SIGCONT)

        send_all(broker.bootstrap, env.settings.topic_events, events("after", users, 5))
        wait_until(lambda: user_counts(worker, users) == {u: 10 for u in users}, timeout=120,
                   interval=2.0, message="events after the broker came back")
        assert process.poll() is None
        wait_until(lambda: _ready(worker), timeout=60, message="ready again")
    finally:
        worker.stop()
        broker.stop()


def _ready(worker) -> bool:
    try:
        return worker.get("/ready")[0] == 200
    except OSError:
        return False
