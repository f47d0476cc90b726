"""Decision points and named action sets, configured in advance (JSON).

``MICROMOMENT_DECISION_POINTS`` holds a JSON object (or ``@path`` to a JSON file) that
maps each decision point's name to its options; a point that is not listed gets the
defaults from the other ``MICROMOMENT_DECISION_*`` settings when its first request
arrives. ``MICROMOMENT_DECISION_ACTION_SETS`` maps a set's name to its actions, so a
request can say ``"action_set": "hero-images"`` instead of listing candidates.

Kept free of numpy and Faust: settings validation imports it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

__all__ = ["POLICIES", "PointConfig", "DecisionConfig", "ConfigError", "load_json_option"]

#: Policies a decision point can run (see :mod:`streams.decisions.policies`).
POLICIES = ("epsilon-greedy", "softmax", "thompson", "linucb")


class ConfigError(ValueError):
    """A decision-point or action-set option that cannot be used."""


@dataclass(frozen=True)
class PointConfig:
    """Options of one decision point.

    ``epsilon`` is the uniform exploration every policy mixes in, so every action
    keeps a probability of at least ``epsilon / n`` (which also keeps logs usable for
    off-policy evaluation); for ``epsilon-greedy`` it is the whole exploration.
    ``temperature`` (softmax), ``alpha`` (LinUCB's confidence width) and ``scale``
    (Thompson sampling's posterior scale) tune the other policies. ``dimensions`` is
    the size of the hashed action×context feature space; ``l2`` the ridge prior.

    In ``apprentice`` mode the point shows the caller's ``baseline_action`` (and a
    uniformly drawn action with probability ``epsilon``) until its doubly robust
    estimate of the learned policy's value beats the baseline's by
    ``apprentice_margin`` at the lower end of a one-sided 95% interval, over at least
    ``apprentice_min_rewards`` rewards.

    >>> PointConfig.from_dict({"policy": "linucb", "alpha": 0.5}).alpha
    0.5
    >>> PointConfig.from_dict({"policy": "ucb"})
    Traceback (most recent call last):
    ...
    streams.decisions.config.ConfigError: decision point option 'policy' is 'ucb', not one of: epsilon-greedy, softmax, thompson, linucb
    """

    policy: str = "linucb"
    epsilon: float = 0.05
    temperature: float = 0.02
    alpha: float = 1.0
    scale: float = 0.25
    dimensions: int = 256
    l2: float = 1.0
    reward_window_s: float = 600.0
    default_reward: float = 0.0
    apprentice: bool = False
    apprentice_margin: float = 0.01
    apprentice_min_rewards: int = 200

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: "PointConfig | None" = None) -> "PointConfig":
        """Options from a JSON object over ``base`` (the defaults); unknown keys are errors."""
        if not isinstance(data, Mapping):
            raise ConfigError("decision point options must be a JSON object, got "
                              f"{type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(f"unknown decision point option {key!r}; "
                                  f"known: {', '.join(known)}")
            default = known[key].default
            if isinstance(default, bool):
                if type(value) is not bool:
                    raise ConfigError(f"decision point option {key!r} must be true or false")
            elif isinstance(default, int):
                if type(value) is not int:
                    raise ConfigError(f"decision point option {key!r} must be an integer")
            elif isinstance(default, float):
                if type(value) not in (int, float) or not math.isfinite(value):
                    raise ConfigError(f"decision point option {key!r} must be a finite number")
                value = float(value)
            elif type(value) is not str:
                raise ConfigError(f"decision point option {key!r} must be a string")
            values[key] = value
        config = replace(base or cls(), **values)
        config.validate()
        return config

    def validate(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"decision point option 'policy' is {self.policy!r}, "
                              f"not one of: {', '.join(POLICIES)}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ConfigError("decision point option 'epsilon' must be in [0, 1], "
                              f"got {self.epsilon}")
        for name in ("temperature", "l2", "reward_window_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"decision point option {name!r} must be positive")
        for name in ("alpha", "scale", "apprentice_margin"):
            if getattr(self, name) < 0:
                raise ConfigError(f"decision point option {name!r} must not be negative")
        if not 1 <= self.dimensions <= 4096:
            raise ConfigError("decision point option 'dimensions' must be in [1, 4096]")
        if self.apprentice_min_rewards < 1:
            raise ConfigError("decision point option 'apprentice_min_rewards' must be at least 1")


def load_json_option(text: str, variable: str) -> Any:
    """Parse a JSON setting, or the JSON file it names as ``@path``; ``None`` when empty.

    >>> load_json_option('{"a": 1}', "X")
    {'a': 1}
    >>> load_json_option("", "X") is None
    True
    """
    text = text.strip()
    if not text:
        return None
    where = variable
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        where = f"{variable} file {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where} is not valid JSON ({exc})") from None


@dataclass(frozen=True)
class DecisionConfig:
    """Every decision point's options, the defaults for unlisted ones, the action sets.

    ``action_sets`` hold plain ``{"id", "features"}`` dicts here; the validator checks
    them like the actions of a request when the config is built.

    >>> cfg = DecisionConfig.parse('{"hero": {"policy": "thompson"}}',
    ...                            '{"images": [{"id": "a"}, {"id": "b"}]}')
    >>> cfg.point("hero").policy, cfg.point("other").policy, len(cfg.action_sets["images"])
    ('thompson', 'linucb', 2)
    """

    points: dict[str, PointConfig]
    default: PointConfig = PointConfig()
    action_sets: dict[str, tuple[dict[str, Any], ...]] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.action_sets is None:
            object.__setattr__(self, "action_sets", {})

    def point(self, name: str) -> PointConfig:
        """The options of decision point ``name`` (the defaults when it is not listed)."""
        return self.points.get(name, self.default)

    @classmethod
    def parse(cls, points_text: str = "", action_sets_text: str = "",
              default: PointConfig | None = None) -> "DecisionConfig":
        default = default or PointConfig()
        default.validate()
        raw_points = load_json_option(points_text, "MICROMOMENT_DECISION_POINTS") or {}
        if not isinstance(raw_points, dict):
            raise ConfigError("MICROMOMENT_DECISION_POINTS must be a JSON object: "
                              "{decision point name: {option: value}}")
        points = {}
        for name, options in raw_points.items():
            if not name:
                raise ConfigError("MICROMOMENT_DECISION_POINTS: a decision point name is empty")
            try:
                points[name] = PointConfig.from_dict(options, default)
            except ConfigError as exc:
                raise ConfigError(f"MICROMOMENT_DECISION_POINTS[{name!r}]: {exc}") from None
        raw_sets = load_json_option(action_sets_text, "MICROMOMENT_DECISION_ACTION_SETS") or {}
        if not isinstance(raw_sets, dict) or not all(isinstance(v, list)
                                                     for v in raw_sets.values()):
            raise ConfigError("MICROMOMENT_DECISION_ACTION_SETS must be a JSON object: "
                              "{set name: [{\"id\": ..., \"features\": {...}}, ...]}")
        sets = {name: tuple(actions) for name, actions in raw_sets.items()}
        return cls(points, default, sets)

    @classmethod
    def from_settings(cls, settings: Any) -> "DecisionConfig":
        """The config the worker runs with, from :class:`~streams.settings.Settings`."""
        default = PointConfig(policy=settings.decision_policy,
                              epsilon=settings.decision_exploration,
                              reward_window_s=settings.decision_reward_window_s,
                              default_reward=settings.decision_default_reward)
        return cls.parse(settings.decision_points, settings.decision_action_sets, default)
