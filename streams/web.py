"""HTTP views served by each worker (Faust web, aiohttp).

``GET /users/{user_id}`` is routed to the worker that owns the user's partition, so any
worker can be asked about any user.
"""

from __future__ import annotations

from typing import Any

from streams.app import app
from streams.monitor import CONTENT_TYPE_LATEST, monitor, readiness_problems
from streams.state import UserState
from streams.tables import user_profiles, user_state

__all__ = ["health", "ready", "metrics", "get_user"]


@app.page("/health")
async def health(self: Any, request: Any) -> Any:
    """Liveness: the worker's event loop answers."""
    return self.json({"status": "ok"})


@app.page("/ready")
async def ready(self: Any, request: Any) -> Any:
    """Readiness: 200 once partitions are assigned and tables recovered, else 503 and why."""
    problems = readiness_problems(app)
    monitor.set_readiness(problems)
    if problems:
        return self.json({"status": "not ready", "reasons": problems}, status=503)
    return self.json({"status": "ready"})


@app.page("/metrics")
async def metrics(self: Any, request: Any) -> Any:
    """Prometheus exposition of this worker's metrics."""
    return self.bytes(monitor.exposition(), content_type=CONTENT_TYPE_LATEST)


@app.page("/users/{user_id}")
@app.table_route(table=user_state, match_info="user_id")
async def get_user(self: Any, request: Any, user_id: str) -> Any:
    """The user's state and profile as the partition's owner holds them; 404 if unknown.

    ``user_state`` and ``user_profiles`` are co-partitioned, so the owner has both.
    """
    data, profile = user_state.get(user_id), user_profiles.get(user_id)
    if data is None and profile is None:
        return self.json({"error": f"unknown user {user_id!r}"}, status=404)
    view = UserState.from_dict(data).public_view(user_id)
    view["consent_personalization"] = (profile or {}).get("consent_personalization", True)
    view["attributes"] = (profile or {}).get("attributes", {})
    return self.json(view)


# The dashboard's views live in their own module; importing it registers them.
import streams.dashboard  # noqa: E402,F401
