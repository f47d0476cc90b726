"""The readable summary printed on stdout, built from the same dict ``--json`` writes.

Formatting only reads the result dict, so the table and the JSON file can never
disagree.
"""

from __future__ import annotations

from typing import Any

__all__ = ["percent", "format_prequential", "format_open_bandit", "FEW_CLICKS"]

#: Below this many matched clicks, every interval is wide and the normal ones
#: (IPS, SNIPS, DR) are unreliable; the summary says so.
FEW_CLICKS = 10

_LABELS = {"hybrid": "hybrid (pipeline)", "popularity": "popularity", "random": "random"}
_POLICY_LABELS = {"hybrid": "pipeline (hybrid)", "popularity": "pipeline, popularity path",
                  "random": "uniform random"}


def percent(value: float | None, digits: int = 2) -> str:
    """A rate as a percentage, ``n/a`` for ``None``.

    >>> percent(0.0038), percent(None)
    ('0.38%', 'n/a')
    """
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _interval(ci: list[float | None]) -> str:
    low, high = ci
    return "[n/a]" if low is None or high is None else f"[{percent(low)}, {percent(high)}]"


def format_prequential(result: dict[str, Any]) -> str:
    """The summary of a generic or events replay.

    >>> result = {"dataset": "log.csv", "events": 3, "seconds": 0.5, "events_per_second": 6.0,
    ...           "applied": 3, "dead_lettered": 0, "duplicates": 0, "targets": 2,
    ...           "skipped": {"repeat": 1}, "cold_targets": 1, "catalog_size": 2, "users": 2,
    ...           "k": 2, "metrics": {"hr@2": 0.5, "ndcg@2": 0.5, "mrr": 0.5, "coverage": 1.0,
    ...           "gini": 0.0, "novelty": 0.4, "targets": 2},
    ...           "baselines": {}, "groups": {}}
    >>> print(format_prequential(result))  # doctest: +NORMALIZE_WHITESPACE
    replay of log.csv: 3 events in 0.5 s (6 events/s); 3 applied, 0 dead-lettered, 0 duplicates
    test targets: 2 (skipped: 1 repeat); 1 on items not yet in the catalog; catalog 2 items, 2 users
    <BLANKLINE>
    strategy              hr@2   ndcg@2      mrr  coverage    gini  novelty
    hybrid (pipeline)   0.5000   0.5000   0.5000     1.000   0.000     0.40
    """
    k = result["k"]
    hr, ndcg = f"hr@{k}", f"ndcg@{k}"
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(result["skipped"].items())) or "none"
    lines = [
        f"replay of {result['dataset']}: {result['events']:,} events in {result['seconds']:.1f} s "
        f"({result['events_per_second'] or 0:,.0f} events/s); {result['applied']:,} applied, "
        f"{result['dead_lettered']:,} dead-lettered, {result['duplicates']:,} duplicates",
        f"test targets: {result['targets']:,} (skipped: {skipped}); {result['cold_targets']:,} on "
        f"items not yet in the catalog; catalog {result['catalog_size']:,} items, "
        f"{result['users']:,} users",
        "",
        f"{'strategy':<19} {hr:>6} {ndcg:>8} {'mrr':>8} {'coverage':>9} {'gini':>7} {'novelty':>8}",
    ]
    rows = {"hybrid": result["metrics"], **result["baselines"]}
    for name, m in rows.items():
        lines.append(f"{_LABELS.get(name, name):<19} {m[hr]:>6.4f} {m[ndcg]:>8.4f} {m['mrr']:>8.4f} "
                     f"{m['coverage']:>9.3f} {m['gini']:>7.3f} {m['novelty']:>8.2f}")
    if "rated" in result["metrics"]:
        m = result["metrics"]
        if "mae" in m:
            lines.append(f"rating error, predicted before learning each rating: MAE {m['mae']:.3f}, "
                         f"RMSE {m['rmse']:.3f} over {m['rated']:,} ratings")
        else:
            lines.append("rating error: the recommender predicted none of the ratings")
    groups = result["groups"]
    if groups:
        lines += ["", f"{hr + ' by group':<30} {'targets':>8} {'hybrid':>8} {'popularity':>11} "
                      f"{'random':>8}"]
        for name, values in groups.items():
            for value, g in values.items():
                rates = g[hr]
                lines.append(f"{(name + '=' + value)[:30]:<30} {g['targets']:>8,} "
                             f"{rates['hybrid']:>8.4f} {rates['popularity']:>11.4f} "
                             f"{rates['random']:>8.4f}")
    return "\n".join(lines)


def format_open_bandit(result: dict[str, Any]) -> str:
    """The summary of an Open Bandit replay: each policy's CTR with its interval."""
    random_ctr = result["random_ctr"]
    lines = [
        f"replay of {result['dataset']}: {result['events']:,} impressions of the uniformly random "
        f"policy ({result['clicks']} clicks), {result['items']} items, {result['segments']} user "
        f"segments, in {result['seconds']:.1f} s",
        "",
        f"{'policy (replay estimate)':<26} {'CTR':>7}  {'95% CI':<18} {'matched':>8} {'clicks':>7} "
        f"{'× random':>9}",
    ]
    rows = {"hybrid": result["metrics"], **result["baselines"]}
    for name, m in rows.items():
        relative = m["relative_to_random"]
        lines.append(f"{_POLICY_LABELS.get(name, name):<26} {percent(m['policy_ctr']):>7}  "
                     f"{_interval(m['policy_ctr_ci']):<18} {m['matched']:>8,} "
                     f"{m['matched_clicks']:>7} {'n/a' if relative is None else f'{relative:.2f}':>9}")
    bts_relative = result["bts_ctr"] / random_ctr if random_ctr else None
    lines.append(f"{'logged random policy':<26} {percent(random_ctr):>7}  "
                 f"{_interval(result['random_ctr_ci']):<18} {result['events']:>8,} "
                 f"{result['clicks']:>7} {'1.00':>9}")
    lines.append(f"{'logged Bernoulli TS policy':<26} {percent(result['bts_ctr']):>7}  "
                 f"{_interval(result['bts_ctr_ci']):<18} {result['bts_events']:>8,} "
                 f"{round(result['bts_ctr'] * result['bts_events']):>7} "
                 f"{'n/a' if bts_relative is None else f'{bts_relative:.2f}':>9}")
    lines += ["", "hybrid by estimator:"]
    for name, est in result["estimates"].items():
        lines.append(f"  {name:<7} {percent(est['estimate']):>7}  {_interval(est['ci'])}")
    if result["matched_clicks"] < FEW_CLICKS:
        lines += ["", f"note: {result['matched_clicks']} matched clicks — every interval is wide, and "
                      "the normal ones (IPS, SNIPS, DR) are unreliable at this count; read the "
                      "replay (Wilson) interval."]
    return "\n".join(lines)
