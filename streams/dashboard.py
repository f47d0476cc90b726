"""The live dashboard each worker serves: ``GET /dashboard`` and its data, ``GET /dashboard/data``.

The page is one self-contained HTML file (``streams/static/dashboard.html``: inline CSS, plain
JS, hand-drawn SVG charts) that polls ``/dashboard/data`` every 2 s. It loads nothing from
anywhere else, and its Content-Security-Policy makes the browser refuse to, so it works on a
closed network. The data is this worker's :meth:`streams.monitor.Monitor.snapshot`: each
worker shows its own partitions.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from streams.app import app
from streams.monitor import monitor

__all__ = ["dashboard", "dashboard_data", "PAGE"]

PAGE = resources.files("streams").joinpath("static/dashboard.html").read_text(encoding="utf-8")

# Only this worker: inline style/script (the page's own), fetch() to the same origin.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
                               "style-src 'unsafe-inline'; img-src data:; connect-src 'self'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'self'",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}
_DATA_HEADERS = {"Cache-Control": "no-store"}


@app.page("/dashboard")
async def dashboard(self: Any, request: Any) -> Any:
    """The dashboard page (HTML)."""
    return self.html(PAGE, headers=dict(_PAGE_HEADERS))


@app.page("/dashboard/data")
async def dashboard_data(self: Any, request: Any) -> Any:
    """This worker's monitoring snapshot (JSON), which the page polls."""
    return self.json(monitor.snapshot(), headers=dict(_DATA_HEADERS))
