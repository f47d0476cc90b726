"""What the broker stages share: child processes, producing, and watching a worker finish.

Every process a bench run starts (brokers, workers) is registered in :class:`Children`
and stopped in a ``finally``, on an error, on Ctrl-C or on SIGTERM; each also gets
``PR_SET_PDEATHSIG`` (``streams.children``), so even a ``kill -9`` of the bench takes
them down. Children run in their own session: Ctrl-C reaches only the bench, which then
stops them in order.
"""

from __future__ import annotations

import asyncio
import os
import bisect
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson

from streams.broker import EmbeddedBroker, free_port
from streams.children import die_with_parent

__all__ = ["StageFailed", "Children", "produce", "WorkerProcess", "parse_metrics",
           "changelog_timestamps", "wait_for", "bench_env", "CpuSampler", "cpu_seconds"]


class StageFailed(RuntimeError):
    """A stage could not measure; the message says why (it goes in the report)."""


class Children:
    """The processes of one bench run; :meth:`stop_all` stops whatever is still running."""

    def __init__(self) -> None:
        self._processes: list[subprocess.Popen[bytes]] = []
        self._brokers: list[EmbeddedBroker] = []

    def spawn(self, argv: Sequence[str], *, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            process = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=env,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       preexec_fn=die_with_parent())
        self._processes.append(process)
        return process

    def broker(self, log_path: Path) -> EmbeddedBroker:
        broker = EmbeddedBroker(log=log_path)
        self._brokers.append(broker)
        broker.start()
        return broker

    @staticmethod
    def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int | None:
        """SIGTERM (Faust shuts down cleanly), SIGKILL after ``timeout``; the exit code."""
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop_broker(self, broker: EmbeddedBroker) -> None:
        broker.stop()
        if broker in self._brokers:
            self._brokers.remove(broker)

    def stop_all(self) -> None:
        for process in reversed(self._processes):
            self.stop(process, timeout=10.0)
        self._processes.clear()
        for broker in reversed(self._brokers):
            broker.stop()
        self._brokers.clear()

    def running(self) -> list[int]:
        """PIDs still running (for the tests: none after :meth:`stop_all`)."""
        pids = [p.pid for p in self._processes if p.poll() is None]
        return pids + [b._process.pid for b in self._brokers if b.running and b._process]


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all its threads), or ``None`` if unreadable.

    >>> cpu_seconds(os.getpid()) >= 0
    True
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


class CpuSampler:
    """Samples the CPU time of some processes every ``interval`` s, in a thread, so that
    the CPU they spent inside a window known only afterwards can be interpolated.

    On a machine shared with other work, wall-clock events/s fall with the CPU left to
    the worker; the CPU time the worker spent per event does not (much).
    """

    def __init__(self, pids: dict[str, int], interval: float = 0.05) -> None:
        self.pids = pids
        self.interval = interval
        self._samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cpu-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            now = time.time()
            for name, pid in self.pids.items():
                cpu = cpu_seconds(pid)
                if cpu is not None:
                    self._samples[name].append((now, cpu))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def between(self, name: str, start: float, end: float) -> float | None:
        """CPU seconds process ``name`` spent from wall time ``start`` to ``end``."""
        samples = self._samples.get(name) or []
        if not samples or start < samples[0][0] or end > samples[-1][0]:
            return None
        return _interpolate(samples, end) - _interpolate(samples, start)


def _interpolate(samples: list[tuple[float, float]], t: float) -> float:
    """Cumulative CPU at wall time ``t``, linear between the samples around it.

    >>> _interpolate([(0.0, 1.0), (1.0, 2.0), (2.0, 2.0)], 0.5)
    1.5
    """
    i = bisect.bisect_left(samples, (t, float("-inf")))
    if i == 0:
        return samples[0][1]
    if i >= len(samples):
        return samples[-1][1]
    (t0, c0), (t1, c1) = samples[i - 1], samples[i]
    return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)


def bench_env(variables: dict[str, str]) -> dict[str, str]:
    """A child's environment: ours without any ``MICROMOMENT_*``, plus ``variables``.

    The bench sets every setting it depends on; a stray variable in the shell (another
    broker, another top-k) must not change what is measured.

    >>> env = bench_env({"MICROMOMENT_APP_ID": "x"})
    >>> env["MICROMOMENT_APP_ID"], all(not k.startswith("MICROMOMENT_") or k == "MICROMOMENT_APP_ID" for k in env)
    ('x', True)
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROMOMENT_")}
    env.update(variables)
    return env


def produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes, Any]]) -> dict[int, int]:
    """Send ``records`` as fast as aiokafka batches them; confirm each; count per partition.

    Raises :class:`StageFailed` if any send fails: a stage's input is never lost silently.
    """

    async def run() -> dict[int, int]:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all",
                                    max_batch_size=256 * 1024, client_id="micromoment-bench")
        await producer.start()
        try:
            futures = [await producer.send(topic, key=key, value=value, headers=headers or None)
                       for key, value, headers in records]
            counts: dict[int, int] = {}
            for metadata in await asyncio.gather(*futures):
                counts[metadata.partition] = counts.get(metadata.partition, 0) + 1
            return dict(sorted(counts.items()))
        finally:
            await producer.stop()

    try:
        return asyncio.run(run())
    except Exception as exc:
        raise StageFailed(f"producing to {topic} failed: {exc!r}") from exc


def create_topics(bootstrap: str, names: Sequence[str], partitions: int = 4) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="micromoment-bench-admin",
                             request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        admin.close()


def wait_for(progress: Callable[[], int], expected: int, *, process_alive: Callable[[], str | None],
             on_progress: Callable[[int], None] | None = None, start_timeout: float = 120.0,
             stall_timeout: float = 60.0, interval: float = 0.25) -> int:
    """Poll ``progress()`` until it reaches ``expected``; return the last value.

    Fails when ``process_alive()`` names a problem (a worker exited), when nothing was
    processed within ``start_timeout`` seconds, or when the count stopped moving for
    ``stall_timeout`` seconds: slow is measured, stuck is a failure.
    """
    started = time.monotonic()
    last_value, last_change = -1, started
    while True:
        problem = process_alive()
        if problem:
            raise StageFailed(problem)
        value = progress()
        now = time.monotonic()
        if value != last_value:
            last_value, last_change = value, now
            if on_progress is not None:
                on_progress(value)
        if value >= expected:
            return value
        if value <= 0 and now - started > start_timeout:
            raise StageFailed(f"nothing processed within {start_timeout:.0f} s")
        if value > 0 and now - last_change > stall_timeout:
            raise StageFailed(f"stuck at {value} of {expected} events for {stall_timeout:.0f} s")
        time.sleep(interval)


_METRIC = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text format -> ``{name: [(labels, value), ...]}``.

    >>> m = parse_metrics('# HELP x y\\nmicromoment_events_total{event_type="view",outcome="processed"} 3.0\\n')
    >>> m["micromoment_events_total"]
    [({'event_type': 'view', 'outcome': 'processed'}, 3.0)]
    """
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _METRIC.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group("labels") or ""))
        out.setdefault(match.group("name"), []).append((labels, float(match.group("value"))))
    return out


def metric_sum(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str,
               **labels: str) -> float:
    """Sum of ``name``'s samples whose labels include ``labels``.

    >>> metric_sum(parse_metrics('a{o="p",t="v"} 2\\na{o="p",t="c"} 3\\na{o="d",t="v"} 1'), "a", o="p")
    5.0
    """
    return sum(value for got, value in metrics.get(name, [])
               if all(got.get(k) == v for k, v in labels.items()))


class WorkerProcess:
    """A ``micromoment worker`` child on its own web port (an HTTP view of its metrics)."""

    def __init__(self, children: Children, variables: dict[str, str], workdir: Path, name: str) -> None:
        self.web_port = free_port()
        self.log_path = workdir / f"{name}.log"
        env = bench_env(dict(variables, MICROMOMENT_WEB_PORT=str(self.web_port),
                             MICROMOMENT_DATADIR=str(workdir / f"{name}-data")))
        self.process = children.spawn([sys.executable, "-m", "streams", "worker"], env=env,
                                      log_path=self.log_path)
        self.children = children

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def problem(self) -> str | None:
        """Why this worker cannot be measured (it exited), else ``None``."""
        code = self.process.poll()
        if code is None:
            return None
        return f"worker exited with code {code}; last log lines: {self.log_tail()}"

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:])

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        try:
            status, body = self.get("/metrics")
        except OSError:
            return {}
        return parse_metrics(body.decode()) if status == 200 else {}

    def outcomes(self) -> dict[str, int]:
        """Events counted by outcome (processed, duplicate, dead_lettered), from /metrics."""
        metrics = self.metrics()
        return {outcome: int(metric_sum(metrics, "micromoment_events_total", outcome=outcome))
                for outcome in ("processed", "duplicate", "dead_lettered")}

    def ready(self) -> bool:
        try:
            return self.get("/ready", timeout=2.0)[0] == 200
        except OSError:
            return False

    def owned_partitions(self, table: str = "user_state") -> dict[str, dict[str, list[int]]]:
        """Faust's router view: worker URL -> {changelog topic: active partitions of ``table``}."""
        try:
            status, body = self.get(f"/router/{table}/", timeout=2.0)
        except OSError:
            return {}
        return orjson.loads(body) if status == 200 else {}

    def stop(self) -> int | None:
        return self.children.stop(self.process)


def changelog_timestamps(bootstrap: str, topic: str, expected: int, *, timeout: float = 60.0,
                         partitions: int = 4) -> list[int]:
    """Timestamps (ms) of the first ``expected`` records of ``topic``, read from the start.

    Faust's producer stamps a changelog record when the worker writes it (CreateTime):
    measured against a bare worker's own clock, the first and last stamps agreed with its
    first and last processed event to under 1 ms. Reads a little past ``expected`` to see
    extra records (an over-count); returns them all.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", client_id="micromoment-bench-reader",
                             fetch_max_wait_ms=50, max_partition_fetch_bytes=4 * 1024 * 1024)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        stamps: list[int] = []
        deadline = time.monotonic() + timeout
        quiet_until = None
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200, max_records=50_000)
            for records in batch.values():
                stamps.extend(record.timestamp for record in records)
            if len(stamps) >= expected:
                if quiet_until is None:
                    quiet_until = time.monotonic() + 1.0  # any extra records would be here by now
                elif time.monotonic() >= quiet_until and not batch:
                    return stamps
        raise StageFailed(f"{topic}: {len(stamps)} of {expected} records within {timeout:.0f} s")
    finally:
        consumer.close()
