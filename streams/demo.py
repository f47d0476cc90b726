"""``micromoment demo``: broker, worker and a synthetic shop at once, recommendations live.

Everything runs on this machine: the embedded broker, one worker process and a producer
thread. The terminal shows a sample of the recommendations as they arrive (who, what, why,
how fresh) and, because the synthetic users have planted tastes, how often the
recommendations match them, which rises as the learners catch on.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any, TextIO

from streams.admin import ensure_topics, wait_for_broker
from streams.broker import EmbeddedBroker, free_port, port_open
from streams.children import die_with_parent
from streams.clients import make_producer
from streams.console import format_recommendation, tail_recommendations
from streams.produce import publish_catalog, publish_events
from streams.settings import Settings
from streams.synthetic import SyntheticShop

__all__ = ["run_demo", "spawn_worker", "wait_ready"]


def spawn_worker(settings: Settings, web_port: int, log_path: Path,
                 extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``micromoment worker`` as a child process logging to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **(extra_env or {}))
    argv = [sys.executable, "-m", "streams", "worker", "--broker", settings.broker,
            "--web-port", str(web_port)]
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=die_with_parent())


def wait_ready(web_port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> bool:
    """Poll ``GET /ready`` until it answers 200; ``False`` on timeout or if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/ready", timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:  # refused while starting, or 503 while not ready
            pass
        time.sleep(0.25)
    return False


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _Watcher:
    """Samples what is shown and keeps the figures of the status line."""

    def __init__(self, shop: SyntheticShop, show_every: float, out: TextIO) -> None:
        self.shop, self.show_every, self.out = shop, show_every, out
        self.received = 0
        self.freshness_ms: deque[int] = deque(maxlen=2000)
        self.matches: deque[float] = deque(maxlen=500)
        self.first_matches: list[float] = []
        self._last_shown = 0.0

    def taste_match(self, rec: dict[str, Any]) -> float:
        taste = self.shop.segment_of(rec["user_id"])
        items = rec["items"]
        if not items:
            return 0.0
        return sum(self.shop.category_of(i["item_id"]) == taste for i in items
                   if i["item_id"].startswith("item-")) / len(items)

    def __call__(self, rec: dict[str, Any]) -> bool:
        self.received += 1
        self.freshness_ms.append(rec["created_at"] - rec["event_timestamp"])
        match = self.taste_match(rec)
        self.matches.append(match)
        if len(self.first_matches) < 200:
            self.first_matches.append(match)
        now = time.monotonic()
        if now - self._last_shown >= self.show_every:
            self._last_shown = now
            taste = self.shop.segment_of(rec["user_id"])
            self.out.write(f"\n{format_recommendation(rec)}\n"
                           f"      taste match {match:.0%} (this user's planted taste: {taste})\n")
            self.out.flush()
        return False  # printing is done here, sampled

    def status(self, produced: int) -> str:
        fresh = sorted(self.freshness_ms)
        p50 = statistics.median(fresh) if fresh else float("nan")
        p99 = fresh[min(len(fresh) - 1, int(len(fresh) * 0.99))] if fresh else float("nan")
        first = statistics.fmean(self.first_matches) if self.first_matches else 0.0
        recent = statistics.fmean(self.matches) if self.matches else 0.0
        return (f"[status] events sent {produced}, recommendations {self.received}, freshness "
                f"p50 {p50:.0f} ms p99 {p99:.0f} ms, taste match first 200 {first:.0%} → "
                f"last 500 {recent:.0%}")


def run_demo(settings: Settings, *, port: int = 0, web_port: int = 0, rate: float = 50.0,
             users: int = 200, items: int = 400, duration: float = 0.0, show_every: float = 2.0,
             fmt: str = "json", workdir: str = ".micromoment/demo", out: TextIO = sys.stdout) -> int:
    """Run the whole pipeline until Ctrl-C (or ``duration`` seconds); return an exit code."""
    workdir_path = Path(workdir)
    broker_port = port or (9092 if not port_open("127.0.0.1", 9092) else free_port())
    web_port = web_port or (settings.web_port if not port_open("127.0.0.1", settings.web_port)
                            else free_port())
    shop = SyntheticShop(n_users=users, n_items=items, seed=settings.seed)
    stop = threading.Event()
    produced = [0]
    broker = EmbeddedBroker(port=broker_port, log=workdir_path / "broker.log")
    worker: subprocess.Popen[bytes] | None = None
    producer_thread: threading.Thread | None = None
    try:
        out.write(f"starting the embedded Kafka broker (Tansu) on {broker.bootstrap} …\n")
        broker.start()
        settings = settings.with_overrides(broker=broker.url, web_port=web_port)
        wait_for_broker(settings, timeout=10)
        ensure_topics(settings)
        out.write(f"starting the worker (web http://127.0.0.1:{web_port}, log "
                  f"{workdir_path / 'worker.log'}) …\n")
        out.flush()
        worker = spawn_worker(settings, web_port, workdir_path / "worker.log")
        if not wait_ready(web_port, timeout=90, process=worker):
            out.write(f"micromoment: error: the worker did not start; see {workdir_path / 'worker.log'}\n")
            return 1

        def produce() -> None:
            producer = make_producer(settings)
            try:
                publish_catalog(producer, settings, shop.catalog(), fmt)

                def stream():
                    while not stop.is_set():
                        produced[0] += 1
                        yield shop.event(int(time.time() * 1000))

                publish_events(producer, settings, stream(), fmt, rate=rate, should_stop=stop.is_set)
            finally:
                producer.close()

        producer_thread = threading.Thread(target=produce, name="demo-producer", daemon=True)
        producer_thread.start()
        out.write(f"producing synthetic events at {rate:g}/s for {users} users and {items} items; "
                  f"recommendations below (one every {show_every:g} s). Ctrl-C stops.\n")
        out.flush()
        watcher = _Watcher(shop, show_every, out)
        started = time.monotonic()
        last_status = started

        def should_stop() -> bool:
            nonlocal last_status
            now = time.monotonic()
            if now - last_status >= 10:
                last_status = now
                out.write(watcher.status(produced[0]) + "\n")
                out.flush()
            if worker is not None and worker.poll() is not None:
                out.write(f"micromoment: error: the worker exited; see {workdir_path / 'worker.log'}\n")
                return True
            return stop.is_set() or bool(duration and now - started >= duration)

        tail_recommendations(settings, from_beginning=True, should_stop=should_stop,
                             on_record=watcher, out=out)
        out.write(watcher.status(produced[0]) + "\n")
        return 0 if worker.poll() is None and watcher.received else 1
    except KeyboardInterrupt:
        out.write("\nstopping …\n")
        return 0
    finally:
        stop.set()
        if producer_thread is not None:
            producer_thread.join(timeout=10)
        if worker is not None:
            stop_process(worker)
        broker.stop()
        out.write("demo stopped: worker and broker are down.\n")
        out.flush()
