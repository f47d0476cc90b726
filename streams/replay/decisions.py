"""Counterfactual evaluation of decision policies on logged decisions.

``micromoment replay --format decisions LOG`` answers "what would *this* policy (or
this exploration rate) have earned on the decisions we logged?" without deploying it.
Each logged round needs the context, the candidates, the action shown, the probability
it was shown with (``decisions.out``'s ``probability`` of the first action) and the
reward. LOG is JSON lines (gzip allowed) in either shape:

* **joined rows**: ``{"decision_id", "decision_point", "context", "actions": [{"id",
  "features"}], "chosen", "probability", "reward"}``;
* **the topics' own records, concatenated in any order** (e.g. dumps of ``decisions``,
  ``decisions.out`` and ``rewards``), joined here by ``decision_id``; a decision
  without a reward gets ``--default-reward`` (as the worker's window would).

The target policy replays the rounds in log order through the same
:class:`~streams.decisions.point.DecisionPoint` the worker runs: before each round it
gives its probabilities for the logged candidates (then learns the logged reward of
the logged action), so the IPS/SNIPS/DR terms are a martingale and the estimators'
intervals hold (:mod:`streams.replay.estimators`). DR's reward model is the target's
own, as it was before the round. The logged policy's value (its mean reward) is
reported beside the estimates.
"""

from __future__ import annotations

import gzip
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import orjson

from streams.decisions.config import PointConfig
from streams.decisions.point import DecisionPoint
from streams.decisions.records import Action, DecisionRequest
from streams.replay.errors import ReplayError
from streams.replay.estimators import doubly_robust, ips, mean_estimate, proportion, snips

__all__ = ["LoggedDecision", "load_decision_log", "evaluate_decisions", "FrozenTarget",
           "format_decisions"]


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """One logged round: what was offered, what was shown with which probability, the reward."""

    decision_id: str
    decision_point: str
    context: dict[str, Any]
    actions: tuple[Action, ...]
    chosen: str
    probability: float
    reward: float


def _open(path: Path) -> io.TextIOBase:
    if not path.is_file():
        raise ReplayError(f"{path}: no such file")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _actions(raw: Any, where: str) -> tuple[Action, ...]:
    if not isinstance(raw, list) or not raw:
        raise ReplayError(f"{where}: 'actions' must be a non-empty list of {{id, features}}")
    try:
        return tuple(Action(str(a["id"]), dict(a.get("features") or {})) for a in raw)
    except (TypeError, KeyError, AttributeError):
        raise ReplayError(f"{where}: every action needs an 'id'") from None


def load_decision_log(path: str | Path, default_reward: float = 0.0,
                      decision_point: str | None = None) -> list[LoggedDecision]:
    """Read LOG (see the module docstring) into rounds, in the order decisions appear.

    Decisions without a request (candidates unknown) are skipped; a line that is not
    a JSON object, or a joined row missing a field, raises :class:`ReplayError`.
    """
    path = Path(path)
    requests: dict[str, dict] = {}
    answers: dict[str, dict] = {}
    rewards: dict[str, float] = {}
    joined: list[LoggedDecision] = []
    order: list[str] = []
    with _open(path) as handle:
        for n, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path.name} line {n}"
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ReplayError(f"{where}: not valid JSON ({exc})") from None
            if not isinstance(row, dict) or "decision_id" not in row:
                raise ReplayError(f"{where}: expected a JSON object with a decision_id")
            did = str(row["decision_id"])
            if "chosen" in row:
                try:
                    joined.append(LoggedDecision(did, str(row.get("decision_point", "")),
                                                 dict(row.get("context") or {}),
                                                 _actions(row.get("actions"), where),
                                                 str(row["chosen"]), float(row["probability"]),
                                                 float(row.get("reward", default_reward))))
                except (KeyError, TypeError, ValueError) as exc:
                    raise ReplayError(f"{where}: a joined row needs chosen, probability and "
                                      f"reward ({exc})") from None
            elif "policy_version" in row:
                answers.setdefault(did, row)
                if did not in order:
                    order.append(did)
            elif "actions" in row or "action_set" in row:
                requests.setdefault(did, row)
            elif "value" in row:
                if row.get("action_id") is None:  # the shown (first) action's reward
                    rewards.setdefault(did, float(row["value"]))
            else:
                raise ReplayError(f"{where}: not a decision request, decision, reward or "
                                  "joined row")
    for did in order:
        request, answer = requests.get(did), answers[did]
        if request is None or not request.get("actions"):
            continue
        first = answer["actions"][0]
        joined.append(LoggedDecision(did, str(answer.get("decision_point", "")),
                                     dict(request.get("context") or {}),
                                     _actions(request["actions"], f"{path.name} {did}"),
                                     str(first["id"]), float(first["probability"]),
                                     rewards.get(did, default_reward)))
    if decision_point is not None:
        joined = [d for d in joined if d.decision_point == decision_point]
    if not joined:
        raise ReplayError(f"{path}: no complete logged decision (request and answer) found")
    for d in joined:
        if not 0.0 < d.probability <= 1.0:
            raise ReplayError(f"{path.name} {d.decision_id}: logged probability {d.probability} "
                              "is not in (0, 1]; off-policy estimates need the logged propensity")
    return joined


class FrozenTarget:
    """A target that does not learn: probabilities from a function of (context, actions)."""

    def __init__(self, probabilities: Callable[[dict, tuple[Action, ...]], np.ndarray],
                 predictions: Callable[[dict, tuple[Action, ...]], np.ndarray] | None = None,
                 ) -> None:
        self.probabilities = probabilities
        self.predictions = predictions


def evaluate_decisions(log: Iterable[LoggedDecision], config: PointConfig | None = None,
                       seed: int = 42, target: FrozenTarget | None = None,
                       level: float = 0.95) -> dict[str, Any]:
    """IPS, SNIPS and DR estimates of a target policy's mean reward on ``log``.

    The target is ``config``'s policy learning as it goes (the default), or a
    :class:`FrozenTarget`. Returns JSON-ready results.
    """
    log = list(log)
    n = len(log)
    rewards = np.empty(n)
    logged_p = np.empty(n)
    target_p = np.empty(n)
    q_logged = np.empty(n)
    q_target = np.empty(n)
    agree = np.empty(n)
    point = None
    if target is None:
        config = config or PointConfig()
        point = DecisionPoint("replay", config, seed)
    for t, round_ in enumerate(log):
        ids = [a.id for a in round_.actions]
        try:
            index = ids.index(round_.chosen)
        except ValueError:
            raise ReplayError(f"decision {round_.decision_id}: the shown action "
                              f"{round_.chosen!r} is not among its candidates") from None
        if point is not None:
            X = point.featurizer.transform(round_.context, round_.actions)
            p = point.policy.probabilities(X, point._rng)
            q = point.policy.predict_many(X)
        else:
            p = np.asarray(target.probabilities(round_.context, round_.actions), dtype=float)
            q = (np.zeros(len(ids)) if target.predictions is None
                 else np.asarray(target.predictions(round_.context, round_.actions), dtype=float))
        rewards[t], logged_p[t], target_p[t] = round_.reward, round_.probability, p[index]
        q_logged[t], q_target[t] = q[index], float(p @ q)
        agree[t] = float(np.argmax(p) == index)
        if point is not None:  # learns the logged outcome, as it would have online
            point.policy.learn_one(X[index], round_.reward)
    binary = bool(np.all((rewards == 0) | (rewards == 1)))
    bounds = (0.0, 1.0) if binary else None
    logged = proportion(rewards, level) if binary else mean_estimate(rewards, level)
    weights = target_p / logged_p
    result = {
        "rounds": n,
        "target": (config.__dict__ if target is None else {"policy": "frozen"}),
        "logged": logged.to_dict(),
        "estimates": {
            "ips": ips(rewards, logged_p, target_p, level, bounds).to_dict(),
            "snips": snips(rewards, logged_p, target_p, level, bounds).to_dict(),
            "dr": doubly_robust(rewards, logged_p, target_p, q_logged, q_target, level,
                                bounds).to_dict(),
        },
        "effective_sample_size": float(weights.sum() ** 2 / max((weights ** 2).sum(), 1e-300)),
        "max_weight": float(weights.max()),
        "agreement": float(agree.mean()),
    }
    return result


def format_decisions(result: dict[str, Any]) -> str:
    """The summary printed by ``micromoment replay --format decisions``."""
    def est(d: dict) -> str:
        low, high = d["ci"]
        value = d["estimate"]
        if value is None or low is None or math.isnan(value):
            return "n/a"
        return f"{value:.4f}  [{low:.4f}, {high:.4f}]"

    target = result["target"]
    name = target.get("policy", "?")
    own = {"linucb": "alpha", "softmax": "temperature", "thompson": "scale"}.get(name)
    knobs = ", ".join(f"{k}={target[k]}" for k in ("epsilon", own) if k in target)
    lines = [f"off-policy evaluation on {result['dataset']}: {result['rounds']:,} logged decisions",
             f"target policy: {name}" + (f" ({knobs})" if knobs else ""), "",
             f"{'estimate of mean reward':<28} value   95% CI",
             f"{'logged policy (observed)':<28} {est(result['logged'])}"]
    for key, label in (("ips", "target, IPS"), ("snips", "target, SNIPS"),
                       ("dr", "target, doubly robust")):
        lines.append(f"{label:<28} {est(result['estimates'][key])}")
    lines += ["", f"effective sample size {result['effective_sample_size']:,.0f} of "
                  f"{result['rounds']:,}; largest weight {result['max_weight']:.1f}; the target's "
                  "most likely action is the logged one in "
                  f"{100 * result['agreement']:.1f}% of rounds"]
    return "\n".join(lines)
