"""Runs the bench's stages in order, with a progress bar, and reports.

Each stage runs on its own (a fresh embedded broker for the broker stages); one that
fails is recorded with its reason and the next one runs. Whatever happens, every process
the run started is stopped before it returns (also on Ctrl-C and SIGTERM).
"""

from __future__ import annotations

import signal
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from streams.bench.harness import Children, StageFailed
from streams.bench.report import Report

__all__ = ["STAGES", "Config", "QUICK", "FULL", "run_bench"]

#: Every stage, in the order they run.
STAGES = ("faust_count", "faust_table", "faust_table_send", "pipeline_learn", "pipeline_recommend",
          "scaleout", "latency", "rank", "memory")


@dataclass(frozen=True)
class Config:
    """How much each stage measures."""

    bare_events: int
    pipeline_events: int
    scaleout_events: int
    latency_rate: float
    latency_warmup_s: float
    latency_measure_s: float
    latency_low_rate: float = 100.0
    latency_low_s: float = 10.0
    latency_max_drain_s: float = 30.0
    rank_calls: dict[int, int] = field(default_factory=dict)
    memory_users: int = 100_000
    memory_sample: int = 2_000
    memory_events_per_user: int = 20


#: ``--quick``: the whole run in 5 minutes on a quiet 2-core machine, up to 10 on a busy one.
QUICK = Config(bare_events=30_000, pipeline_events=10_000, scaleout_events=10_000,
               latency_rate=1_000.0, latency_warmup_s=5.0, latency_measure_s=20.0,
               rank_calls={10_000: 300, 100_000: 100}, memory_sample=2_000)
#: The default: longer windows and more samples, 10 minutes on a quiet 2-core machine, up to 25.
FULL = Config(bare_events=100_000, pipeline_events=40_000, scaleout_events=40_000,
              latency_rate=1_000.0, latency_warmup_s=10.0, latency_measure_s=60.0,
              latency_low_s=20.0, latency_max_drain_s=60.0,
              rank_calls={10_000: 2_000, 100_000: 500}, memory_sample=5_000)


class _Records:
    """The stages' inputs, generated once per size and reused."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[list, list]] = {}

    def get(self, n_events: int) -> tuple[list, list]:
        from streams.bench.workload import catalog_records, event_records, shop_for

        if n_events not in self._cache:
            shop = shop_for(n_events)
            self._cache[n_events] = (event_records(shop, n_events), catalog_records(shop))
        return self._cache[n_events]


def _record_cpu(report: Report, key: str, result: dict[str, Any]) -> None:
    if result.get("cpu_us_per_event") is not None:
        cpu = report.results.setdefault("cpu_us_per_event", {})
        cpu[key] = result["cpu_us_per_event"]


def _run_stage(stage: str, config: Config, report: Report, children: Children, records: _Records,
               workdir: Path, progress: Callable[[str], None]) -> None:
    from streams.bench import latency, memory, rank, throughput

    stage_dir = workdir / stage
    if stage.startswith("faust_"):
        events, _ = records.get(config.bare_events)
        result = throughput.run_bare(stage.removeprefix("faust_"), events, children, stage_dir, progress)
        report.set(**{f"{stage}_eps": result["eps"]})
        _record_cpu(report, f"{stage}_eps", result)
    elif stage.startswith("pipeline_"):
        events, catalog = records.get(config.pipeline_events)
        triggers = throughput.NO_TRIGGERS if stage == "pipeline_learn" else throughput.ALL_TRIGGERS
        result = throughput.run_pipeline(stage, events, catalog, triggers, children, stage_dir, progress)
        report.set(**{f"{stage}_eps": result["eps"]})
        _record_cpu(report, f"{stage}_eps", result)
    elif stage == "scaleout":
        events, catalog = records.get(config.scaleout_events)
        result = throughput.run_scaleout(events, catalog, children, stage_dir, progress)
        report.set(scaleout_2_workers_ratio=result["ratio"])
    elif stage == "latency":
        result = latency.run_latency(children, stage_dir, rate=config.latency_rate,
                                     warmup_s=config.latency_warmup_s,
                                     measure_s=config.latency_measure_s,
                                     low_rate=config.latency_low_rate, low_s=config.latency_low_s,
                                     max_drain_s=config.latency_max_drain_s, progress=progress)
        report.set(latency_ms={q: result[q] for q in ("p50", "p95", "p99")})
        loaded, unloaded = result["loaded"], result["unloaded"]
        if loaded["lower_bound"]:
            report.notes.append(
                f"latency: the worker fell behind {config.latency_rate:,.0f} events/s: "
                f"{loaded['missing']:,} of {loaded['n']:,} recommendations had not arrived "
                f"{loaded['drained_s']:.0f} s after the last event, so the percentiles are lower bounds")
        report.notes.append(f"latency at {unloaded['rate']:,.0f} events/s (unloaded): "
                            f"p50 {unloaded['p50']:.1f} ms, p99 {unloaded['p99']:.1f} ms")
    elif stage == "rank":
        result = rank.run_rank(config.rank_calls, progress=progress)
        report.set(rank_ms={size: stats["p50"] for size, stats in result.items()})
    elif stage == "memory":
        result = memory.run_memory(n_users=config.memory_users, sample=config.memory_sample,
                                   events_per_user=config.memory_events_per_user, progress=progress)
        report.set(bytes_per_user=result["bytes_per_user"])
    else:  # pragma: no cover - the CLI validates stage names
        raise ValueError(f"unknown stage {stage!r}")
    report.detail(stage, **result)


def run_bench(*, quick: bool = False, json_path: str | None = None,
              stages: tuple[str, ...] = STAGES, workdir: str | Path = ".micromoment/bench",
              config: Config | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run ``stages``; print the summary table; write ``json_path``; the exit code."""
    from tqdm import tqdm

    config = config or (QUICK if quick else FULL)
    run_dir = Path(workdir) / time.strftime("run-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    report = Report(mode="quick" if quick else "full", started_at=time.time())
    report.params = {"stages": list(stages), "logs": str(run_dir), **asdict(config)}
    children = Children()
    records = _Records()
    started = time.monotonic()

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    bar = tqdm(total=len(stages), file=err, unit="stage", dynamic_ncols=True,
               bar_format="{desc}  [{n_fmt}/{total_fmt} stages, {elapsed}]")
    try:
        for stage in stages:
            bar.set_description_str(f"bench {stage}")

            def progress(text: str, stage: str = stage) -> None:
                bar.set_description_str(f"bench {stage}: {text}")
            stage_started = time.monotonic()
            try:
                _run_stage(stage, config, report, children, records, run_dir, progress)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                reason = str(exc) if isinstance(exc, StageFailed) else f"{type(exc).__name__}: {exc}"
                report.fail(stage, reason)
                with open(run_dir / "errors.log", "a") as log:
                    log.write(f"== {stage}\n{traceback.format_exc()}\n")
                bar.write(f"bench: {stage} failed: {reason}", file=err)
            finally:
                report.detail(stage, stage_seconds=round(time.monotonic() - stage_started, 1))
                bar.update(1)
    except KeyboardInterrupt:
        report.interrupted = True
        bar.write("bench: interrupted; stopping every process it started", file=err)
    finally:
        children.stop_all()
        bar.close()
        signal.signal(signal.SIGTERM, previous)
        report.duration_s = round(time.monotonic() - started, 1)
    out.write(f"\nmicromoment bench ({report.mode}, {report.duration_s:.0f} s; logs in {run_dir})\n")
    out.write(report.table() + "\n")
    if json_path:
        report.write_json(json_path)
        out.write(f"wrote {json_path}\n")
    out.flush()
    return 130 if report.interrupted else report.exit_code
