"""Bytes of a decision request or a reward -> a trusted record, or :class:`InvalidRecord`.

Same edge as ``streams.validation`` (size check, JSON/Avro detection, then field checks
with a stable ``error_type``), with the decision loop's own rules: a request needs at
least one candidate and at most ``MICROMOMENT_DECISION_MAX_ACTIONS``, unique action ids,
finite numeric features, ``1 <= slots <= len(actions)`` and a baseline among its actions;
both topics are keyed by the user id.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from streams.decisions.config import DecisionConfig
from streams.decisions.records import Action, DecisionRequest, FeatureValue, Reward
from streams.errors import InvalidRecord
from streams.settings import Settings
from streams.validation import MAX_ENTRY_LENGTH, Validator, _check_key, _decode

__all__ = ["DecisionValidator", "parse_request", "parse_reward"]

_USER_KEY_WHY = ("so that a user's decisions and rewards reach the worker that holds "
                 "their pending decisions")


class DecisionValidator:
    """Validates decoded requests and rewards against the settings' limits.

    >>> v = DecisionValidator(Settings())
    >>> req = v.request({"decision_id": "d1", "decision_point": "hero", "user_id": "u1",
    ...                  "context": {"device": "mobile", "hour": 20},
    ...                  "actions": [{"id": "a"}, {"id": "b", "features": {"warm": 1}}]})
    >>> [a.id for a in req.actions], req.context, req.slots
    (['a', 'b'], {'device': 'mobile', 'hour': 20.0}, 1)
    >>> v.request({"decision_id": "d1", "decision_point": "hero", "user_id": "u1", "actions": []})
    Traceback (most recent call last):
    ...
    streams.errors.InvalidRecord: decision request has no candidate actions: give 'actions' (a non-empty list) or a configured 'action_set'
    """

    def __init__(self, settings: Settings | None = None,
                 config: DecisionConfig | None = None) -> None:
        self.settings = settings = settings or Settings()
        self.base = Validator(settings)
        self.max_actions = getattr(settings, "decision_max_actions", 50)
        self.max_entries = settings.max_context_entries
        self.config = config or DecisionConfig({})
        # Action sets are checked once, like a request's actions, so a bad set fails at start.
        self.action_sets: dict[str, tuple[Action, ...]] = {}
        for name, actions in self.config.action_sets.items():
            try:
                self.action_sets[name] = self._actions(list(actions), f"action set {name!r}")
            except InvalidRecord as exc:
                from streams.decisions.config import ConfigError

                raise ConfigError(f"MICROMOMENT_DECISION_ACTION_SETS: {exc}") from None

    # -- fields -------------------------------------------------------------------------
    def _features(self, value: Any, where: str) -> dict[str, FeatureValue]:
        if value is None:
            return {}
        if type(value) is not dict:
            raise InvalidRecord("wrong_type", f"{where} must be an object of name to string or "
                                f"number, got {type(value).__name__}")
        if len(value) > self.max_entries:
            raise InvalidRecord("too_many_entries", f"{where} has {len(value)} entries, more than "
                                f"the limit of {self.max_entries}")
        out: dict[str, FeatureValue] = {}
        for k, v in value.items():
            if type(k) is not str or not k or len(k) > MAX_ENTRY_LENGTH:
                raise InvalidRecord("invalid_value", f"{where} has a feature name that is not a "
                                    f"non-empty string of at most {MAX_ENTRY_LENGTH} characters")
            kind = type(v)
            if kind is str:
                if len(v) > MAX_ENTRY_LENGTH:
                    raise InvalidRecord("too_long", f"{where} feature {k[:64]!r} is longer than "
                                        f"{MAX_ENTRY_LENGTH} characters")
                out[k] = v
            elif kind is float or kind is int or kind is bool:
                try:
                    number = float(v)
                except OverflowError:
                    number = math.inf
                if not math.isfinite(number):
                    raise InvalidRecord("invalid_value", f"{where} feature {k[:64]!r} must be a "
                                        f"finite number, got {v}")
                out[k] = number
            else:
                raise InvalidRecord("wrong_type", f"{where} feature {k[:64]!r} must be a string "
                                    f"or a number, got {type(v).__name__}")
        return out

    def _actions(self, value: Any, where: str) -> tuple[Action, ...]:
        if type(value) not in (list, tuple):
            raise InvalidRecord("wrong_type", f"{where} must be an array of {{id, features}} "
                                f"objects, got {type(value).__name__}")
        if not value:
            raise InvalidRecord("no_actions", f"{where} is empty")
        if len(value) > self.max_actions:
            raise InvalidRecord("too_many_actions", f"{where} has {len(value)} actions, more than "
                                f"the limit of {self.max_actions} "
                                "(MICROMOMENT_DECISION_MAX_ACTIONS)")
        actions, seen = [], set()
        for n, raw in enumerate(value):
            if type(raw) is not dict:
                raise InvalidRecord("malformed_action", f"{where} entry {n} must be an object "
                                    f"{{id, features}}, got {type(raw).__name__}")
            extra = set(raw) - {"id", "features"}
            if extra:
                raise InvalidRecord("malformed_action", f"{where} entry {n} has unknown fields "
                                    f"{sorted(extra)[:5]}; an action is {{id, features}}")
            try:
                action_id = self.base._id(raw.get("id"), "action", "id")
            except InvalidRecord as exc:
                raise InvalidRecord("malformed_action",
                                    f"{where} entry {n}: {exc.reason}") from None
            if action_id in seen:
                raise InvalidRecord("duplicate_action", f"{where} lists action {action_id[:64]!r} "
                                    "more than once")
            seen.add(action_id)
            features = self._features(raw.get("features"),
                                      f"{where} action {action_id[:64]!r} features")
            actions.append(Action(action_id, features))
        return tuple(actions)

    # -- records --------------------------------------------------------------------------
    def request(self, data: Mapping[str, Any], now_ms: int | None = None) -> DecisionRequest:
        """Validate a decoded request; a named ``action_set`` is expanded here."""
        get = data.get
        decision_id = self.base._id(get("decision_id"), "decision request", "decision_id")
        point = self.base._id(get("decision_point"), "decision request", "decision_point")
        user_id = self.base._id(get("user_id"), "decision request", "user_id")
        context = self._features(get("context"), "decision request field 'context'")

        action_set = get("action_set")
        raw_actions = get("actions")
        if action_set is not None:
            action_set = self.base._id(action_set, "decision request", "action_set")
            if raw_actions:
                raise InvalidRecord("malformed_action", "decision request gives both 'actions' and "
                                    "'action_set'; give one")
            if action_set not in self.action_sets:
                known = ", ".join(sorted(self.action_sets)[:20]) or "none configured"
                raise InvalidRecord("unknown_action_set", f"decision request names action set "
                                    f"{action_set[:64]!r}, which is not configured "
                                    f"(MICROMOMENT_DECISION_ACTION_SETS; known: {known})")
            actions = self.action_sets[action_set]
        else:
            if raw_actions is None or (type(raw_actions) in (list, tuple) and not raw_actions):
                raise InvalidRecord("no_actions", "decision request has no candidate actions: give "
                                    "'actions' (a non-empty list) or a configured 'action_set'")
            actions = self._actions(raw_actions, "decision request field 'actions'")

        slots = get("slots")
        if slots is None:
            slots = 1
        elif type(slots) is not int:
            raise InvalidRecord("wrong_type", "decision request field 'slots' must be an integer")
        if not 1 <= slots <= len(actions):
            raise InvalidRecord("invalid_value", f"decision request field 'slots' is {slots}; it "
                                f"must be between 1 and the number of actions ({len(actions)})")

        baseline = get("baseline_action")
        if baseline is not None:
            baseline = self.base._id(baseline, "decision request", "baseline_action")
            if not any(a.id == baseline for a in actions):
                raise InvalidRecord("invalid_value", f"decision request field 'baseline_action' "
                                    f"is {baseline[:64]!r}, which is not one of its actions")

        timestamp = get("timestamp")
        if timestamp is not None:
            timestamp = self._timestamp(timestamp, "decision request", now_ms)
        return DecisionRequest(decision_id, point, user_id, actions, context, slots, baseline,
                               action_set, timestamp)

    def _timestamp(self, value: Any, kind: str, now_ms: int | None) -> int:
        if type(value) is not int:
            raise InvalidRecord("wrong_type", f"{kind} field 'timestamp' must be an integer "
                                "(epoch milliseconds)")
        latest = None if now_ms is None else now_ms + int(self.settings.max_future_skew_s * 1000)
        if value < self.settings.min_timestamp_ms or (latest is not None and value > latest):
            raise InvalidRecord("timestamp_out_of_range", f"{kind} field 'timestamp' is {value}, "
                                "too old, too far in the future, or not in milliseconds")
        return value

    def reward(self, data: Mapping[str, Any], now_ms: int | None = None) -> Reward:
        """Validate a decoded reward.

        >>> DecisionValidator().reward({"decision_id": "d1", "value": 1})
        Reward(decision_id='d1', value=1.0, timestamp=None, action_id=None)
        >>> DecisionValidator().reward({"decision_id": "d1", "value": float("nan")})
        Traceback (most recent call last):
        ...
        streams.errors.InvalidRecord: reward field 'value' must be a finite number, got nan
        """
        get = data.get
        decision_id = self.base._id(get("decision_id"), "reward", "decision_id")
        value = get("value")
        if type(value) not in (int, float):
            if value is None:
                raise InvalidRecord("missing_field", "reward field 'value' is missing (or null)")
            raise InvalidRecord("wrong_type", f"reward field 'value' must be a number, got "
                                f"{type(value).__name__}")
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise InvalidRecord("invalid_value",
                                f"reward field 'value' must be a finite number, got {value}")
        timestamp = get("timestamp")
        if timestamp is not None:
            timestamp = self._timestamp(timestamp, "reward", now_ms)
        action_id = get("action_id")
        if action_id is not None:
            action_id = self.base._id(action_id, "reward", "action_id")
        return Reward(decision_id, value, timestamp, action_id)


def parse_request(key: bytes | None, value: bytes | None, headers: Any,
                  validator: DecisionValidator, now_ms: int | None = None) -> DecisionRequest:
    """Bytes of one ``decisions`` record -> :class:`DecisionRequest`, or :class:`InvalidRecord`.

    >>> v = DecisionValidator()
    >>> parse_request(b"u1", b'{"decision_id": "d1", "decision_point": "hero", "user_id": "u1",'
    ...               b' "actions": [{"id": "a"}, {"id": "a"}]}', None, v)
    Traceback (most recent call last):
    ...
    streams.errors.InvalidRecord: decision request field 'actions' lists action 'a' more than once
    """
    request = validator.request(_decode("decision_request", value, headers, validator.base), now_ms)
    _check_key(key, request.user_id, "decision request", "user_id", _USER_KEY_WHY)
    return request


def parse_reward(key: bytes | None, value: bytes | None, headers: Any,
                 validator: DecisionValidator, now_ms: int | None = None) -> Reward:
    """Bytes of one ``rewards`` record -> :class:`Reward` (its key is checked by the engine,
    which knows the decision's user)."""
    return validator.reward(_decode("reward", value, headers, validator.base), now_ms)
