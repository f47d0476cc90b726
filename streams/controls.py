"""A person's controls as a ``users`` record: what ``micromoment controls`` sends.

A ``users`` record is an upsert of the whole profile (consent, attributes, controls), so
changing one control means sending everything else as it is. :func:`updated_profile`
starts from the profile the worker holds (``GET /users/{id}``) and applies the changes,
so muting one more category never resets consent, attributes or the other controls.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

__all__ = ["updated_profile", "reset_request"]


def updated_profile(user_id: str, current: Mapping[str, Any] | None, *,
                    mute_items: Iterable[str] = (), unmute_items: Iterable[str] = (),
                    mute_categories: Iterable[str] = (), unmute_categories: Iterable[str] = (),
                    clear_mutes: bool = False, personalization: float | None = None,
                    novelty: float | None = None) -> dict[str, Any]:
    """The full ``users`` record for ``user_id``: ``current`` (a ``GET /users/{id}`` answer,
    or None for a user the worker does not know) with the changes applied.

    >>> held = {"consent_personalization": False, "attributes": {"tier": "gold"},
    ...         "controls": {"muted_items": ["i1"], "muted_categories": ["hats"],
    ...                      "personalization_strength": 0.5, "novelty": 0.5}}
    >>> record = updated_profile("u1", held, mute_categories=["shoes"], unmute_items=["i1"])
    >>> record["consent_personalization"], record["muted_items"], record["muted_categories"]
    (False, [], ['hats', 'shoes'])
    >>> updated_profile("u2", None, novelty=1.0)["novelty"]
    1.0
    """
    current = current or {}
    controls = current.get("controls") or {}
    items = set() if clear_mutes else set(controls.get("muted_items", ()))
    categories = set() if clear_mutes else set(controls.get("muted_categories", ()))
    items = (items | set(mute_items)) - set(unmute_items)
    categories = (categories | set(mute_categories)) - set(unmute_categories)
    return {
        "user_id": user_id,
        "consent_personalization": bool(current.get("consent_personalization", True)),
        "attributes": dict(current.get("attributes") or {}),
        "muted_items": sorted(items),
        "muted_categories": sorted(categories),
        "personalization_strength": float(controls.get("personalization_strength", 1.0)
                                          if personalization is None else personalization),
        "novelty": float(controls.get("novelty", 0.5) if novelty is None else novelty),
    }


def reset_request(user_id: str) -> dict[str, Any]:
    """A "reset my history" request: its other fields are not applied by the worker.

    >>> reset_request("u1")
    {'user_id': 'u1', 'reset_history': True}
    """
    return {"user_id": user_id, "reset_history": True}
