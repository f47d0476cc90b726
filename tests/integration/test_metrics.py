"""``/metrics`` exists and moves by exactly what a real event stream did."""

from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.admin import ensure_topics
from streams.codecs import encode_event
from streams.records import Event
from tests.conftest import wait_until
from tests.integration.kafka_helpers import send_all

pytestmark = pytest.mark.integration

REQUIRED = ["micromoment_events_total", "micromoment_deadletters_total",
            "micromoment_processing_seconds", "micromoment_freshness_seconds",
            "micromoment_recommendations_total", "micromoment_consumer_lag",
            "micromoment_rebalances_total", "micromoment_online_hit_rate"]


def scrape(worker) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(worker.url + "/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples, name, **labels) -> float:
    return sum(value for (n, lbls), value in samples.items()
               if n == name and all(dict(lbls).get(k) == v for k, v in labels.items()))


def test_metrics_move_with_the_stream(env, worker_factory):
    settings = env.settings
    ensure_topics(settings)
    worker = worker_factory()
    before = scrape(worker)
    assert total(before, "micromoment_rebalances_total") >= 1
    now = int(time.time() * 1000)
    events = [Event(f"m{n}", f"user-{n % 5}", f"item-{n % 9}", ("view", "purchase")[n % 2], now + n)
              for n in range(40)]
    records = [(e.user_id.encode(), *encode_event(e, "json")) for e in events]
    redelivered = records[:6]
    invalid = [(b"user-1", b"{broken", []), (b"user-2", b'{"event_id": "x"}', [])]
    send_all(env.broker.bootstrap, settings.topic_events, records + redelivered + invalid)

    def settled():
        s = scrape(worker)
        return s if total(s, "micromoment_events_total") >= 48 else None

    after = wait_until(settled, timeout=60, message="48 events counted")
    assert total(after, "micromoment_events_total", outcome="processed") == 40
    assert total(after, "micromoment_events_total", outcome="duplicate") == 6
    assert total(after, "micromoment_events_total", outcome="dead_lettered") == 2
    assert total(after, "micromoment_events_total", outcome="processed", event_type="purchase") == 20
    assert total(after, "micromoment_deadletters_total", topic="events") == 2
    assert total(after, "micromoment_deadletters_total", reason="invalid_json") == 1
    triggers = 20 + 3  # 20 views, and the 3 views among the redelivered records re-trigger
    assert total(after, "micromoment_recommendations_total") == triggers
    assert total(after, "micromoment_freshness_seconds_count") == triggers
    assert total(after, "micromoment_processing_seconds_count", agent="events") == 48
    # Refreshed by a 2 s timer: learner updates, table sizes, lag back to zero.
    later = wait_until(lambda: (lambda s: s if total(s, "micromoment_table_keys", table="user_state") == 5
                                and total(s, "micromoment_consumer_lag", topic=settings.topic_events) == 0
                                else None)(scrape(worker)), timeout=30, message="timer refresh")
    for name in REQUIRED:
        assert any(n.startswith(name) for n, _ in later), name
    assert total(later, "micromoment_model_updates_total", learner="popularity") == 40
    assert total(later, "micromoment_ready") == 1
    # Bounded labels: never a user or an item id.
    for (name, labels), _ in later.items():
        for _, value in labels:
            assert not value.startswith(("user-", "item-")), (name, labels)


def test_json_logs_never_carry_a_raw_user_id(env, worker_factory):
    env.extra["MICROMOMENT_LOG_FORMAT"] = "json"
    settings = env.settings
    ensure_topics(settings)
    worker = worker_factory()
    secret_user = "alice.secret@example.com"
    bad = (secret_user.encode(), b'{"event_id": "x", "user_id": "someone-else"}', [])
    send_all(env.broker.bootstrap, settings.topic_events, [bad])
    wait_until(lambda: "dead-lettered" in worker.log(), timeout=60, message="a dead-letter log line")
    import orjson

    lines = [orjson.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    dead = [line for line in lines if "dead-lettered" in line["message"]]
    assert dead and dead[0]["error_type"] in {"key_mismatch", "missing_field"}
    assert secret_user not in worker.log() and "someone-else" not in worker.log()
    assert any("u:" in line["message"] for line in dead)
