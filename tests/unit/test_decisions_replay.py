"""``micromoment replay --format decisions``: estimates checked on synthetic logs whose
true policy value is known exactly."""

from __future__ import annotations

import orjson
import numpy as np
import pytest

from streams.cli import main
from streams.decisions.config import PointConfig
from streams.decisions.simulation import BanditEnvironment, simulate
from streams.replay.decisions import FrozenTarget, evaluate_decisions, load_decision_log

ENV = BanditEnvironment(seed=11)
CONTEXTS = [{"segment": s, "device": d} for s in ENV.segments for d in ENV.devices]


def _uniform_log(rounds: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(rounds):
        ctx = ENV.context(rng)
        chosen = ENV.actions[rng.integers(len(ENV.actions))].id
        rows.append({"decision_id": f"d{t}", "decision_point": "hero", "context": ctx,
                     "actions": [{"id": a.id, "features": a.features} for a in ENV.actions],
                     "chosen": chosen, "probability": 1 / len(ENV.actions),
                     "reward": ENV.reward(ctx, chosen, rng)})
    return rows


def _learning_log(rounds: int, seed: int) -> list[dict]:
    """Logged by an epsilon-greedy point as it learned: propensities far from uniform."""
    rows = []

    def record(request, decision, reward):
        first = decision.actions[0]
        rows.append({"decision_id": request.decision_id, "decision_point": "hero",
                     "context": request.context,
                     "actions": [{"id": a.id, "features": a.features} for a in request.actions],
                     "chosen": first.id, "probability": first.probability, "reward": reward})

    simulate(PointConfig(policy="epsilon-greedy", epsilon=0.3), ENV, rounds=rounds, seed=seed,
             on_decision=record)
    return rows


def _write(tmp_path, rows, name="log.jsonl"):
    path = tmp_path / name
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


# Frozen targets whose true value is an exact average over the (uniform) contexts.
def _best(ctx, actions):
    p = np.zeros(len(actions))
    p[[a.id for a in actions].index(ENV.best(ctx))] = 1.0
    return p


def _mixed(ctx, actions):  # best with 0.6, the baseline with 0.4
    p = 0.6 * _best(ctx, actions)
    p[0] += 0.4
    return p


TRUTH = {
    "best": float(np.mean([ENV.optimum(c) for c in CONTEXTS])),
    "mixed": float(np.mean([0.6 * ENV.optimum(c) + 0.4 * ENV.expected(c, "a0") for c in CONTEXTS])),
}


@pytest.mark.parametrize("logger", ["uniform", "learning"])
@pytest.mark.parametrize("target", ["best", "mixed"])
def test_estimates_cover_the_true_value_of_a_known_policy(tmp_path, logger, target):
    rows = _uniform_log(20_000, seed=1) if logger == "uniform" else _learning_log(20_000, seed=2)
    log = load_decision_log(_write(tmp_path, rows))
    policy = {"best": _best, "mixed": _mixed}[target]
    def model(ctx, actions):  # a decent but imperfect reward model, for DR
        return np.array([ENV.expected(ctx, a.id) for a in actions]) * 0.9

    result = evaluate_decisions(log, target=FrozenTarget(policy, model))
    truth = TRUTH[target]
    for name in ("ips", "snips", "dr"):
        low, high = result["estimates"][name]["ci"]
        assert low <= truth <= high, (name, truth, result["estimates"][name])
        assert abs(result["estimates"][name]["estimate"] - truth) < 0.03
    # The logged policy's own value is reported beside (uniform: lower than either target).
    if logger == "uniform":
        assert result["logged"]["estimate"] < truth


def test_a_learning_target_is_estimated_well_above_the_uniform_logger(tmp_path):
    log = load_decision_log(_write(tmp_path, _uniform_log(20_000, seed=3)))
    result = evaluate_decisions(log, PointConfig(policy="linucb"), seed=1)
    logged_high = result["logged"]["ci"][1]
    for name in ("ips", "snips", "dr"):
        assert result["estimates"][name]["ci"][0] > logged_high, result["estimates"][name]
    # and near what the same policy earns online in this environment
    online = simulate(PointConfig(policy="linucb"), ENV, rounds=20_000, seed=3)
    assert abs(result["estimates"]["dr"]["estimate"] - online.served / online.rounds) < 0.03


def test_the_cli_joins_the_three_topics_records_and_writes_json(tmp_path, capsys):
    lines = []
    for row in _uniform_log(3_000, seed=4):
        actions = row["actions"]
        lines.append({"decision_id": row["decision_id"], "decision_point": "hero", "user_id": "u",
                      "context": row["context"], "actions": actions})
        others = [a["id"] for a in actions if a["id"] != row["chosen"]]
        lines.append({"decision_id": row["decision_id"], "decision_point": "hero", "user_id": "u",
                      "policy_version": "random@0", "slots": 1, "apprentice": False,
                      "created_at": 0,
                      "actions": [{"id": i, "probability": 0.2, "reason": "uniform"}
                                  for i in [row["chosen"], *others]]})
        if row["reward"]:  # no reward record: the default reward (0) applies
            lines.append({"decision_id": row["decision_id"], "value": 1.0, "timestamp": None})
    path = _write(tmp_path, lines, "topics.jsonl")
    out = tmp_path / "result.json"
    assert main(["replay", "--format", "decisions", str(path), "--policy", "epsilon-greedy",
                 "--exploration", "0.1", "--json", str(out)]) == 0
    result = orjson.loads(out.read_bytes())
    assert result["rounds"] == 3_000 and result["target"]["policy"] == "epsilon-greedy"
    assert result["target"]["epsilon"] == 0.1
    assert result["logged"]["estimate"] == pytest.approx(
        np.mean([r["reward"] for r in _uniform_log(3_000, seed=4)]))
    printed = capsys.readouterr().out
    assert "target, doubly robust" in printed and "3,000 logged decisions" in printed


def test_a_log_without_propensities_is_refused(tmp_path, capsys):
    rows = _uniform_log(10, seed=5)
    rows[3]["probability"] = 0.0
    assert main(["replay", "--format", "decisions", str(_write(tmp_path, rows))]) == 2
    assert "propensity" in capsys.readouterr().err
