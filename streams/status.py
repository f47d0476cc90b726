"""``micromoment status``: is the pipeline healthy right now, and if not, why.

Two halves, kept apart so the judgement is testable without HTTP:

- **fetching** (:func:`collect`): find every worker — the ``--worker`` URLs, plus every worker
  that Faust's ``GET /router/user_state/`` on the first one that answers names (it lists all
  members of the consumer group) — and read each one's ``/dashboard/data`` and ``/ready``
  with short timeouts (stdlib ``urllib``, nothing to install);
- **judging and printing** (:func:`evaluate`, :func:`render_text`): pure functions of the
  fetched JSON.

A pipeline is *healthy* when at least one worker answers, every worker answers and is
ready, the total consumer lag is at most ``max_lag`` messages and every worker's freshness
p99 is at most ``max_freshness_ms``; the broker, when one is configured, must accept
connections. Anything else is a *problem*, named in one line each.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["DEFAULT_MAX_LAG", "DEFAULT_MAX_FRESHNESS_MS", "worker_url", "default_worker_url",
           "discover", "probe_worker", "collect", "worker_report", "evaluate", "render_text",
           "run_status"]

DEFAULT_MAX_LAG = 10_000
DEFAULT_MAX_FRESHNESS_MS = 5_000.0
TIMEOUT_S = 2.0
#: Bind-all addresses a worker may advertise as its canonical URL (``MICROMOMENT_WEB_HOST=0.0.0.0``
#: in a container); they name no host to connect to, so the host that answered is used instead.
_UNSPECIFIED_HOSTS = {"0.0.0.0", "::", "[::]", ""}


# --------------------------------------------------------------------------- URLs

def worker_url(text: str) -> str:
    """Normalize a ``--worker`` argument; argparse ``type`` (a bad one is a usage error).

    >>> worker_url("localhost:6066"), worker_url("http://10.0.0.5:6067/")
    ('http://localhost:6066', 'http://10.0.0.5:6067')
    >>> worker_url("ftp://x:1")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: worker URL must look like http://host:port, got 'ftp://x:1'
    """
    raw = text.strip()
    candidate = raw if "://" in raw else f"http://{raw}"
    parsed = urllib.parse.urlsplit(candidate)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme not in ("http", "https") or not parsed.hostname or (":" in parsed.netloc and port is None):
        raise argparse.ArgumentTypeError(f"worker URL must look like http://host:port, got {text!r}")
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"


def default_worker_url(web_port: int) -> str:
    """Where a worker started on this machine with default settings answers."""
    return f"http://127.0.0.1:{web_port}"


def _rehost(url: str, via: str) -> str:
    """A discovered worker URL, with a bind-all host replaced by the host of ``via``.

    >>> _rehost("http://0.0.0.0:6067", "http://10.1.2.3:6066")
    'http://10.1.2.3:6067'
    >>> _rehost("http://worker-2:6066/", "http://127.0.0.1:6066")
    'http://worker-2:6066'
    """
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    if host in _UNSPECIFIED_HOSTS:
        via_host = urllib.parse.urlsplit(via).hostname or "127.0.0.1"
        if ":" in via_host:
            via_host = f"[{via_host}]"
        netloc = f"{via_host}:{parsed.port}" if parsed.port else via_host
        parsed = parsed._replace(netloc=netloc)
    return urllib.parse.urlunsplit(parsed._replace(path=parsed.path.rstrip("/")))


# --------------------------------------------------------------------------- fetching

def _get_json(url: str, timeout: float) -> tuple[int, Any]:
    """(HTTP status, parsed JSON body or None); raises OSError when nothing answers."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, None


def discover(seeds: Sequence[str], timeout: float = TIMEOUT_S) -> tuple[list[str], str | None]:
    """Every worker URL known: the seeds, then those the first answering seed's router names.

    Returns the URLs in that order without duplicates, and the seed that answered (None if none).
    """
    urls = list(dict.fromkeys(seeds))
    for seed in seeds:
        try:
            status, routes = _get_json(f"{seed}/router/user_state/", timeout)
        except (OSError, ValueError):
            continue
        if status != 200 or not isinstance(routes, dict):
            continue
        for url in routes:
            if isinstance(url, str) and url:
                found = _rehost(url, seed)
                if found not in urls:
                    urls.append(found)
        return urls, seed
    return urls, None


def probe_worker(url: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """What one worker says: ``/ready`` and ``/dashboard/data``, or why it did not answer."""
    probe: dict[str, Any] = {"url": url, "error": None, "ready_status": None, "ready_body": None,
                             "snapshot": None, "snapshot_status": None}
    try:
        probe["ready_status"], probe["ready_body"] = _get_json(f"{url}/ready", timeout)
    except (OSError, ValueError) as exc:
        probe["error"] = _describe_error(exc)
        return probe
    try:
        probe["snapshot_status"], snapshot = _get_json(f"{url}/dashboard/data", timeout)
        if probe["snapshot_status"] == 200 and isinstance(snapshot, dict):
            probe["snapshot"] = snapshot
    except (OSError, ValueError) as exc:
        probe["snapshot_status"] = _describe_error(exc)
    return probe


def _describe_error(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason) or type(exc).__name__


def collect(seeds: Sequence[str], timeout: float = TIMEOUT_S) -> list[dict[str, Any]]:
    """Discover the workers and probe them all (in parallel), dropping duplicate answers.

    Two URLs can reach one worker (``localhost`` and ``127.0.0.1``); a worker is known by the
    ``worker`` field of its snapshot, and only its first URL is kept.
    """
    urls, _ = discover(seeds, timeout)
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(urls)))) as pool:
        probes = list(pool.map(lambda url: probe_worker(url, timeout), urls))
    seen: set[str] = set()
    unique = []
    for probe in probes:
        identity = (probe.get("snapshot") or {}).get("worker")
        if isinstance(identity, str) and identity:
            if identity in seen:
                continue
            seen.add(identity)
        unique.append(probe)
    return unique


# --------------------------------------------------------------------------- judging

def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None else 0


def worker_report(probe: Mapping[str, Any]) -> dict[str, Any]:
    """One worker's part of the report, from its probe (see :func:`probe_worker`).

    >>> r = worker_report({"url": "http://w:1", "ready_status": 503,
    ...                    "ready_body": {"status": "not ready", "reasons": ["no partitions assigned yet"]},
    ...                    "snapshot": {"events": {"processed": 5}, "lag": {"total": 3, "partitions":
    ...                                 [{"topic": "events", "partition": 0, "lag": 3}]}}})
    >>> r["reachable"], r["ready"], r["reasons"], r["events"], r["lag"]["total"]
    (True, False, ['no partitions assigned yet'], {'processed': 5, 'duplicate': 0, 'dead_lettered': 0}, 3)
    """
    url = probe["url"]
    report: dict[str, Any] = {"url": url, "reachable": probe.get("error") is None,
                              "error": probe.get("error"), "ready": False, "reasons": []}
    if not report["reachable"]:
        return report
    ready_body = probe.get("ready_body") if isinstance(probe.get("ready_body"), dict) else {}
    snapshot = probe.get("snapshot") if isinstance(probe.get("snapshot"), dict) else None
    report["ready"] = probe.get("ready_status") == 200
    reasons = ready_body.get("reasons") or (snapshot or {}).get("reasons") or []
    report["reasons"] = [str(reason) for reason in reasons] if not report["ready"] else []
    if not report["ready"] and not report["reasons"]:
        report["reasons"] = [f"/ready answered HTTP {probe.get('ready_status')}"]
    report["has_snapshot"] = snapshot is not None
    if snapshot is None:
        report["snapshot_error"] = f"/dashboard/data answered {probe.get('snapshot_status')}"
        return report
    events = snapshot.get("events") or {}
    freshness = snapshot.get("freshness_ms") or {}
    lag = snapshot.get("lag") or {}
    partitions = []
    for entry in lag.get("partitions") or []:
        if isinstance(entry, dict) and "topic" in entry:
            partitions.append({"topic": str(entry["topic"]), "partition": _int(entry.get("partition")),
                               "lag": _int(entry.get("lag")), "owner": url})
    quality = snapshot.get("quality") or {}
    report.update({
        "worker": snapshot.get("worker"),
        "model_version": snapshot.get("model_version"),
        "events": {kind: _int(events.get(kind)) for kind in ("processed", "duplicate", "dead_lettered")},
        "recommendations": _int(snapshot.get("recommendations")),
        "throughput_eps": _number(snapshot.get("throughput_eps")) or 0.0,
        "deadletter_rate": _number(snapshot.get("deadletter_rate")),
        "freshness_ms": {"p50": _number(freshness.get("p50")), "p99": _number(freshness.get("p99"))},
        "lag": {"total": _int(lag.get("total")) if "total" in lag else sum(p["lag"] for p in partitions),
                "partitions": partitions},
        "quality": {key: quality.get(key) for key in ("hit_rate", "ctr", "coverage", "gini")},
    })
    return report


def evaluate(probes: Iterable[Mapping[str, Any]], *, max_lag: int = DEFAULT_MAX_LAG,
             max_freshness_ms: float = DEFAULT_MAX_FRESHNESS_MS,
             broker: Mapping[str, Any] | None = None,
             seeds: Sequence[str] = ()) -> dict[str, Any]:
    """The whole report: ``workers``, ``summary``, ``healthy`` and the ``problems`` behind it.

    ``broker`` is ``{"url", "checked", "reachable"}`` (see :func:`run_status`); an unreachable
    broker that was checked is a problem.
    """
    workers = [worker_report(probe) for probe in probes]
    answering = [w for w in workers if w["reachable"]]
    problems: list[str] = []
    if broker and broker.get("checked") and not broker.get("reachable"):
        problems.append(f"broker {broker['url']} does not accept connections")
    if not answering:
        where = ", ".join(seeds) or ", ".join(w["url"] for w in workers) or "the given URLs"
        problems.append(f"no micromoment worker answers at {where}: start one with "
                        "`micromoment worker` (or `micromoment demo`), or point --worker at yours")
    for w in workers:
        if not w["reachable"]:
            if answering:
                problems.append(f"worker {w['url']} unreachable: {w['error']}")
        elif not w["ready"]:
            problems.append(f"worker {w['url']} not ready: {'; '.join(w['reasons'])}")
        elif not w.get("has_snapshot"):
            problems.append(f"worker {w['url']} serves no dashboard data ({w['snapshot_error']})")

    # A partition reported by two workers (mid-rebalance) is counted once, at its larger lag.
    partitions: dict[tuple[str, int], dict[str, Any]] = {}
    for w in answering:
        for entry in (w.get("lag") or {}).get("partitions", []):
            key = (entry["topic"], entry["partition"])
            if key not in partitions or entry["lag"] > partitions[key]["lag"]:
                partitions[key] = dict(entry)
    with_snapshot = [w for w in answering if w.get("has_snapshot")]
    reported_totals = sum(w["lag"]["total"] for w in with_snapshot)
    lag_total = sum(p["lag"] for p in partitions.values()) if partitions else reported_totals
    if lag_total > max_lag:
        problems.append(f"total consumer lag {lag_total} messages is above --max-lag {max_lag}")
    for w in with_snapshot:
        p99 = w["freshness_ms"]["p99"]
        if p99 is not None and p99 > max_freshness_ms:
            problems.append(f"worker {w['url']} freshness p99 {p99:.0f} ms is above "
                            f"--max-freshness-ms {max_freshness_ms:g}")

    events = {kind: sum(w["events"][kind] for w in with_snapshot)
              for kind in ("processed", "duplicate", "dead_lettered")}
    seen_events = sum(events.values())
    p99s = [w["freshness_ms"]["p99"] for w in with_snapshot if w["freshness_ms"]["p99"] is not None]
    p50s = [w["freshness_ms"]["p50"] for w in with_snapshot if w["freshness_ms"]["p50"] is not None]
    summary = {
        "workers": len(workers),
        "workers_ready": sum(1 for w in workers if w["ready"]),
        "workers_unreachable": sum(1 for w in workers if not w["reachable"]),
        "events": events,
        "recommendations": sum(w["recommendations"] for w in with_snapshot),
        "throughput_eps": round(sum(w["throughput_eps"] for w in with_snapshot), 3),
        # Cumulative share of the events seen that went to dead-letters (each worker's
        # ``deadletter_rate`` is its own, recent, figure).
        "deadletter_share": events["dead_lettered"] / seen_events if seen_events else 0.0,
        "freshness_ms": {"p50_max": max(p50s) if p50s else None, "p99_max": max(p99s) if p99s else None},
        "lag_total": lag_total,
        "partitions": sorted(partitions.values(), key=lambda p: (p["topic"], p["partition"])),
    }
    return {"healthy": not problems, "problems": problems, "broker": dict(broker or {}),
            "thresholds": {"max_lag": max_lag, "max_freshness_ms": max_freshness_ms},
            "workers": workers, "summary": summary}


# --------------------------------------------------------------------------- printing

def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


def _fraction(value: Any) -> str:
    if isinstance(value, dict):  # per strategy
        return ", ".join(f"{k} {_fraction(v)}" for k, v in value.items()) or "—"
    number = _number(value)
    return "—" if number is None else f"{number:.3f}"


def render_text(report: Mapping[str, Any]) -> str:
    """The report for people. With no worker answering, one line that says what to do."""
    summary = report["summary"]
    if not any(w["reachable"] for w in report["workers"]):
        return "\n".join(report["problems"])
    lines = []
    verdict = "HEALTHY" if report["healthy"] else f"UNHEALTHY ({len(report['problems'])} problem" \
        f"{'s' if len(report['problems']) != 1 else ''})"
    lines.append(f"micromoment status: {verdict}")
    lines.extend(f"  ! {problem}" for problem in report["problems"])
    broker = report.get("broker") or {}
    if broker.get("checked"):
        lines.append(f"broker {broker['url']}: {'answers' if broker.get('reachable') else 'NOT REACHABLE'}")
    elif broker.get("url"):
        lines.append(f"broker {broker['url']}: not checked (pass --broker to check it)")
    events = summary["events"]
    lines.append(f"workers {summary['workers_ready']}/{summary['workers']} ready; "
                 f"{events['processed']} events processed, {events['duplicate']} duplicate, "
                 f"{events['dead_lettered']} dead-lettered; {summary['recommendations']} recommendations; "
                 f"{summary['throughput_eps']:.1f} events/s")
    for w in report["workers"]:
        lines.append("")
        if not w["reachable"]:
            lines.append(f"worker {w['url']}  UNREACHABLE ({w['error']})")
            continue
        state = "ready" if w["ready"] else "NOT READY: " + "; ".join(w["reasons"])
        lines.append(f"worker {w['url']}  {state}")
        if not w.get("has_snapshot"):
            lines.append(f"  no dashboard data ({w['snapshot_error']})")
            continue
        lines.append(f"  model        {w.get('model_version') or '— (no recommendation yet)'}")
        e = w["events"]
        rate = w["deadletter_rate"]
        lines.append(f"  events       {e['processed']} processed, {e['duplicate']} duplicate, "
                     f"{e['dead_lettered']} dead-lettered"
                     + (f" (dead-letter rate {rate:.1%})" if rate is not None else ""))
        lines.append(f"  throughput   {w['throughput_eps']:.1f} events/s; {w['recommendations']} recommendations")
        lines.append(f"  freshness    p50 {_ms(w['freshness_ms']['p50'])}, p99 {_ms(w['freshness_ms']['p99'])}")
        q = w["quality"]
        lines.append(f"  quality      hit rate {_fraction(q.get('hit_rate'))}, CTR {_fraction(q.get('ctr'))}, "
                     f"coverage {_fraction(q.get('coverage'))}, Gini {_fraction(q.get('gini'))}")
    lines.append("")
    lines.append(f"consumer lag: {summary['lag_total']} messages in total "
                 f"(--max-lag {report['thresholds']['max_lag']})")
    if summary["partitions"]:
        width = max(len("topic"), *(len(p["topic"]) for p in summary["partitions"]))
        lines.append(f"  {'topic':<{width}}  partition  {'lag':>8}  owner")
        for p in summary["partitions"]:
            lines.append(f"  {p['topic']:<{width}}  {p['partition']:>9}  {p['lag']:>8}  {p['owner']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the command

def run_status(*, seeds: Sequence[str], broker_url: str | None, broker_settings: Any = None,
               as_json: bool = False, max_lag: int = DEFAULT_MAX_LAG,
               max_freshness_ms: float = DEFAULT_MAX_FRESHNESS_MS, timeout: float = TIMEOUT_S,
               out: Any = None) -> int:
    """Collect, judge, print; 0 when healthy, 1 when not.

    ``broker_settings`` (a :class:`~streams.settings.Settings`) is given when a broker was
    configured (``--broker`` or ``MICROMOMENT_BROKER``); it is then checked with a short timeout.
    """
    import sys

    out = out or sys.stdout
    broker: dict[str, Any] = {"url": broker_url, "checked": broker_settings is not None, "reachable": None}
    if broker_settings is not None:
        from streams.admin import BrokerUnavailable, wait_for_broker

        try:
            wait_for_broker(broker_settings, timeout=1.0)
            broker["reachable"] = True
        except BrokerUnavailable:
            broker["reachable"] = False
    probes = collect(seeds, timeout)
    report = evaluate(probes, max_lag=max_lag, max_freshness_ms=max_freshness_ms, broker=broker,
                      seeds=seeds)
    if as_json:
        print(json.dumps(report, indent=None, sort_keys=False, default=str), file=out)
    else:
        print(render_text(report), file=out)
    return 0 if report["healthy"] else 1
