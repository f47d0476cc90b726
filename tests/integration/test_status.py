"""``micromoment status``: the health verdict on sample snapshots, discovery and exit codes on
a stand-in HTTP server, and the real thing against running workers on the embedded broker.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

import pytest

from streams.admin import ensure_topics
from streams.broker import free_port
from streams.codecs import encode_event
from streams.records import Event
from streams.status import collect, evaluate, render_text, worker_report
from tests.conftest import wait_until
from tests.integration.kafka_helpers import send_all


def micromoment(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


def snapshot(url: str, **overrides: Any) -> dict[str, Any]:
    """A /dashboard/data answer as streams.monitor.Monitor.snapshot() shapes it."""
    data = {
        "worker": url, "time": 1_700_000_000.0, "ready": True, "reasons": [],
        "model_version": "content+mf+pop:120",
        "events": {"processed": 100, "duplicate": 2, "dead_lettered": 3},
        "recommendations": 60, "throughput_eps": 12.5, "deadletter_rate": 0.03,
        "freshness_ms": {"p50": 12.0, "p99": 40.0},
        "lag": {"total": 7, "partitions": [{"topic": "events", "partition": 0, "lag": 5},
                                           {"topic": "events", "partition": 1, "lag": 2}]},
        "quality": {"hit_rate": 0.21, "ctr": 0.05, "coverage": 0.4, "gini": 0.5},
        "most_exposed_items": [], "most_exposed_categories": [], "history": [],
    }
    data.update(overrides)
    return data


def probe(url: str, ready: bool = True, reasons: list[str] | None = None, **overrides: Any) -> dict:
    body = {"status": "ready"} if ready else {"status": "not ready", "reasons": reasons or []}
    return {"url": url, "error": None, "ready_status": 200 if ready else 503, "ready_body": body,
            "snapshot": snapshot(url, ready=ready, reasons=reasons or [], **overrides),
            "snapshot_status": 200}


def down(url: str) -> dict:
    return {"url": url, "error": "[Errno 111] Connection refused", "ready_status": None,
            "ready_body": None, "snapshot": None, "snapshot_status": None}


A, B = "http://10.0.0.1:6066", "http://10.0.0.2:6066"


# ------------------------------------------------------------------ the verdict, no HTTP

def test_two_ready_workers_are_healthy_and_summed():
    second = probe(B, lag={"total": 4, "partitions": [{"topic": "events", "partition": 2, "lag": 4}]},
                   freshness_ms={"p50": 20.0, "p99": 90.0}, throughput_eps=7.5)
    report = evaluate([probe(A), second])
    assert report["healthy"] is True and report["problems"] == []
    summary = report["summary"]
    assert summary["workers"] == 2 and summary["workers_ready"] == 2
    assert summary["events"] == {"processed": 200, "duplicate": 4, "dead_lettered": 6}
    assert summary["recommendations"] == 120 and summary["throughput_eps"] == 20.0
    assert summary["deadletter_share"] == pytest.approx(6 / 210)
    assert summary["lag_total"] == 11 and summary["freshness_ms"]["p99_max"] == 90.0
    assert [(p["partition"], p["lag"], p["owner"]) for p in summary["partitions"]] == \
        [(0, 5, A), (1, 2, A), (2, 4, B)]
    json.dumps(report)  # --json prints it as is


def test_a_worker_not_ready_is_a_named_problem():
    report = evaluate([probe(A), probe(B, ready=False, reasons=["consumer group is rebalancing"])])
    assert report["healthy"] is False
    assert report["problems"] == [f"worker {B} not ready: consumer group is rebalancing"]
    assert report["summary"]["workers_ready"] == 1


def test_an_unreachable_worker_is_a_named_problem():
    report = evaluate([probe(A), down(B)])
    assert report["healthy"] is False
    assert report["problems"] == [f"worker {B} unreachable: [Errno 111] Connection refused"]
    assert report["summary"]["workers_unreachable"] == 1
    assert f"worker {B}  UNREACHABLE" in render_text(report)


def test_no_worker_at_all_is_one_line_that_says_how_to_start_one():
    report = evaluate([down(A)], seeds=[A])
    assert report["healthy"] is False
    text = render_text(report)
    assert text.count("\n") == 0
    assert text.startswith(f"no micromoment worker answers at {A}") and "`micromoment worker`" in text


@pytest.mark.parametrize("max_lag, healthy", [(11, True), (10, False), (0, False)])
def test_lag_threshold(max_lag, healthy):
    second = probe(B, lag={"total": 4, "partitions": [{"topic": "events", "partition": 2, "lag": 4}]})
    report = evaluate([probe(A), second], max_lag=max_lag)
    assert report["healthy"] is healthy
    if not healthy:
        assert report["problems"] == [f"total consumer lag 11 messages is above --max-lag {max_lag}"]


def test_a_partition_reported_twice_mid_rebalance_counts_once_at_its_larger_lag():
    lag_a = {"total": 5, "partitions": [{"topic": "events", "partition": 0, "lag": 5}]}
    lag_b = {"total": 9, "partitions": [{"topic": "events", "partition": 0, "lag": 9}]}
    report = evaluate([probe(A, lag=lag_a), probe(B, lag=lag_b)])
    assert report["summary"]["lag_total"] == 9
    assert report["summary"]["partitions"] == [{"topic": "events", "partition": 0, "lag": 9, "owner": B}]


def test_freshness_threshold_names_the_worker():
    slow = probe(B, freshness_ms={"p50": 800.0, "p99": 6200.0})
    report = evaluate([probe(A), slow], max_freshness_ms=5000)
    assert report["problems"] == [f"worker {B} freshness p99 6200 ms is above --max-freshness-ms 5000"]
    assert evaluate([probe(A), slow], max_freshness_ms=7000)["healthy"] is True


def test_a_fresh_worker_with_nothing_measured_yet_is_healthy():
    idle = probe(A, events={"processed": 0, "duplicate": 0, "dead_lettered": 0}, recommendations=0,
                 throughput_eps=None, deadletter_rate=None, freshness_ms={"p50": None, "p99": None},
                 lag={"total": 0, "partitions": []},
                 quality={"hit_rate": None, "ctr": None, "coverage": 0.0, "gini": None})
    report = evaluate([idle])
    assert report["healthy"] is True
    text = render_text(report)
    assert "p50 —, p99 —" in text and "hit rate —" in text


def test_broker_is_a_problem_only_when_checked_and_down():
    url = "kafka://127.0.0.1:1"
    assert evaluate([probe(A)], broker={"url": url, "checked": False, "reachable": None})["healthy"]
    report = evaluate([probe(A)], broker={"url": url, "checked": True, "reachable": False})
    assert report["problems"] == [f"broker {url} does not accept connections"]


def test_a_worker_without_dashboard_data_is_a_problem():
    old = {"url": A, "error": None, "ready_status": 200, "ready_body": {"status": "ready"},
           "snapshot": None, "snapshot_status": 404}
    report = evaluate([old])
    assert report["problems"] == [f"worker {A} serves no dashboard data (/dashboard/data answered 404)"]


def test_readable_report_shows_each_worker_and_the_lag_per_partition_with_its_owner():
    report = evaluate([probe(A), probe(B, ready=False, reasons=["no partitions assigned yet"],
                                       lag={"total": 0, "partitions": []})])
    text = render_text(report)
    assert text.splitlines()[0] == "micromoment status: UNHEALTHY (1 problem)"
    assert f"worker {A}  ready\n  model        content+mf+pop:120\n" in text
    assert f"worker {B}  NOT READY: no partitions assigned yet" in text
    assert "100 processed, 2 duplicate, 3 dead-lettered (dead-letter rate 3.0%)" in text
    assert "12.5 events/s; 60 recommendations" in text
    assert "p50 12 ms, p99 40 ms" in text
    assert "hit rate 0.210, CTR 0.050, coverage 0.400, Gini 0.500" in text
    assert "consumer lag: 7 messages in total (--max-lag 10000)" in text
    assert any(line.split() == ["events", "0", "5", A] for line in text.splitlines())


def test_worker_report_tolerates_partial_snapshots():
    report = worker_report({"url": A, "ready_status": 200, "ready_body": {"status": "ready"},
                            "snapshot": {"worker": A, "lag": {"partitions": [
                                {"topic": "events", "partition": 3, "lag": 2}]}}})
    assert report["ready"] and report["lag"] == {
        "total": 2, "partitions": [{"topic": "events", "partition": 3, "lag": 2, "owner": A}]}
    assert report["events"] == {"processed": 0, "duplicate": 0, "dead_lettered": 0}
    assert report["freshness_ms"] == {"p50": None, "p99": None}


# ------------------------------------------------------------------ discovery and the command, on a stand-in

class FakeWorkers:
    """Stand-in workers on loopback: each port answers /ready, /dashboard/data, /router/user_state/."""

    def __init__(self) -> None:
        self.routes: dict[int, dict[str, tuple[int, Any]]] = {}
        self.servers: list[http.server.ThreadingHTTPServer] = []

    def add(self, answers: dict[str, tuple[int, Any]]) -> str:
        routes = answers

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                status, body = routes.get(self.path, (404, {"error": "not found"}))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def fakes() -> Iterator[FakeWorkers]:
    workers = FakeWorkers()
    yield workers
    workers.close()


def ready_answers(router: dict | None = None, worker: str = "", **overrides: Any) -> dict:
    answers = {"/ready": (200, {"status": "ready"}),
               "/dashboard/data": (200, snapshot(worker, **overrides))}
    if router is not None:
        answers["/router/user_state/"] = (200, router)
    return answers


def test_discovery_through_the_router_finds_every_worker_once(fakes):
    second = fakes.add(ready_answers(worker="second"))
    answers = ready_answers(worker="first")
    first = fakes.add(answers)
    port1, port2 = first.rsplit(":", 1)[1], second.rsplit(":", 1)[1]
    # The seed advertises itself under another name of the same host, and the second worker
    # under its bind-all address (a container's MICROMOMENT_WEB_HOST=0.0.0.0).
    answers["/router/user_state/"] = (200, {f"http://localhost:{port1}": {"app-user_state-changelog": [0, 1]},
                                           f"http://0.0.0.0:{port2}": {"app-user_state-changelog": [2, 3]}})
    unreachable = f"http://127.0.0.1:{free_port()}"
    probes = collect([unreachable, first], timeout=2)
    # localhost:port1 answers with the same snapshot "worker" as the seed: kept once.
    assert [p["url"] for p in probes] == [unreachable, first, f"http://127.0.0.1:{port2}"]
    report = evaluate(probes)
    assert report["summary"]["workers"] == 3 and report["summary"]["workers_ready"] == 2
    assert report["summary"]["events"]["processed"] == 200
    assert report["problems"] == [f"worker {unreachable} unreachable: [Errno 111] Connection refused"]
    assert evaluate(collect([first], timeout=2))["healthy"]


def test_command_exit_codes_on_stand_in_workers(fakes):
    healthy = fakes.add(ready_answers(worker="w1"))
    result = micromoment("status", "--worker", healthy, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is True and report["workers"][0]["url"] == healthy

    lagging = fakes.add(ready_answers(worker="w2", lag={"total": 20000, "partitions": [
        {"topic": "events", "partition": 0, "lag": 20000}]}))
    result = micromoment("status", "--worker", lagging)
    assert result.returncode == 1
    assert "total consumer lag 20000 messages is above --max-lag 10000" in result.stdout
    assert micromoment("status", "--worker", lagging, "--max-lag", "50000").returncode == 0

    sick = fakes.add({"/ready": (503, {"status": "not ready", "reasons": ["no partitions assigned yet"]}),
                      "/dashboard/data": (200, snapshot("w3", ready=False))})
    result = micromoment("status", "--worker", healthy, "--worker", sick, "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["problems"] == [f"worker {sick} not ready: no partitions assigned yet"]


def test_command_with_no_worker_and_usage_errors():
    port = free_port()
    result = micromoment("status", "--worker", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stdout.strip().splitlines() == [
        f"no micromoment worker answers at http://127.0.0.1:{port}: start one with "
        "`micromoment worker` (or `micromoment demo`), or point --worker at yours"]
    # Default: MICROMOMENT_WEB_PORT on this machine.
    result = micromoment("status", env={"MICROMOMENT_WEB_PORT": str(port)})
    assert result.returncode == 1 and f"http://127.0.0.1:{port}" in result.stdout
    result = micromoment("status", "--worker", f"127.0.0.1:{port}", "--broker",
                         f"kafka://127.0.0.1:{free_port()}", "--json")
    problems = json.loads(result.stdout)["problems"]
    assert result.returncode == 1 and problems[0].endswith("does not accept connections")
    for args, fragment in [(["--worker", "ftp://x:1"], "worker URL must look like http://host:port"),
                           (["--max-lag", "-5"], "must not be negative"),
                           (["--max-freshness-ms", "soon"], "expected a number"),
                           (["--broker", "http://x:1"], "kafka://")]:
        result = micromoment("status", *args)
        assert result.returncode == 2, args
        assert fragment in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------ real workers on the embedded broker

def status_json(env, *args: str, port: int | None = None) -> tuple[int, dict]:
    variables = dict(env.variables, **({"MICROMOMENT_WEB_PORT": str(port)} if port else {}))
    result = micromoment("status", "--json", *args, env=variables)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.mark.integration
def test_status_of_a_live_worker_before_and_after_events(env, worker_factory):
    settings = env.settings
    ensure_topics(settings)
    worker = worker_factory()

    code, report = status_json(env, "--worker", worker.url)
    assert code == 0, report["problems"]
    assert report["healthy"] and report["broker"] == {"url": env.broker.url, "checked": True,
                                                      "reachable": True}
    (seen,) = report["workers"]
    assert seen["url"] == worker.url and seen["ready"] and seen["reasons"] == []
    assert report["summary"]["events"] == {"processed": 0, "duplicate": 0, "dead_lettered": 0}
    assert report["summary"]["recommendations"] == 0

    # Stamped 1.5 s in the past, so every freshness is over 1000 ms: a known threshold test.
    stamp = int(time.time() * 1000) - 1500
    events = [Event(f"s{n}", f"user-{n % 4}", f"item-{n % 7}", ("view", "purchase")[n % 2], stamp + n)
              for n in range(30)]
    records = [(e.user_id.encode(), *encode_event(e, "json")) for e in events]
    invalid = [(b"user-1", b"{broken", []), (b"user-2", b'{"event_id": "x"}', [])]
    send_all(env.broker.bootstrap, settings.topic_events, records + records[:4] + invalid)

    def settled():
        _, data = worker.get("/dashboard/data")
        done = sum(data["events"].values()) >= 36 and data["lag"]["total"] == 0 and data["lag"]["partitions"]
        return data if done else None

    data = wait_until(settled, timeout=60, message="36 events counted and lag back to 0")
    code, report = status_json(env, port=worker.web_port)  # the default URL, from MICROMOMENT_WEB_PORT
    assert code == 0, report["problems"]
    summary = report["summary"]
    assert summary["events"] == {"processed": 30, "duplicate": 4, "dead_lettered": 2}
    assert summary["events"] == data["events"]
    triggers = 15 + 2  # 15 views, and the 2 views among the 4 redelivered re-trigger
    assert summary["recommendations"] == triggers == data["recommendations"]
    assert summary["lag_total"] == 0
    owned = {(p["topic"], p["partition"]) for p in summary["partitions"]}
    assert (settings.topic_events, 0) in owned and {p["owner"] for p in summary["partitions"]} == {worker.url}
    (seen,) = report["workers"]
    assert seen["model_version"] and seen["model_version"] == data["model_version"]
    assert 1000 <= seen["freshness_ms"]["p50"] <= seen["freshness_ms"]["p99"] < 5000
    assert seen["deadletter_rate"] == pytest.approx(2 / 36)

    code, report = status_json(env, "--worker", worker.url, "--max-freshness-ms", "900", "--max-lag", "0")
    assert code == 1
    assert report["problems"] == [f"worker {worker.url} freshness p99 "
                                  f"{seen['freshness_ms']['p99']:.0f} ms is above --max-freshness-ms 900"]

    text = micromoment("status", "--worker", worker.url, env=env.variables)
    assert text.returncode == 0, text.stdout
    assert text.stdout.startswith("micromoment status: HEALTHY")
    assert f"worker {worker.url}  ready" in text.stdout
    assert "30 processed, 4 duplicate, 2 dead-lettered" in text.stdout

    worker.stop()
    code, report = status_json(env, "--worker", worker.url)
    assert code == 1
    assert report["problems"][0].startswith(f"no micromoment worker answers at {worker.url}")


@pytest.mark.integration
def test_status_discovers_the_group_and_names_a_stopped_worker(env, worker_factory):
    ensure_topics(env.settings)
    first = worker_factory()
    second = worker_factory()

    def both_ready():
        code, report = status_json(env, "--worker", first.url)
        urls = {w["url"] for w in report["workers"]}
        owners = {p["owner"] for p in report["summary"]["partitions"]}
        return report if code == 0 and urls == owners == {first.url, second.url} else None

    report = wait_until(both_ready, timeout=90, interval=1.0, message="status finding both workers ready")
    assert report["summary"]["workers"] == 2 and report["summary"]["workers_ready"] == 2
    assert {p["partition"] for p in report["summary"]["partitions"]
            if p["topic"] == env.settings.topic_events} == {0, 1, 2, 3}

    second.stop()
    code, report = status_json(env, "--worker", first.url, "--worker", second.url)
    assert code == 1
    assert f"worker {second.url} unreachable: " in " | ".join(report["problems"])
