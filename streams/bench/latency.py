"""Event → recommendation latency at a steady rate of trigger events (``latency_ms``).

One ``micromoment worker`` (every event type a trigger, the synthetic catalog loaded) is
started on a fresh broker and waited for until ready. A producer thread then sends
synthetic events on an absolute schedule (each at its own slot; kafka-python,
``linger_ms=0``) and a consumer thread reads the recommendations topic. Per event:

    latency = time its recommendation was received − time the event was sent

both from this process's ``perf_counter``, just before ``send()`` and just after the
consumer's ``poll()`` returned the record, matched through ``trigger_event_id``. The
measuring consumer fetches with a 5 ms wait (the worker keeps its own 20 ms), so the
figure is what a downstream consumer polling eagerly would see.

The schedule, in phases:

1. ``warmup``: ``low_rate`` events/s for ``warmup_s`` (learners, catalog, caches; not counted);
2. ``unloaded``: ``low_rate`` events/s for ``low_s``: the latency of an event when the
   worker is idle otherwise (details only);
3. ``loaded``: ``rate`` (1,000) events/s for ``measure_s``: ``latency_ms`` p50/p95/p99 are
   over these events.

A worker slower than ``rate`` builds a backlog and latency grows for as long as the phase
lasts. The stage then waits for the backlog at most ``max_drain_s`` after the last send;
an event still unanswered counts with the time it had waited by then, so the
percentiles are *lower bounds* (``lower_bound`` in the details, with ``missing``).
``p50_first_tenth`` / ``p50_last_tenth`` show whether latency stayed flat (kept up) or
grew. ``pickup_ms`` is the recommendation's ``created_at`` (stamped when the worker starts
processing the event) minus the event's ``timestamp`` (when it was sent), in whole
milliseconds: producer, broker, the worker's fetch and its queue, before any processing.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import orjson

from streams.bench.harness import Children, StageFailed, WorkerProcess, produce
from streams.bench.report import percentile, summarize
from streams.bench.throughput import ALL_TRIGGERS, _prefix, _prepare_topics, pipeline_variables
from streams.bench.workload import catalog_records, shop_for
from streams.codecs import encode_event

__all__ = ["run_latency", "phase_latencies"]


def _wait_ready(worker: WorkerProcess, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        problem = worker.problem()
        if problem:
            raise StageFailed(problem)
        if worker.ready():
            return
        time.sleep(0.3)
    raise StageFailed(f"the worker was not ready within {timeout:.0f} s")


def phase_latencies(sent: list[tuple[str, float]], received: dict[str, tuple[float, int]],
                    gave_up_at: float) -> dict[str, Any]:
    """Latency figures (ms) of ``sent`` (event id, send time), in send order.

    An event missing from ``received`` counts with ``gave_up_at − send time``: a lower bound.

    >>> r = phase_latencies([("a", 0.0), ("b", 1.0)], {"a": (0.002, 1)}, gave_up_at=3.0)
    >>> r["missing"], r["lower_bound"], r["p50"]
    (1, True, 1001.0)
    """
    latencies, pickups, missing = [], [], 0
    for event_id, sent_at in sent:
        got = received.get(event_id)
        if got is None:
            missing += 1
            latencies.append((gave_up_at - sent_at) * 1000)
        else:
            latencies.append((got[0] - sent_at) * 1000)
            pickups.append(float(got[1]))
    if not latencies:
        raise StageFailed("no events were sent")
    tenth = max(1, len(latencies) // 10)
    out: dict[str, Any] = summarize(latencies)
    out.update(missing=missing, lower_bound=missing > 0,
               p50_first_tenth=percentile(latencies[:tenth], 50),
               p50_last_tenth=percentile(latencies[-tenth:], 50))
    if pickups:
        out["pickup_ms"] = {"p50": percentile(pickups, 50), "p99": percentile(pickups, 99)}
    return out


def run_latency(children: Children, workdir: Path, *, rate: float = 1000.0, warmup_s: float = 5.0,
                measure_s: float = 20.0, low_rate: float = 100.0, low_s: float = 10.0,
                max_drain_s: float = 30.0,
                progress: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    workdir.mkdir(parents=True, exist_ok=True)
    broker = children.broker(workdir / "broker.log")
    worker = None
    switch_interval = sys.getswitchinterval()
    try:
        prefix = _prefix("latency")
        variables = pipeline_variables(broker, prefix, ALL_TRIGGERS)
        _prepare_topics(variables)
        phases = [("warmup", low_rate, warmup_s), ("unloaded", low_rate, low_s), ("loaded", rate, measure_s)]
        total = sum(int(r * s) for _, r, s in phases)
        shop = shop_for(total)
        produce(broker.bootstrap, variables["MICROMOMENT_TOPIC_ITEMS"], catalog_records(shop))
        worker = WorkerProcess(children, variables, workdir, "worker")
        progress("worker joining")
        _wait_ready(worker)

        sent: dict[str, list[tuple[str, float]]] = {name: [] for name, _, _ in phases}
        received: dict[str, tuple[float, int]] = {}  # event id -> (perf_counter, pickup ms)
        stop = threading.Event()
        errors: list[BaseException] = []
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 fetch_max_wait_ms=5, client_id="micromoment-bench-latency")
        consumer.assign([TopicPartition(variables["MICROMOMENT_TOPIC_RECOMMENDATIONS"], p)
                         for p in range(4)])

        def consume() -> None:
            try:
                while not stop.is_set():
                    batch = consumer.poll(timeout_ms=50)
                    now = time.perf_counter()
                    for records in batch.values():
                        for record in records:
                            rec = orjson.loads(record.value)
                            received[rec["trigger_event_id"]] = (
                                now, rec["created_at"] - rec["event_timestamp"])
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        sys.setswitchinterval(0.0005)  # threads hand over the GIL quickly: less stamping delay
        reader = threading.Thread(target=consume, name="bench-latency-consumer", daemon=True)
        reader.start()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks=1,
                                 client_id="micromoment-bench-latency")
        topic = variables["MICROMOMENT_TOPIC_EVENTS"]
        loaded_started = loaded_ended = 0.0
        try:
            for name, phase_rate, seconds in phases:
                count, interval = int(phase_rate * seconds), 1.0 / phase_rate
                started = last_report = time.perf_counter()
                if name == "loaded":
                    loaded_started = started
                for index in range(count):
                    delay = started + index * interval - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    event = shop.event(int(time.time() * 1000))
                    value, headers = encode_event(event, "json")
                    sent[name].append((event.event_id, time.perf_counter()))
                    producer.send(topic, key=event.user_id.encode(), value=value, headers=list(headers))
                    if time.perf_counter() - last_report > 1.0:
                        last_report = time.perf_counter()
                        progress(f"{name} at {phase_rate:,.0f}/s: sent {index + 1:,}/{count:,}, "
                                 f"{len(received):,} recommendations")
                        if errors or worker.process.poll() is not None:
                            break
                if name == "loaded":
                    loaded_ended = time.perf_counter()
            producer.flush()
        finally:
            producer.close()
        # A worker slower than the rate has a backlog: wait for it, within max_drain_s.
        wanted = {event_id for event_id, _ in sent["loaded"]} | {e for e, _ in sent["unloaded"]}
        deadline = time.perf_counter() + max_drain_s
        while time.perf_counter() < deadline and not wanted <= received.keys():
            if errors or worker.problem():
                break
            progress(f"draining: {len(received):,} of {total:,} recommendations")
            time.sleep(0.2)
        gave_up_at = time.perf_counter()
        stop.set()
        reader.join(timeout=5)
        consumer.close()
        if errors:
            raise StageFailed(f"reading recommendations failed: {errors[0]!r}")
        problem = worker.problem()
        if problem:
            raise StageFailed(problem)
        loaded = phase_latencies(sent["loaded"], received, gave_up_at)
        loaded.update(rate=rate, measure_s=measure_s,
                      sent_rate=len(sent["loaded"]) / max(1e-9, loaded_ended - loaded_started),
                      drained_s=gave_up_at - loaded_ended)
        unloaded = phase_latencies(sent["unloaded"], received, gave_up_at)
        unloaded.update(rate=low_rate, measure_s=low_s)
        return {"p50": loaded["p50"], "p95": loaded["p95"], "p99": loaded["p99"],
                "loaded": loaded, "unloaded": unloaded}
    finally:
        sys.setswitchinterval(switch_interval)
        if worker is not None:
            worker.stop()
        children.stop_broker(broker)
