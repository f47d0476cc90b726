"""Throughput stages: bare Faust baselines, the pipeline, and the pipeline on two workers.

Every stage gets a fresh embedded broker and fresh topics (4 partitions), so nothing one
stage left behind (topics, changelogs, consumer groups) is in the next one's way.

**events/s** is measured over the processing window only: from the first event processed
to the last, ``(N - 1) / (t_last - t_first)``. The consumer-group join, table recovery and
shutdown are outside it (``join_s`` in the details says how long the join took).

* Bare stages (``faust_*_eps``): the N events are produced first (confirmed, counted per
  partition), then the bare worker (:mod:`streams.bench.bare_app`) starts. It stamps its
  first event and its N-th, and keeps counting: after reaching N the stage waits a
  little more and fails if the count went past N.
* Pipeline stages (``pipeline_*_eps``): the catalog and the N events are produced first,
  then ``micromoment worker`` starts, configured by ``MICROMOMENT_*`` variables only (no
  triggers: ``MICROMOMENT_TRIGGER_EVENT_TYPES=`` empty; every event a trigger: all
  types). The worker is watched through ``/metrics`` (``micromoment_events_total``) until
  it has processed N; the window comes from the ``user_state`` changelog: the worker
  writes one record per applied event, stamped when written (CreateTime), and exactly N
  records must be there. The stage fails unless ``/metrics`` says N processed, 0
  dead-lettered, and (when recommending) N recommendations.
* Scale-out (``scaleout_2_workers_ratio``): the pipeline without triggers, once on one
  worker and once on two, each time the worker(s) started *first*, on empty topics, until
  they hold all 4 partitions between them (2 each); only then are the N events produced
  (aiokafka, ~60,000/s, so producing overlaps the first fraction of a second). The ratio
  is two-worker events/s over one-worker events/s from these two runs. The broker, both
  workers and the bench share the machine's cores.

Every stage also records the CPU time (user + system, all threads, from ``/proc``) that
the worker(s) and the broker spent inside the window, per event: ``cpu_us_per_event``
and ``broker_cpu_us_per_event``. On a machine shared with other work the wall-clock
rate falls with the CPU the worker gets; its CPU time per event barely moves, so the
report also gives the ratios computed from it.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson

from streams.bench.harness import (Children, CpuSampler, StageFailed, WorkerProcess, bench_env,
                                   changelog_timestamps, create_topics, metric_sum, produce,
                                   wait_for)
from streams.bench.workload import Record
from streams.broker import EmbeddedBroker, free_port
from streams.records import EVENT_TYPES

__all__ = ["run_bare", "run_pipeline", "run_scaleout", "pipeline_variables", "events_per_second"]

Progress = Callable[[str], None]

#: The bare agents' producer linger: Faust's default (0 ms), the naive pattern the pipeline
#: is compared with. The pipeline's worker uses ``MICROMOMENT_PRODUCER_LINGER_MS`` (2 ms by
#: default), batching its changelog writes: a tuning of the pipeline, not of the baseline.
BARE_PRODUCER_LINGER_MS = 0

#: Trigger setting of each pipeline stage.
NO_TRIGGERS = ""
ALL_TRIGGERS = ",".join(EVENT_TYPES)


def events_per_second(n_events: int, first_s: float, last_s: float) -> float:
    """Rate over the window from the first processed event to the last.

    >>> events_per_second(1001, 10.0, 11.0)
    1000.0
    """
    if n_events < 2 or last_s <= first_s:
        raise StageFailed(f"no processing window to measure ({n_events} events, "
                          f"{last_s - first_s:.3f} s)")
    return (n_events - 1) / (last_s - first_s)


def _prefix(stage: str) -> str:
    return f"bench-{stage}-{uuid.uuid4().hex[:6]}"


def _read_status(path: Path) -> dict[str, Any]:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}


def run_bare(mode: str, records: Sequence[Record], children: Children, workdir: Path,
             progress: Progress = lambda text: None, settle_s: float = 1.5,
             expect: int | None = None) -> dict[str, Any]:
    """One bare Faust stage (``count``, ``table`` or ``table_send``) over ``records``.

    ``expect`` (default: all of them) is how many events the worker must count, no more,
    no fewer; the tests set it off by some to see the stage fail.
    """
    n = len(records) if expect is None else expect
    workdir.mkdir(parents=True, exist_ok=True)
    broker = children.broker(workdir / "broker.log")
    process = None
    try:
        prefix = _prefix(f"bare-{mode}")
        topic, out_topic = f"{prefix}-events", f"{prefix}-out"
        create_topics(broker.bootstrap, [topic, out_topic])
        progress(f"producing {len(records):,} events")
        partitions = produce(broker.bootstrap, topic, records)
        if sum(partitions.values()) != len(records):
            raise StageFailed(f"{sum(partitions.values())} of {len(records)} events confirmed")
        status = workdir / "status.json"
        log_path = workdir / "worker.log"
        spawned = time.time()
        process = children.spawn(
            [sys.executable, "-m", "streams.bench.bare_app", "--mode", mode, "--broker", broker.url,
             "--app-id", prefix, "--topic", topic, "--out-topic", out_topic, "--expect", str(n),
             "--status", str(status), "--web-port", str(free_port()),
             "--datadir", str(workdir / "data")],
            env=bench_env({"MICROMOMENT_PRODUCER_LINGER_MS": str(BARE_PRODUCER_LINGER_MS)}),
            log_path=log_path)

        def problem() -> str | None:
            if process.poll() is None:
                return None
            tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-5:])
            return f"bare worker exited with code {process.returncode}: {tail}"

        with CpuSampler({"worker": process.pid, "broker": _pid(broker)}) as cpu:
            wait_for(lambda: int(_read_status(status).get("count") or 0), n, process_alive=problem,
                     on_progress=lambda done: progress(f"{done:,}/{n:,} events"))
            time.sleep(settle_s)
        final = _read_status(status)
        if final.get("count") != n:
            raise StageFailed(f"bare worker counted {final.get('count')} events, expected {n}")
        eps = events_per_second(n, final["first"], final["at_expect"])
        result = {"eps": eps, "events": n, "window_s": final["at_expect"] - final["first"],
                  "join_s": final["first"] - spawned, "partitions": partitions}
        result.update(_cpu_per_event(cpu, ["worker"], n, final["first"], final["at_expect"]))
        if mode != "count":  # the pipeline's method, on the same run: they should agree
            stamps = changelog_timestamps(broker.bootstrap, f"{prefix}-counts-changelog", n)
            if len(stamps) != n:
                raise StageFailed(f"{len(stamps)} changelog records for {n} table updates")
            result["eps_from_changelog"] = events_per_second(n, min(stamps) / 1000, max(stamps) / 1000)
        return result
    finally:
        if process is not None:
            children.stop(process)
        children.stop_broker(broker)


def pipeline_variables(broker: EmbeddedBroker, prefix: str, triggers: str) -> dict[str, str]:
    """The ``MICROMOMENT_*`` settings of a pipeline stage's worker(s)."""
    return {
        "MICROMOMENT_BROKER": broker.url,
        "MICROMOMENT_APP_ID": prefix,
        "MICROMOMENT_TOPIC_EVENTS": f"{prefix}-events",
        "MICROMOMENT_TOPIC_ITEMS": f"{prefix}-items",
        "MICROMOMENT_TOPIC_USERS": f"{prefix}-users",
        "MICROMOMENT_TOPIC_RECOMMENDATIONS": f"{prefix}-recommendations",
        "MICROMOMENT_TOPIC_DEAD_LETTERS": f"{prefix}-dead-letters",
        "MICROMOMENT_SESSION_TIMEOUT": "10",
        "MICROMOMENT_TRIGGER_EVENT_TYPES": triggers,
    }


def _prepare_topics(variables: dict[str, str]) -> None:
    from streams.admin import ensure_topics
    from streams.settings import Settings

    ensure_topics(Settings.from_env(variables))


def _pid(broker: EmbeddedBroker) -> int:
    return broker._process.pid if broker._process is not None else -1


def _cpu_per_event(cpu: CpuSampler, names: list[str], n: int, first: float,
                   last: float) -> dict[str, float | None]:
    """CPU microseconds per event of the named processes (summed) and of the broker."""
    spent = [cpu.between(name, first, last) for name in names]
    broker = cpu.between("broker", first, last)
    per_event = 1e6 / max(1, n - 1)
    return {"cpu_us_per_event": None if None in spent else sum(spent) * per_event,  # type: ignore[arg-type]
            "broker_cpu_us_per_event": None if broker is None else broker * per_event}


def _measure_workers(workers: list[WorkerProcess], broker: EmbeddedBroker, app_id: str, n: int,
                     recommending: bool, progress: Progress,
                     start: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Call ``start()`` (if given), wait until ``workers`` processed ``n`` events; check the
    counts; the window, and the CPU the workers and the broker spent in it."""

    def problem() -> str | None:
        return next((p for p in (w.problem() for w in workers) if p), None)

    def seen() -> int:
        return sum(sum(w.outcomes().values()) for w in workers)

    names = {f"worker{i}": w.process.pid for i, w in enumerate(workers)}
    with CpuSampler(dict(names, broker=_pid(broker))) as cpu:
        started = start() if start is not None else None
        wait_for(seen, n, process_alive=problem, interval=0.5,
                 on_progress=lambda done: progress(f"{done:,}/{n:,} events"))
        stamps = changelog_timestamps(broker.bootstrap, f"{app_id}-user_state-changelog", n)
    outcomes: dict[str, int] = {}
    recommendations = 0
    for worker in workers:
        metrics = worker.metrics()
        for outcome in ("processed", "duplicate", "dead_lettered"):
            outcomes[outcome] = outcomes.get(outcome, 0) + int(
                metric_sum(metrics, "micromoment_events_total", outcome=outcome))
        recommendations += int(metric_sum(metrics, "micromoment_recommendations_total"))
    if outcomes["processed"] != n or outcomes["dead_lettered"]:
        raise StageFailed(f"{n} events produced but the worker(s) report {outcomes}")
    if len(stamps) != n:
        raise StageFailed(f"{len(stamps)} user_state changelog records for {n} events")
    expected_recs = n if recommending else 0
    if recommendations < expected_recs or (not recommending and recommendations):
        raise StageFailed(f"{recommendations} recommendations for {n} events "
                          f"(expected {expected_recs})")
    first, last = min(stamps) / 1000, max(stamps) / 1000
    result = {"eps": events_per_second(n, first, last), "events": n, "window_s": last - first,
              "first_processed_at": first, "outcomes": outcomes, "recommendations": recommendations,
              "started": started}
    result.update(_cpu_per_event(cpu, list(names), n, first, last))
    return result


def run_pipeline(stage: str, records: Sequence[Record], catalog: Sequence[Record], triggers: str,
                 children: Children, workdir: Path,
                 progress: Progress = lambda text: None) -> dict[str, Any]:
    """The pipeline on one worker over pre-produced ``records``."""
    n = len(records)
    workdir.mkdir(parents=True, exist_ok=True)
    broker = children.broker(workdir / "broker.log")
    worker = None
    try:
        prefix = _prefix(stage)
        variables = pipeline_variables(broker, prefix, triggers)
        _prepare_topics(variables)
        progress(f"producing {len(catalog):,} items and {n:,} events")
        produce(broker.bootstrap, variables["MICROMOMENT_TOPIC_ITEMS"], catalog)
        partitions = produce(broker.bootstrap, variables["MICROMOMENT_TOPIC_EVENTS"], records)
        spawned = time.time()
        worker = WorkerProcess(children, variables, workdir, "worker")
        result = _measure_workers([worker], broker, prefix, n, recommending=bool(triggers), progress=progress)
        result.pop("started")
        result["join_s"] = result.pop("first_processed_at") - spawned
        result["partitions"] = partitions
        result["catalog_items"] = len(catalog)
        result["triggers"] = triggers or "(none)"
        return result
    finally:
        if worker is not None:
            worker.stop()
        children.stop_broker(broker)


def _wait_assigned(workers: list[WorkerProcess], partitions: int, timeout: float = 120.0) -> dict[str, list[int]]:
    """Until every worker is ready and they split the ``partitions`` evenly; the split."""
    deadline = time.monotonic() + timeout
    routes: dict[str, Any] = {}
    while time.monotonic() < deadline:
        problem = next((p for p in (w.problem() for w in workers) if p), None)
        if problem:
            raise StageFailed(problem)
        if all(w.ready() for w in workers):
            routes = workers[0].owned_partitions()
            owned = {url: sorted({p for parts in topics.values() for p in parts})
                     for url, topics in routes.items() if any(topics.values())}
            if (set(owned) == {w.url for w in workers}
                    and sorted(p for parts in owned.values() for p in parts) == list(range(partitions))
                    and all(len(parts) == partitions // len(workers) for parts in owned.values())):
                return owned
        time.sleep(0.5)
    raise StageFailed(f"{len(workers)} worker(s) did not split {partitions} partitions within "
                      f"{timeout:.0f} s (router: {routes})")


def run_scaleout_leg(n_workers: int, records: Sequence[Record], catalog: Sequence[Record],
                     children: Children, workdir: Path,
                     progress: Progress = lambda text: None) -> dict[str, Any]:
    """The learn-only pipeline on ``n_workers`` started first; events produced once they are ready."""
    n = len(records)
    workdir.mkdir(parents=True, exist_ok=True)
    broker = children.broker(workdir / "broker.log")
    workers: list[WorkerProcess] = []
    try:
        prefix = _prefix(f"scaleout{n_workers}")
        variables = pipeline_variables(broker, prefix, NO_TRIGGERS)
        _prepare_topics(variables)
        produce(broker.bootstrap, variables["MICROMOMENT_TOPIC_ITEMS"], catalog)
        workers = [WorkerProcess(children, variables, workdir, f"worker{i}") for i in range(n_workers)]
        progress(f"{n_workers} worker(s) joining")
        split = _wait_assigned(workers, partitions=4)
        rebalances_before = sum(metric_sum(w.metrics(), "micromoment_rebalances_total") for w in workers)
        progress(f"producing {n:,} events")
        result = _measure_workers(
            workers, broker, prefix, n, recommending=False, progress=progress,
            start=lambda: produce(broker.bootstrap, variables["MICROMOMENT_TOPIC_EVENTS"], records))
        rebalances_after = sum(metric_sum(w.metrics(), "micromoment_rebalances_total") for w in workers)
        result.pop("first_processed_at")
        result.update(workers=n_workers, split=split, partitions=result.pop("started"),
                      rebalances_during=int(rebalances_after - rebalances_before))
        return result
    finally:
        for worker in workers:
            worker.stop()
        children.stop_broker(broker)


def run_scaleout(records: Sequence[Record], catalog: Sequence[Record], children: Children,
                 workdir: Path, progress: Progress = lambda text: None) -> dict[str, Any]:
    one = run_scaleout_leg(1, records, catalog, children, workdir / "one", progress)
    two = run_scaleout_leg(2, records, catalog, children, workdir / "two", progress)
    both = one.get("cpu_us_per_event"), two.get("cpu_us_per_event")
    return {"ratio": two["eps"] / one["eps"], "one_worker": one, "two_workers": two,
            # > 1: two workers spend more CPU per event in all than one (standby replicas…)
            "cpu_per_event_two_over_one": both[1] / both[0] if all(both) else None}
