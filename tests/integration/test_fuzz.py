"""Dead-letter completeness on a real worker: 10,000+ malformed records, zero crashes.

A seeded generator (the builders of ``tests/unit/test_fuzz_validation.py``: truncated
Avro, wrong types, missing fields, invalid UTF-8, NaN/inf, unknown event types, null or
huge keys and strings, timestamps far in the past or future, oversized records, too many
context entries, flipped bytes, ...) makes 10,000 malformed events, plus malformed
catalog and profile records, with one valid event after every ten malformed ones. All
go through the embedded broker to one real worker process. Then:

* the worker is still alive and ready;
* ``dead-letters`` holds exactly one record per malformed record, matched by topic,
  original key and value bytes, with the error type predicted by ``parse_*`` locally,
  a non-empty reason, and a distinct topic/partition/offset;
* every valid event was applied: each user's ``event_count`` and the processed counter
  of ``/metrics`` equal what was sent;
* two giant records (a 900 KB value, an 800 KB key) are dead-lettered too, shortened to
  fit a Kafka message, instead of crashing the worker (regression).
"""

from __future__ import annotations

import hashlib
import random
import time
import urllib.request
from collections import Counter
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streams.admin import ensure_topics
from streams.codecs import decode_dead_letter
from streams.errors import InvalidRecord
from streams.validation import Validator
from tests.conftest import Env, start_worker, wait_until
from tests.unit.test_fuzz_validation import (
    KNOWN_ERROR_TYPES,
    MALFORMED_EVENT_CATEGORIES,
    ROBUSTNESS_CATEGORIES,
    Case,
    Limits,
    encode_any,
    malformed_item,
    malformed_user,
    parse_case,
    valid_event,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 20_240_607
N_MALFORMED_EVENTS = 10_000
N_MALFORMED_ITEMS = 500
N_MALFORMED_USERS = 500
VALID_EVERY = 10  # one valid event after every ten malformed ones
N_USERS = 100
DAY_MS = 86_400_000
LIMITS_ENV = {
    "MICROMOMENT_MAX_RECORD_BYTES": "4096",  # so that "oversized" is cheap to send
    "MICROMOMENT_MAX_CONTEXT_ENTRIES": "16",
    "MICROMOMENT_MAX_ID_LENGTH": "128",
    "MICROMOMENT_LOG_LEVEL": "warning",  # not one log line per dead letter
}


def predicted_error(case: Case, validator: Validator, now_ms: int) -> str | None:
    """The error_type the worker must give ``case``, or None if it might be valid.

    Checked at two clocks, so that the worker's later clock cannot change the verdict.
    """
    verdicts = set()
    for now in (now_ms, now_ms + 15 * 60_000):
        try:
            parse_case(case, validator, now)
        except InvalidRecord as err:
            verdicts.add(err.error_type)
        else:
            return None
    return verdicts.pop() if len(verdicts) == 1 else None


def build_stream(settings: Any, now_ms: int) -> tuple[list[Case], dict[str, int]]:
    """Every record to send, in order, and the number of valid events per user."""
    rng = random.Random(SEED)
    limits = Limits.of(settings, now_ms, margin_ms=DAY_MS)
    validator = Validator(settings)
    builders = [*MALFORMED_EVENT_CATEGORIES.items(), *ROBUSTNESS_CATEGORIES.items()]
    records: list[Case] = []
    per_user: Counter[str] = Counter()
    n_events = 0
    n = 0
    while n_events < N_MALFORMED_EVENTS:
        name, build = builders[n % len(builders)]
        n += 1
        case = build(rng, limits)
        error = predicted_error(case, validator, now_ms)
        if error is None:
            assert name in ROBUSTNESS_CATEGORIES, f"{name} built a valid record: {case}"
            continue  # a flipped byte that still makes a valid event: not malformed
        case.notes["error_type"] = error
        records.append(case)
        n_events += 1
        if n_events % VALID_EVERY == 0:
            user = f"fz-user-{(n_events // VALID_EVERY) % N_USERS:03d}"
            data = valid_event(rng, limits, user_id=user, event_id=f"fz-valid-{n_events}")
            value, headers = encode_any(rng, data)
            ok = Case("valid", user.encode(), value, headers, None)
            assert predicted_error(ok, validator, now_ms) is None and len(value) <= limits.max_record_bytes
            records.append(ok)
            per_user[user] += 1
        if n_events % (N_MALFORMED_EVENTS // N_MALFORMED_ITEMS) == 0:
            for make in (malformed_item, malformed_user):
                case = make(rng, limits)
                case.notes["error_type"] = predicted_error(case, validator, now_ms)
                assert case.notes["error_type"], f"{case.category} built a valid record: {case}"
                records.append(case)
    return records, dict(per_user)


def giant_records(limits_now: int) -> list[Case]:
    """Records near Kafka's 1 MB limit whose dead letter (base64 in JSON) would not fit."""
    event = {"event_id": "giant", "user_id": "giant-user", "item_id": "i", "event_type": "view",
             "timestamp": limits_now}
    return [
        Case("giant_value", b"giant-user", b'{"pad":"' + b"x" * 900_000 + b'"}', None, None,
             notes={"error_type": "oversized"}),
        Case("giant_key", b"k" * 800_000, orjson.dumps(event), None, None,
             notes={"error_type": "key_mismatch"}),
    ]


def scrape(worker) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(worker.url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, lbls), v in samples.items()
               if n == name and all(dict(lbls).get(k) == want for k, want in labels.items()))


def read_all(bootstrap: str, topic: str, partitions: int, count: int, timeout: float) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                records.extend(batch)
        # A little longer, to see any dead letter too many.
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def produce(bootstrap: str, topics: dict[str, str], records: list[Case]) -> list[Case]:
    """Send every record; returns those the broker refused (keyless on a compacted topic)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024,
                             acks="all", max_request_size=1_048_576)
    for case in records:  # what kafka-python cannot send, made as close as it can
        if case.key is None and case.value is None:
            case.value = b""  # null key and null value
        if case.headers:
            case.headers = [(name, b"" if value is None else value) for name, value in case.headers]
    try:
        futures = [(case, producer.send(topics[case.topic], key=case.key, value=case.value,
                                        headers=case.headers or None)) for case in records]
        producer.flush(timeout=60)
    finally:
        producer.close()
    refused = []
    for case, future in futures:
        try:
            future.get(timeout=10)
        except Exception:
            refused.append(case)
    return refused


def test_ten_thousand_malformed_records_all_dead_lettered_and_valid_ones_applied(broker, tmp_path):
    started = time.monotonic()
    env = Env(broker, tmp_path, extra=dict(LIMITS_ENV))
    settings = env.settings
    ensure_topics(settings)
    worker = start_worker(env)
    try:
        now_ms = int(time.time() * 1000)
        records, per_user = build_stream(settings, now_ms)
        giants = giant_records(now_ms)
        records[len(records) // 2:len(records) // 2] = giants  # in the middle of the stream
        malformed = [c for c in records if c.category != "valid"]
        valid = [c for c in records if c.category == "valid"]
        assert len(malformed) >= 10_000 + N_MALFORMED_ITEMS + N_MALFORMED_USERS
        by_category = Counter(c.category for c in malformed if c.topic == "events")
        assert len(by_category) >= len(MALFORMED_EVENT_CATEGORIES) + len(ROBUSTNESS_CATEGORIES)
        built_in = time.monotonic() - started

        topics = {"events": settings.topic_events, "items": settings.topic_items,
                  "users": settings.topic_users}
        refused = produce(broker.bootstrap, topics, records)
        # Kafka refuses keyless records on compacted topics (items, users); nothing else.
        assert all(c.topic != "events" and not c.key for c in refused), refused[:3]
        refused_ids = {id(c) for c in refused}
        malformed = [c for c in malformed if id(c) not in refused_ids]
        produced_in = time.monotonic() - started

        raw = read_all(broker.bootstrap, settings.topic_dead_letters, settings.partitions,
                       len(malformed), timeout=75)
        assert worker.process.poll() is None, f"worker died:\n{worker.log()[-4000:]}"
        letters = [decode_dead_letter(r.value, r.headers) for r in raw]

        # The giants: dead-lettered, shortened to fit a Kafka message, never a crash.
        for giant in giants:
            found = [d for d in letters if d["topic"] == settings.topic_events
                     and d["error_type"] == giant.notes["error_type"]
                     and hashlib.sha256(giant.value if giant.category == "giant_value" else giant.key)
                     .hexdigest() in d["reason"]]
            assert len(found) == 1, giant.category
            assert giant.value.startswith(found[0]["value"]) and giant.key.startswith(found[0]["key"])
            assert "shortened to fit a Kafka message" in found[0]["reason"]
            letters.remove(found[0])
        malformed = [c for c in malformed if c not in giants]

        # Exactly one dead letter per malformed record: same topic, key and value bytes,
        # and the error type predicted locally.
        expected = Counter((topics[c.topic], c.key, c.value, c.notes["error_type"]) for c in malformed)
        actual = Counter((d["topic"], d["key"], d["value"], d["error_type"]) for d in letters)
        missing, extra = expected - actual, actual - expected
        assert not missing and not extra, (
            f"{sum(missing.values())} malformed records without their dead letter, e.g. "
            f"{[(t, k and k[:40], v and v[:80], e) for t, k, v, e in list(missing)[:5]]}; "
            f"{sum(extra.values())} unexpected dead letters, e.g. "
            f"{[(t, k and k[:40], v and v[:80], e) for t, k, v, e in list(extra)[:5]]}")
        for d in letters:
            assert d["reason"].strip() and d["error_type"] in KNOWN_ERROR_TYPES, d
            assert 0 <= d["partition"] < settings.partitions and d["offset"] >= 0, d
            assert d["failed_at"] >= now_ms, d
        places = Counter((d["topic"], d["partition"], d["offset"]) for d in letters)
        assert max(places.values()) == 1, "a record was dead-lettered twice"

        # The valid events between them were all applied, once.
        def processed():
            samples = scrape(worker)
            return samples if total(samples, "micromoment_events_total", outcome="processed") >= len(valid) \
                else None

        samples = wait_until(processed, timeout=30, message=f"{len(valid)} valid events processed")
        assert total(samples, "micromoment_events_total", outcome="processed") == len(valid)
        assert total(samples, "micromoment_events_total", outcome="duplicate") == 0
        n_bad_events = sum(1 for c in malformed if c.topic == "events") + len(giants)
        assert total(samples, "micromoment_events_total", outcome="dead_lettered") == n_bad_events
        assert total(samples, "micromoment_deadletters_total", topic="events") == n_bad_events
        for user, count in per_user.items():
            status, body = worker.get(f"/users/{user}")
            assert status == 200 and body["event_count"] == count, (user, status, body)

        assert worker.process.poll() is None, f"worker died:\n{worker.log()[-4000:]}"
        assert worker.get("/ready")[0] == 200
        assert "agent process_events failed" not in worker.log()
        print(f"\nfuzz: {len(malformed) + len(giants)} malformed records ({len(refused)} refused by the "
              f"broker) and {len(valid)} valid events; built in {built_in:.1f} s, produced by "
              f"{produced_in:.1f} s, checked by {time.monotonic() - started:.1f} s; "
              f"event categories: {dict(sorted(by_category.items()))}")
    finally:
        worker.stop()
