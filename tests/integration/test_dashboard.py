"""The worker's live dashboard, in a real headless Chromium against a real worker and broker.

The browser is Debian's ``chromium`` (``make browser`` installs it when it can), driven by the
``playwright`` package only as a client: never ``playwright install``. Without either, the
browser test skips and says why; the JSON endpoint is tested regardless.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import orjson
import pytest

from streams.admin import ensure_topics
from streams.clients import make_producer
from streams.produce import publish_catalog, publish_events
from streams.synthetic import SyntheticShop
from tests.conftest import Env, Worker, start_worker, wait_until

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium phones home, which a closed network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PLACEHOLDER = "—"

# A snapshot as streams.monitor.Monitor.snapshot() returns it: the contract the page renders.
SAMPLE_SNAPSHOT: dict[str, Any] = {
    "worker": "http://127.0.0.1:6066", "time": 1795449654.1, "ready": True, "reasons": [],
    "model_version": "content+mf+pop:123",
    "events": {"processed": 10, "duplicate": 0, "dead_lettered": 1},
    "recommendations": 8,
    "throughput_eps": 12.5,
    "deadletter_rate": 0.09,
    "freshness_ms": {"p50": 13.0, "p99": 40.0},
    "lag": {"total": 0, "partitions": [{"topic": "events", "partition": 0, "lag": 0}]},
    "quality": {"hit_rate": 0.2, "ctr": 0.05, "coverage": 0.4, "gini": 0.6},
    "most_exposed_items": [["item-1", 40]], "most_exposed_categories": [["shoes", 120]],
    "history": [{"t": 1795449650.0, "throughput_eps": 12.0, "freshness_p50_ms": 13.0, "lag": 0}],
}

# Every metric element's text and raw value (data-value), keyed by its data-metric name.
READ_METRICS = """() => Object.fromEntries([...document.querySelectorAll('[data-metric]')].map(
    e => [e.dataset.metric, {text: e.textContent.trim(), value: e.dataset.value}]))"""


def now_ms() -> int:
    return int(time.time() * 1000)


def http_get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, dict(resp.headers), resp.read()


@pytest.fixture(scope="module")
def live(broker, tmp_path_factory) -> Iterator[tuple[Env, Worker, SyntheticShop, Any]]:
    env = Env(broker, tmp_path_factory.mktemp("dashboard"))
    settings = env.settings
    ensure_topics(settings)
    shop = SyntheticShop(n_users=40, n_items=80, seed=11)
    producer = make_producer(settings)
    publish_catalog(producer, settings, shop.catalog(), "json")
    worker = start_worker(env)
    try:
        yield env, worker, shop, producer
    finally:
        worker.stop()
        producer.close()


def send_events(live, count: int) -> None:
    env, _, shop, producer = live
    publish_events(producer, env.settings, (shop.event(now_ms()) for _ in range(count)), "json")


def launch(p: Any) -> Any:
    return p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def browser_api() -> Any:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: `make browser` installs Debian's chromium (as root)")
    return pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -e '.[test]')")


def test_page_renders_a_sample_snapshot_and_nulls_as_dashes():
    """The page alone, fed hand-written snapshots: formatting, nulls, readiness reasons."""
    sync_api = browser_api()
    from importlib import resources

    html = resources.files("streams").joinpath("static/dashboard.html").read_text(encoding="utf-8")
    nulls = dict(SAMPLE_SNAPSHOT, ready=False, reasons=["no partitions assigned yet"], model_version="",
                 throughput_eps=None, deadletter_rate=None, freshness_ms={"p50": None, "p99": None},
                 quality=dict.fromkeys(SAMPLE_SNAPSHOT["quality"]), most_exposed_items=[],
                 most_exposed_categories=[], history=[], lag={"total": 0, "partitions": []})
    served = [SAMPLE_SNAPSHOT]
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.route("http://dashboard.test/dashboard", lambda r: r.fulfill(
                body=html, content_type="text/html"))
            page.route("http://dashboard.test/dashboard/data", lambda r: r.fulfill(
                body=orjson.dumps(served[0]), content_type="application/json"))
            page.goto("http://dashboard.test/dashboard")
            m = wait_until(lambda: (lambda m: m if m["status"]["value"] else None)(
                page.evaluate(READ_METRICS)), timeout=10, message="the sample to render")
            texts = {k: v["text"] for k, v in m.items()}
            assert texts["throughput"] == "12.5" or texts["throughput"] == "12.50"
            assert (texts["freshness-p50"], texts["freshness-p99"]) == ("13", "40")
            assert texts["events-processed"] == "10" and texts["recommendations"] == "8"
            assert texts["deadletter-rate"] == "9.00"
            assert (texts["hit-rate"], texts["ctr"], texts["coverage"], texts["gini"]) == (
                "20.0 %", "5.00 %", "40.0 %", "0.60")
            assert texts["model-version"] == "content+mf+pop:123"
            assert m["status"]["value"] == "ready"
            assert texts["status"] == "Degraded"  # 9 % dead letters is above the 5 % limit
            assert page.locator("#top-items td.name").first.text_content() == "item-1"

            served[0] = nulls
            m = wait_until(lambda: (lambda m: m if m["status"]["value"] == "not-ready" else None)(
                page.evaluate(READ_METRICS)), timeout=10, message="the null snapshot to render")
            for key in ("throughput", "freshness-p50", "freshness-p99", "deadletter-rate", "hit-rate",
                        "ctr", "coverage", "gini", "model-version"):
                assert m[key]["text"] == PLACEHOLDER, key
            assert texts["status"] != m["status"]["text"] == "Not ready"
            assert "no partitions assigned yet" in page.locator("#banner").text_content()
        finally:
            browser.close()
    assert not errors, errors


def test_data_endpoint_has_the_snapshot_shape(live):
    _, worker, _, _ = live
    status, headers, body = http_get(worker.url + "/dashboard/data")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    data = orjson.loads(body)
    assert set(data) >= set(SAMPLE_SNAPSHOT)
    assert set(data["events"]) >= {"processed", "duplicate", "dead_lettered"}
    assert set(data["freshness_ms"]) >= {"p50", "p99"}
    assert set(data["lag"]) >= {"total", "partitions"}
    assert set(data["quality"]) >= {"hit_rate", "ctr", "coverage", "gini"}
    assert isinstance(data["history"], list) and isinstance(data["reasons"], list)
    assert data["worker"].endswith(f":{worker.web_port}")
    for entry in data["lag"]["partitions"]:
        assert set(entry) >= {"topic", "partition", "lag"}

    status, headers, body = http_get(worker.url + "/dashboard")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "connect-src 'self'" in headers["Content-Security-Policy"]
    page = body.decode()
    assert "/dashboard/data" in page or "/data" in page
    # Offline by construction: nothing the page itself would fetch from elsewhere.
    for marker in ("<script src", "<link rel=\"stylesheet\"", "@import", "https://", "http://cdn"):
        assert marker not in page, marker


def test_dashboard_shows_live_numbers_in_a_browser(live):
    sync_api = browser_api()
    _, worker, _, _ = live
    origin = urlsplit(worker.url).netloc
    errors: list[str] = []
    foreign: list[str] = []
    requested: list[str] = []

    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} {r.failure}"))

            def gate(route: Any) -> None:  # record everything, let only the worker through
                url = route.request.url
                requested.append(url)
                if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).netloc == origin:
                    route.continue_()
                else:
                    foreign.append(url)
                    route.abort()

            page.route("**/*", gate)
            page.goto(worker.url + "/dashboard", wait_until="load")

            def metrics() -> dict[str, dict[str, str]]:
                return page.evaluate(READ_METRICS)

            # First poll rendered: the worker is ready, and with no events nulls show as "—".
            first = wait_until(lambda: (lambda m: m if m["status"]["value"] else None)(metrics()),
                               timeout=15, message="the first poll to render")
            assert first["status"]["value"] == "ready" and first["status"]["text"] == "Healthy"
            assert first["worker"]["text"] == worker.url
            if first["recommendations"]["value"] == "0":
                assert first["freshness-p50"]["text"] == PLACEHOLDER
                assert first["hit-rate"]["text"] == PLACEHOLDER

            send_events(live, 300)

            def flowing() -> dict[str, dict[str, str]] | None:
                m = metrics()
                keys = ("throughput", "events-processed", "recommendations", "freshness-p50",
                        "freshness-p99", "lag-total", "coverage", "model-version")
                if any(m[k]["text"] == PLACEHOLDER or not m[k]["value"] for k in keys):
                    return None
                return m if float(m["events-processed"]["value"]) >= 300 else None

            before = wait_until(flowing, timeout=30, message="numbers on the dashboard")
            assert float(before["throughput"]["value"]) >= 0
            assert float(before["recommendations"]["value"]) > 0
            assert 0 <= float(before["freshness-p50"]["value"]) <= float(before["freshness-p99"]["value"])
            assert before["events-processed"]["text"].replace(",", "").isdigit()
            assert before["model-version"]["text"].startswith("content+mf+pop")
            assert page.locator("#lag-partitions [data-partition]").count() >= 1
            assert page.locator("#top-items tr").count() > 0
            assert page.locator("#top-categories tr").count() > 0
            assert int(page.get_attribute("#spark-throughput", "data-points")) >= 1

            # More events: the page (polling, not reloading) shows the counts go up.
            send_events(live, 200)

            def increased() -> dict[str, dict[str, str]] | None:
                m = metrics()
                grew = all(float(m[k]["value"]) > float(before[k]["value"])
                           for k in ("events-processed", "recommendations"))
                return m if grew else None

            after = wait_until(increased, timeout=20, message="the dashboard's counts to increase")
            assert after["events-processed"]["text"] != before["events-processed"]["text"]
            assert after["recommendations"]["text"] != before["recommendations"]["text"]
            # Throughput samples every 2 s: once the new events land, a later point is non-zero.
            wait_until(lambda: float(metrics()["throughput"]["value"] or 0) > 0 or
                       any((h["throughput_eps"] or 0) > 0 for h in worker.get("/dashboard/data")[1]["history"]),
                       timeout=10, message="a non-zero throughput")
            page.screenshot(path="/tmp/dashboard.png", full_page=True)
        finally:
            browser.close()

    assert not foreign, f"the dashboard requested other hosts: {foreign}"
    assert not errors, "\n".join(errors)
    assert any(urlsplit(u).path == "/dashboard/data" for u in requested)
