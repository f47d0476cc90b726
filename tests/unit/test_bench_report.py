"""The bench's bookkeeping: statistics, ratios, targets, the table, the JSON and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest

from streams.bench.harness import Children, StageFailed, metric_sum, parse_metrics, wait_for
from streams.bench.latency import phase_latencies
from streams.bench.report import RATIOS, TARGETS, Report, percentile, summarize
from streams.bench.throughput import events_per_second
from streams.cli import build_parser

HEADLINE = ("faust_count_eps", "faust_table_eps", "faust_table_send_eps", "pipeline_learn_eps",
            "pipeline_recommend_eps", "latency_ms", "rank_ms", "bytes_per_user",
            "scaleout_2_workers_ratio", "learn_vs_table", "recommend_vs_table_send", "learn_vs_count")


@pytest.mark.parametrize("q", [0, 1, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy(q):
    values = list(np.random.default_rng(q).exponential(3.0, size=997))
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_summarize_and_empty():
    stats = summarize([3.0, 1.0, 2.0, 10.0])
    assert (stats["n"], stats["max"], stats["mean"]) == (4, 10.0, 4.0)
    with pytest.raises(ValueError):
        percentile([], 50)


def _full_report() -> Report:
    report = Report(mode="quick")
    report.set(faust_count_eps=10_000.0, faust_table_eps=4_000.0, faust_table_send_eps=3_000.0,
               pipeline_learn_eps=2_000.0, pipeline_recommend_eps=3_300.0,
               latency_ms={"p50": 4.0, "p95": 20.0, "p99": 30.0},
               rank_ms={"10000": 0.5, "100000": 12.0}, bytes_per_user=4096.0,
               scaleout_2_workers_ratio=1.7)
    return report


def test_ratios_are_the_pipeline_over_its_baseline():
    values = _full_report().values()
    assert values["learn_vs_table"] == 0.5
    assert values["recommend_vs_table_send"] == pytest.approx(1.1)
    assert values["learn_vs_count"] == 0.2
    assert set(RATIOS) == {"learn_vs_table", "recommend_vs_table_send", "learn_vs_count"}


def test_targets_are_judged_both_ways():
    verdicts = {t.path: met for t, _, met in _full_report().judged()}
    assert verdicts == {
        "learn_vs_table": False, "recommend_vs_table_send": True, "learn_vs_count": False,
        "latency_ms.p50": True, "latency_ms.p99": False, "rank_ms.10000": True,
        "rank_ms.100000": False, "bytes_per_user": False, "scaleout_2_workers_ratio": True}
    assert len(TARGETS) == 9


def test_json_has_every_key_and_nulls_for_a_failed_stage(tmp_path):
    report = _full_report()
    del report.results["faust_table_eps"]
    report.fail("faust_table", "worker exited with code 1")
    path = tmp_path / "out" / "bench.json"
    report.write_json(path)
    data = json.loads(path.read_text())
    assert set(HEADLINE) <= set(data)
    assert data["faust_table_eps"] is None and data["learn_vs_table"] is None
    assert data["learn_vs_count"] == 0.2
    assert data["latency_ms"] == {"p50": 4.0, "p95": 20.0, "p99": 30.0}
    assert data["rank_ms"] == {"10000": 0.5, "100000": 12.0}
    assert data["failures"] == {"faust_table": "worker exited with code 1"}
    assert data["targets"]["learn_vs_table"]["met"] is None
    assert data["targets"]["bytes_per_user"] == {"op": "<=", "target": 2048.0, "value": 4096.0,
                                                 "met": False}
    assert data["run"]["machine"]["cpus"] >= 1
    assert report.exit_code == 1


def test_table_shows_each_figure_its_target_and_verdict():
    report = _full_report()
    report.notes.append("a note")
    table = report.table()
    for key in ("faust_count_eps", "learn_vs_table", "latency_ms.p99", "rank_ms.100000",
                "bytes_per_user", "scaleout_2_workers_ratio"):
        assert key in table
    line = next(line for line in table.splitlines() if line.startswith("bytes_per_user"))
    assert "4,096 B" in line and "≤ 2048 B" in line and "MISS (2.0× the limit)" in line
    line = next(line for line in table.splitlines() if line.startswith("scaleout"))
    assert line.endswith("pass")
    assert "note: a note" in table
    assert report.exit_code == 0


def test_events_per_second_is_over_the_processing_window():
    assert events_per_second(2001, 100.0, 102.0) == 1000.0
    with pytest.raises(StageFailed):
        events_per_second(10, 5.0, 5.0)


def test_latency_counts_missing_events_as_lower_bounds():
    sent = [(f"e{n}", n * 0.001) for n in range(100)]
    received = {f"e{n}": (n * 0.001 + 0.004, 2) for n in range(98)}
    stats = phase_latencies(sent, received, gave_up_at=1.0)
    assert stats["missing"] == 2 and stats["lower_bound"]
    assert stats["p50"] == pytest.approx(4.0)
    assert stats["max"] == pytest.approx((1.0 - 0.098) * 1000)
    assert stats["pickup_ms"] == {"p50": 2.0, "p99": 2.0}
    complete = phase_latencies(sent[:98], received, gave_up_at=1.0)
    assert not complete["lower_bound"] and complete["p99"] == pytest.approx(4.0)


def test_metrics_are_parsed_and_summed_by_label():
    text = ('# HELP micromoment_events_total x\n'
            'micromoment_events_total{event_type="view",outcome="processed"} 7.0\n'
            'micromoment_events_total{event_type="click",outcome="processed"} 3.0\n'
            'micromoment_events_total{event_type="view",outcome="duplicate"} 1.0\n'
            'micromoment_recommendations_total{personalized="true"} 2.0\n')
    metrics = parse_metrics(text)
    assert metric_sum(metrics, "micromoment_events_total", outcome="processed") == 10.0
    assert metric_sum(metrics, "micromoment_events_total") == 11.0
    assert metric_sum(metrics, "micromoment_recommendations_total") == 2.0
    assert metric_sum(metrics, "absent") == 0.0


def test_wait_for_fails_when_stuck_or_when_the_worker_dies():
    with pytest.raises(StageFailed, match="stuck at 5 of 10"):
        wait_for(lambda: 5, 10, process_alive=lambda: None, stall_timeout=0.3, interval=0.05)
    with pytest.raises(StageFailed, match="nothing processed"):
        wait_for(lambda: 0, 10, process_alive=lambda: None, start_timeout=0.2, interval=0.05)
    with pytest.raises(StageFailed, match="exited"):
        wait_for(lambda: 0, 10, process_alive=lambda: "worker exited with code 1")
    counts = iter(range(0, 100, 7))
    assert wait_for(lambda: next(counts), 20, process_alive=lambda: None, interval=0.01) == 21


def test_children_are_all_stopped(tmp_path):
    children = Children()
    process = children.spawn([sys.executable, "-c", "import time; time.sleep(60)"], env={},
                             log_path=tmp_path / "child.log")
    assert children.running() == [process.pid]
    started = time.monotonic()
    children.stop_all()
    assert process.poll() is not None and children.running() == []
    assert time.monotonic() - started < 10


def test_bench_command_line():
    args = build_parser().parse_args(["bench", "--quick", "--json", "out.json", "--stages",
                                      "memory, faust_count"])
    assert (args.quick, args.json, args.stages) == (True, "out.json", ("faust_count", "memory"))
    result = subprocess.run([sys.executable, "-m", "streams", "bench", "--stages", "nope"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown stage" in result.stderr


def test_a_failing_stage_is_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    from streams.bench import runner

    calls = []

    def fake(stage, config, report, children, records, workdir, progress):
        calls.append(stage)
        if stage == "rank":
            raise StageFailed("broken on purpose")
        report.set(bytes_per_user=1000.0)

    monkeypatch.setattr(runner, "_run_stage", fake)
    out = tmp_path / "stdout.txt"
    with open(out, "w") as handle, open(tmp_path / "stderr.txt", "w") as err:
        code = runner.run_bench(quick=True, json_path=str(tmp_path / "b.json"), stages=("rank", "memory"),
                                workdir=tmp_path / "wd", out=handle, err=err)
    assert code == 1 and calls == ["rank", "memory"]
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["failures"] == {"rank": "broken on purpose"} and data["bytes_per_user"] == 1000.0
    assert "FAILED rank: broken on purpose" in out.read_text()
    assert math.isfinite(data["run"]["duration_s"])


def test_cpu_sampler_interpolates_a_process_cpu_inside_a_window():
    import os

    from streams.bench.harness import CpuSampler

    with CpuSampler({"me": os.getpid(), "gone": 2 ** 22 + 12345}, interval=0.01) as cpu:
        time.sleep(0.05)
        start = time.time()
        deadline = start + 0.3
        while time.time() < deadline:  # burn CPU in this process
            sum(range(1000))
        end = time.time()
        time.sleep(0.05)
    spent = cpu.between("me", start, end)
    assert spent is not None and 0 < spent <= (end - start) + 0.05
    assert cpu.between("gone", start, end) is None  # no such process: no figure, no error
    assert cpu.between("me", start - 60, end) is None  # outside the sampled span


def test_cpu_ratios_in_the_json_and_the_table(tmp_path):
    report = _full_report()
    report.set(cpu_us_per_event={"faust_count_eps": 100.0, "faust_table_eps": 400.0,
                                 "faust_table_send_eps": 500.0, "pipeline_learn_eps": 800.0,
                                 "pipeline_recommend_eps": 1000.0})
    report.write_json(tmp_path / "b.json")
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["cpu_ratios"] == {"learn_vs_table": 0.5, "recommend_vs_table_send": 0.5,
                                  "learn_vs_count": 0.125}
    assert "by worker CPU time per event" in report.table()
