"""docker-compose.yml is a valid compose file for real Apache Kafka (KRaft) + the worker.

No Docker engine runs on the build machines, but a compose client validates a file
without one. Skips (saying so) where neither ``docker compose`` nor ``docker-compose`` exists.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_validates_and_wires_kafka_worker_producer():
    command = compose_command()
    if command is None:
        pytest.skip("no compose client (`docker compose` plugin or `docker-compose`) on this machine")
    result = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    config = result.stdout
    assert "apache/kafka" in config and "KAFKA_PROCESS_ROLES: broker,controller" in config
    for service in ("kafka:", "worker:", "producer:"):
        assert f"\n  {service}" in config
    assert "MICROMOMENT_BROKER: kafka://kafka:9092" in config
    assert "infra/Dockerfile" in config
