"""The ``micromoment bench`` subcommand: its arguments, and running it from them.

Kept free of heavy imports: ``streams.cli`` builds every subcommand's parser on each run.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_bench_parser", "cmd_bench"]


def _stages(text: str) -> tuple[str, ...]:
    from streams.bench.runner import STAGES

    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in STAGES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {unknown or text!r}; "
                                         f"choose from {', '.join(STAGES)}")
    return tuple(stage for stage in STAGES if stage in names)  # always in run order


def add_bench_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to the ``micromoment`` subparsers ``sub``."""
    p = sub.add_parser(
        "bench", help="measure throughput, latency, ranking, memory and scale-out (embedded broker)",
        description="Measure the pipeline against bare Faust agents on the same embedded broker "
                    "(throughput ratios), event-to-recommendation latency at 1,000 events/s, "
                    "ranking time per catalog size, memory per user and the two-worker "
                    "scale-out, and print each figure beside its target. Starts and stops its "
                    "own brokers and workers. Exit code 0 when every stage ran (a missed target "
                    "is a finding, not an error), 1 when a stage failed.")
    p.add_argument("--quick", action="store_true",
                   help="smaller samples: the whole run in 5-10 minutes on 2 cores "
                        "(default: the full run, 10-25 minutes)")
    p.add_argument("--json", metavar="PATH", help="also write every figure, target and detail as JSON")
    p.add_argument("--stages", type=_stages, metavar="LIST",
                   help="comma-separated stages to run (default: all): faust_count, faust_table, "
                        "faust_table_send, pipeline_learn, pipeline_recommend, scaleout, latency, "
                        "rank, memory")
    p.add_argument("--workdir", metavar="DIR", default=".micromoment/bench",
                   help="where each run keeps its broker and worker logs (default .micromoment/bench)")
    return p


def cmd_bench(args: argparse.Namespace) -> int:
    from streams.bench.runner import STAGES, run_bench

    return run_bench(quick=args.quick, json_path=args.json, stages=args.stages or STAGES,
                     workdir=args.workdir)
