"""HTTP views served by each worker (Faust web, aiohttp).

``GET /users/{user_id}`` is routed to the worker that owns the user's partition, so any
worker can be asked about any user.
"""

from __future__ import annotations

from typing import Any

from streams.app import app
from streams.state import UserState
from streams.tables import user_profiles, user_state

__all__ = ["health", "ready", "readiness_problems", "get_user"]


@app.page("/health")
async def health(self: Any, request: Any) -> Any:
    """Liveness: the worker's event loop answers."""
    return self.json({"status": "ok"})


def readiness_problems() -> list[str]:
    """Why this worker cannot serve fresh results yet (empty when it can)."""
    problems = []
    if getattr(app, "rebalancing", False):
        problems.append("consumer group is rebalancing")
    recovery = app.tables.recovery
    if recovery.in_recovery or not recovery.completed.is_set():
        problems.append("tables are recovering from their changelogs")
    if not app.consumer.assignment():
        problems.append("no partitions assigned yet")
    return problems


@app.page("/ready")
async def ready(self: Any, request: Any) -> Any:
    """Readiness: 200 once partitions are assigned and tables recovered, else 503 and why."""
    problems = readiness_problems()
    if problems:
        return self.json({"status": "not ready", "reasons": problems}, status=503)
    return self.json({"status": "ready"})


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
