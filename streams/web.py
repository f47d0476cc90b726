"""HTTP views served by each worker (Faust web, aiohttp).

``GET /users/{user_id}`` is routed to the worker that owns the user's partition, so any
worker can be asked about any user.
"""

from __future__ import annotations

from typing import Any

from streams.app import app
from streams.state import UserState
from streams.tables import user_state

__all__ = ["health", "get_user"]


@app.page("/health")
async def health(self: Any, request: Any) -> Any:
    """Liveness: the worker's event loop answers."""
    return self.json({"status": "ok"})


@app.page("/users/{user_id}")
@app.table_route(table=user_state, match_info="user_id")
async def get_user(self: Any, request: Any, user_id: str) -> Any:
    """The user's state as this worker (the partition's owner) holds it; 404 if unknown."""
    data = user_state.get(user_id)
    if data is None:
        return self.json({"error": f"unknown user {user_id!r}"}, status=404)
    return self.json(UserState.from_dict(data).public_view(user_id))
