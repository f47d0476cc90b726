"""infra/: the Prometheus config, alert rules and Grafana dashboard are valid and speak the
worker's metric names.

``promtool`` (Debian: ``apt-get install prometheus``) checks the config and the rules, and runs
the rule unit tests in ``infra/prometheus/alerts_test.yml``, which make each alert provably
fire; those tests skip, saying so, where promtool is absent. The metric-name checks need
nothing: every metric (and label) a dashboard panel or an alert uses must be one the worker
exposes, so renaming a metric in ``streams/monitor.py`` without updating infra/ fails here.
Structural checks read YAML with PyYAML and skip, saying so, without it; the metric-name
checks read the alert expressions without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"
GRAFANA = ROOT / "infra" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "micromoment.json"

#: The worker's /metrics contract: name → (type, labels).
CONTRACT = {
    "micromoment_events_total": ("counter", {"outcome", "event_type"}),
    "micromoment_deadletters_total": ("counter", {"topic", "reason"}),
    "micromoment_processing_seconds": ("histogram", {"agent"}),
    "micromoment_freshness_seconds": ("histogram", set()),
    "micromoment_recommendations_total": ("counter", {"personalized"}),
    "micromoment_consumer_lag": ("gauge", {"topic", "partition"}),
    "micromoment_rebalances_total": ("counter", set()),
    "micromoment_table_keys": ("gauge", {"table"}),
    "micromoment_model_updates_total": ("counter", {"learner"}),
    "micromoment_online_hit_rate": ("gauge", {"strategy"}),
    "micromoment_recommendation_ctr": ("gauge", set()),
    "micromoment_catalog_coverage": ("gauge", set()),
    "micromoment_exposure_gini": ("gauge", set()),
    "micromoment_model_info": ("gauge", {"version"}),
    "micromoment_ready": ("gauge", set()),
}
#: Labels Prometheus adds to every scraped series (plus ``le`` on histogram buckets).
TARGET_LABELS = {"job", "instance", "service", "le"}
PROMQL_WORDS = {"sum", "avg", "min", "max", "count", "rate", "increase", "deriv", "by", "without",
                "and", "or", "unless", "on", "ignoring", "histogram_quantile", "label_values",
                "bool", "offset", "absent", "humanize", "humanizePercentage", "humanizeDuration"}


def load_yaml(path: Path) -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed: YAML structure not checked")
    return yaml.safe_load(path.read_text())


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian/Ubuntu: `apt-get install prometheus`); "
                    "the Prometheus config and alert rules were not checked")
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, cwd=PROMETHEUS,
                          timeout=120)


def test_promtool_check_config():
    result = run_promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_check_rules():
    result = run_promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout + result.stderr


def test_promtool_rule_unit_tests_make_the_alerts_fire():
    result = run_promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def alert_rules() -> list[dict]:
    groups = load_yaml(PROMETHEUS / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"]]


def yaml_exprs(text: str) -> list[str]:
    """The ``expr:`` values of a rules file (plain or folded block scalars), without PyYAML."""
    lines, exprs, i = text.splitlines(), [], 0
    while i < len(lines):
        match = re.match(r"^(\s*)(?:- )?expr:\s*(.*)$", lines[i])
        i += 1
        if not match:
            continue
        indent, rest = len(match.group(1)), match.group(2).strip()
        if rest in (">", ">-", "|", "|-"):
            body = []
            while i < len(lines) and (not lines[i].strip()
                                      or len(lines[i]) - len(lines[i].lstrip()) > indent):
                body.append(lines[i].strip())
                i += 1
            exprs.append(" ".join(part for part in body if part))
        else:
            exprs.append(rest[1:-1] if rest[:1] in "'\"" and rest[-1:] == rest[:1] else rest)
    return exprs


def alert_exprs() -> list[str]:
    text = (PROMETHEUS / "alerts.yml").read_text()
    exprs = yaml_exprs(text)
    assert len(exprs) == len(re.findall(r"^\s*- alert:", text, flags=re.M))
    return exprs


def test_alert_expressions_read_without_yaml_match_yaml():
    assert [" ".join(rule["expr"].split()) for rule in alert_rules()] == alert_exprs()


def test_every_alert_has_severity_summary_and_description_and_a_unit_test():
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert {"MicromomentWorkerDown", "MicromomentNotReady", "MicromomentNoEvents",
            "MicromomentDeadLetterRateHigh", "MicromomentConsumerLagGrowing",
            "MicromomentFreshnessP99High"} <= names
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    tests = load_yaml(PROMETHEUS / "alerts_test.yml")["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    quiet = {case["alertname"] for test in tests for case in test["alert_rule_test"] if not case["exp_alerts"]}
    assert fired == names, "every alert has a test that shows it firing"
    assert {"MicromomentDeadLetterRateHigh", "MicromomentNotReady", "MicromomentNoEvents",
            "MicromomentConsumerLagGrowing", "MicromomentFreshnessP99High"} <= quiet


def test_prometheus_scrapes_the_compose_worker_every_5s_and_loads_the_alerts():
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "micromoment" and job["metrics_path"] == "/metrics"
    assert job["scrape_interval"] == "5s"
    assert job["static_configs"][0]["targets"] == ["worker:6066"]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[str]:
    exprs = [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    return exprs


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression, histogram series mapped to their base name."""
    names = set()
    for name in re.findall(r"\b(micromoment_[a-z0-9_]+|up)\b", re.sub(r'"[^"]*"', '""', expr)):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        names.add(base if CONTRACT.get(base, ("",))[0] == "histogram" else name)
    return names


def label_names(expr: str) -> set[str]:
    """Label names in matchers ``{a="x"}`` and grouping clauses ``by (a, b)``."""
    labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"", expr))
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels.update(part.strip() for part in group.split(",") if part.strip())
    return labels


def test_metric_name_extraction():
    expr = ('histogram_quantile(0.99, sum by (le, agent) (rate(micromoment_processing_seconds_bucket'
            '{instance=~"$instance"}[1m]))) / up{job="micromoment_events_total"}')
    assert metric_names(expr) == {"micromoment_processing_seconds", "up"}
    assert label_names(expr) == {"le", "agent", "instance", "job"}


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_metric_and_label_used_is_in_the_worker_contract(source):
    exprs = dashboard_exprs() if source == "dashboard" else alert_exprs()
    assert exprs
    used = set().union(*(metric_names(expr) for expr in exprs))
    unknown = used - set(CONTRACT) - {"up"}
    assert not unknown, f"{source} uses metrics the worker does not expose: {sorted(unknown)}"
    allowed = set().union(*(labels for _, labels in CONTRACT.values())) | TARGET_LABELS
    bad_labels = set().union(*(label_names(expr) for expr in exprs)) - allowed
    assert not bad_labels, f"{source} uses unknown labels: {sorted(bad_labels)}"


def test_the_worker_really_exposes_every_contract_metric():
    """The contract above is what streams/monitor.py registers (no broker needed)."""
    from streams.monitor import Monitor

    text = Monitor().exposition().decode()
    exposed = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))
    for name, (kind, _) in CONTRACT.items():
        assert exposed.get(name) == kind, f"{name}: the worker exposes {exposed.get(name)!r}, not {kind}"


def test_dashboard_covers_what_ops_need():
    board = dashboard()
    assert board["uid"] == "micromoment" and board["title"]
    panels = [panel for panel in board["panels"] if panel["type"] != "row"]
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
        assert panel["targets"] and all(target["expr"].strip() for target in panel["targets"])
    used = set().union(*(metric_names(expr) for expr in dashboard_exprs()))
    assert set(CONTRACT) <= used, f"metrics on no panel: {sorted(set(CONTRACT) - used)}"
    exprs = " ".join(dashboard_exprs())
    assert "sum by (outcome)" in exprs and "sum by (topic, reason)" in exprs
    assert "sum by (topic, partition)" in exprs
    assert "histogram_quantile(0.5, sum by (le) (rate(micromoment_freshness_seconds_bucket" in exprs
    assert "histogram_quantile(0.99, sum by (le) (rate(micromoment_freshness_seconds_bucket" in exprs
    # Panels do not overlap on the 24-column grid.
    cells = set()
    for panel in board["panels"]:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards():
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "micromoment.yml")
    (provider,) = providers["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_compose_mounts_the_infra_files_where_the_configs_expect_them():
    compose = load_yaml(ROOT / "docker-compose.yml")
    services = compose["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["image"].startswith("prom/prometheus")
    assert "./infra/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]
    assert grafana["image"].startswith("grafana/grafana")
    assert "./infra/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./infra/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    # The scrape target is the worker service on its web port.
    assert services["worker"]["environment"]["MICROMOMENT_WEB_PORT"] == "6066"
    assert services["worker"]["environment"]["MICROMOMENT_WEB_HOST"] == "0.0.0.0"
