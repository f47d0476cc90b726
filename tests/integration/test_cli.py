"""The ``micromoment`` command as a user runs it: help, clear errors, produce and consume."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from streams.admin import ensure_topics
from streams.broker import free_port
from tests.conftest import start_worker

SUBCOMMANDS = ["broker", "worker", "produce", "consume", "demo"]


def micromoment(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


def test_help_lists_every_subcommand_and_each_has_its_own_help():
    top = micromoment("--help")
    assert top.returncode == 0
    for name in SUBCOMMANDS:
        assert name in top.stdout
        sub = micromoment(name, "--help")
        assert sub.returncode == 0 and f"usage: micromoment {name}" in sub.stdout
    for name in ("worker", "produce", "consume"):
        assert "MICROMOMENT_BROKER" in micromoment(name, "--help").stdout


def test_unreachable_broker_is_one_clear_line_not_a_traceback():
    port = free_port()
    result = micromoment("consume", "--broker", f"kafka://127.0.0.1:{port}",
                         env={"MICROMOMENT_BROKER_WAIT": "1"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("micromoment: error: no Kafka broker answers")
    assert "micromoment broker" in lines[-1] and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["produce", "--synthetic", "--rate", "-3"], "must not be negative"),
    (["produce"], "one of the arguments --file --synthetic is required"),
    (["consume", "--broker", "http://x:1"], "kafka://"),
    (["worker", "--broker", "kafka://nohost"], "host:port"),
])
def test_bad_arguments_give_clear_errors(args, fragment):
    result = micromoment(*args, env={"MICROMOMENT_BROKER_WAIT": "1"})
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr


@pytest.mark.integration
def test_produce_file_and_synthetic_then_consume_json(env, tmp_path):
    settings = env.settings
    ensure_topics(settings)
    worker = start_worker(env)
    try:
        events = tmp_path / "events.jsonl"
        lines = [{"event_id": f"f{n}", "user_id": "zoe", "item_id": f"item-{n:05d}",
                  "event_type": "view", "timestamp": 1_700_000_000_000 + n} for n in range(3)]
        events.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
        variables = env.variables
        produced = micromoment("produce", "--file", str(events), "--format", "avro", env=variables)
        assert produced.returncode == 0, produced.stderr
        assert "published 3 events" in produced.stderr
        consumed = micromoment("consume", "--from-beginning", "--json", "--count", "3",
                               "--timeout", "60", env=variables)
        assert consumed.returncode == 0, consumed.stderr
        recs = [orjson.loads(line) for line in consumed.stdout.splitlines()]
        assert [r["user_id"] for r in recs] == ["zoe"] * 3
        assert {r["trigger_event_id"] for r in recs} == {"f0", "f1", "f2"}
        synthetic = micromoment("produce", "--synthetic", "--count", "40", "--users", "5",
                                "--items", "30", env=variables)
        assert synthetic.returncode == 0 and "published 30 catalog items" in synthetic.stderr
        assert "published 40 events" in synthetic.stderr
        consumed = micromoment("consume", "--from-beginning", "--json", "--count", "13",
                               "--timeout", "60", env=variables)
        users = {orjson.loads(line)["user_id"] for line in consumed.stdout.splitlines()}
        assert len(consumed.stdout.splitlines()) == 13 and users - {"zoe"}
        readable = micromoment("consume", "--from-beginning", "--count", "1", "--timeout", "30",
                               env=variables)
        assert "fresh" in readable.stdout and " 1. " in readable.stdout
    finally:
        worker.stop()
