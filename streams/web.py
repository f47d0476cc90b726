"""HTTP views served by each worker (Faust web, aiohttp).

``GET /users/{user_id}`` is routed to the worker that owns the user's partition, so any
worker can be asked about any user. ``DELETE /users/{user_id}`` (admin) forgets the user.
"""

from __future__ import annotations

import hmac
from typing import Any

from faust.web import View

from streams.app import app, settings
from streams.codecs import encode
from streams.monitor import CONTENT_TYPE_LATEST, monitor, readiness_problems
from streams.pipeline import controls_from_profile
from streams.state import UserState
from streams.tables import user_profiles, user_state
from streams.topics import users_topic

__all__ = ["health", "ready", "metrics", "UserView", "admin_refusal"]


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


def admin_refusal(web_host: str, token: str, authorization: str | None) -> str | None:
    """Why an admin request is refused, or ``None`` to allow it.

    With a token set, the request must carry it; without one, admin endpoints answer only
    on a loopback bind, where nobody else can reach them.

    >>> admin_refusal("127.0.0.1", "", None) is None
    True
    >>> admin_refusal("0.0.0.0", "", None)
    'admin endpoints are disabled on a non-loopback bind until MICROMOMENT_ADMIN_TOKEN is set'
    >>> admin_refusal("0.0.0.0", "s3cret", "Bearer s3cret") is None
    True
    >>> admin_refusal("127.0.0.1", "s3cret", "Bearer wrong")
    'missing or wrong bearer token'
    """
    if token:
        supplied = (authorization or "").removeprefix("Bearer ").strip()
        return None if hmac.compare_digest(supplied, token) else "missing or wrong bearer token"
    if web_host in ("127.0.0.1", "localhost", "::1"):
        return None
    return "admin endpoints are disabled on a non-loopback bind until MICROMOMENT_ADMIN_TOKEN is set"


@app.page("/users/{user_id}")
class UserView(View):
    """``GET``: a user's state (routed to the owner). ``DELETE``: forget the user (admin)."""

    @app.table_route(table=user_state, match_info="user_id")
    async def get(self, request: Any, user_id: str) -> Any:
        """The user's state and profile as the partition's owner holds them; 404 if unknown.

        ``user_state`` and ``user_profiles`` are co-partitioned, so the owner has both.
        """
        data, profile = user_state.get(user_id), user_profiles.get(user_id)
        if data is None and profile is None:
            return self.json({"error": f"unknown user {user_id!r}"}, status=404)
        view = UserState.from_dict(data).public_view(user_id)
        view["consent_personalization"] = (profile or {}).get("consent_personalization", True)
        view["attributes"] = (profile or {}).get("attributes", {})
        controls = controls_from_profile(profile)
        view["controls"] = {"muted_items": sorted(controls.muted_items),
                            "muted_categories": sorted(controls.muted_categories),
                            "personalization_strength": controls.personalization,
                            "novelty": controls.novelty}
        return self.json(view)

    async def delete(self, request: Any, user_id: str) -> Any:
        """Publish a forget request for the user on the users topic (202: erasure follows)."""
        refusal = admin_refusal(settings.web_host, settings.admin_token,
                                request.headers.get("Authorization"))
        if refusal:
            return self.json({"error": refusal}, status=403)
        value, headers = encode("user", {"user_id": user_id, "forget": True}, "json")
        await users_topic.send(key=user_id.encode("utf-8"), value=value, headers=headers)
        return self.json({"status": "forget requested"}, status=202)


# The dashboard's views live in their own module; importing it registers them.
import streams.dashboard  # noqa: E402,F401
