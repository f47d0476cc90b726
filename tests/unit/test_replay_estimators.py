"""Off-policy estimators on synthetic bandit logs whose true policy value is known.

Each log: contexts drawn uniformly, a fixed click-rate table ``CTR[context, action]``, a
logging policy with known propensities, and a target policy; the truth is
``mean_x sum_a pi(a|x) CTR[x, a]``. Coverage is checked over many seeded logs (all
vectorized, well under a second).
"""

from __future__ import annotations

import numpy as np
import pytest

from streams.replay import estimators

N_CONTEXTS, N_ACTIONS = 4, 5
CTR = np.random.default_rng(12345).uniform(0.05, 0.6, size=(N_CONTEXTS, N_ACTIONS))
TARGET_ACTION = np.array([1, 3, 0, 4])  # the deterministic target policy, per context
TRUE_VALUE = float(CTR[np.arange(N_CONTEXTS), TARGET_ACTION].mean())


def logging_policy(uniform: bool) -> np.ndarray:
    if uniform:
        return np.full((N_CONTEXTS, N_ACTIONS), 1.0 / N_ACTIONS)
    logits = np.random.default_rng(7).normal(0.0, 1.0, size=(N_CONTEXTS, N_ACTIONS))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs = 0.9 * probs + 0.1 / N_ACTIONS  # full support, propensities >= 0.02
    return probs


def bandit_log(seed: int, n: int, mu: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(N_CONTEXTS, size=n)
    cumulative = mu[x].cumsum(axis=1)
    a = (rng.random(n)[:, None] > cumulative).sum(axis=1)
    r = (rng.random(n) < CTR[x, a]).astype(float)
    return {"x": x, "a": a, "r": r, "p": mu[x, a], "policy": TARGET_ACTION[x]}


def all_estimates(log, q=None):
    target = estimators.deterministic_probabilities(log["policy"], log["a"])
    q = CTR if q is None else q
    return {
        "replay": estimators.replay(log["policy"], log["a"], log["r"]),
        "ips": estimators.ips(log["r"], log["p"], target),
        "snips": estimators.snips(log["r"], log["p"], target),
        "dr": estimators.doubly_robust(log["r"], log["p"], target, q[log["x"], log["a"]],
                                       q[log["x"], log["policy"]]),
    }


def test_known_value_lies_in_every_interval_on_a_large_uniform_log():
    log = bandit_log(seed=1, n=50_000, mu=logging_policy(uniform=True))
    for name, est in all_estimates(log).items():
        assert est.covers(TRUE_VALUE), (name, est, TRUE_VALUE)
        assert abs(est.value - TRUE_VALUE) < 0.02, name
        assert est.ci_low <= est.value <= est.ci_high


@pytest.mark.parametrize("uniform", [True, False], ids=["uniform-logger", "skewed-logger"])
def test_interval_coverage_is_close_to_95_percent(uniform):
    mu = logging_policy(uniform)
    seeds = range(400)
    # DR with a deliberately wrong reward model (a constant): still unbiased.
    wrong_q = np.full_like(CTR, 0.3)
    names = ("ips", "snips", "dr") if not uniform else ("replay", "ips", "snips", "dr")
    covered = {name: 0 for name in names}
    for seed in seeds:
        estimates = all_estimates(bandit_log(seed, 2_000, mu), q=wrong_q)
        for name in names:
            covered[name] += estimates[name].covers(TRUE_VALUE)
    coverage = {name: hits / len(seeds) for name, hits in covered.items()}
    print(f"coverage ({'uniform' if uniform else 'skewed'} logger): {coverage}")
    for name, rate in coverage.items():
        assert 0.90 <= rate <= 0.985, (name, rate)


def test_replay_is_biased_on_a_non_uniform_log_and_ips_corrects_it():
    # The logger shows the target's action often where it converts well (context 0)
    # and rarely where it does not (context 1): matched rows over-represent context 0.
    ctr = np.array([[0.8, 0.1], [0.1, 0.1]])
    mu = np.array([[0.9, 0.1], [0.1, 0.9]])
    rng = np.random.default_rng(3)
    n = 40_000
    x = rng.integers(2, size=n)
    a = (rng.random(n) > mu[x, 0]).astype(int)
    r = (rng.random(n) < ctr[x, a]).astype(float)
    policy = np.zeros(n, dtype=int)  # always action 0
    truth = (0.8 + 0.1) / 2
    target = estimators.deterministic_probabilities(policy, a)
    replayed = estimators.replay(policy, a, r)
    weighted = estimators.ips(r, mu[x, a], target)
    assert replayed.value - truth > 0.2  # ~0.73: the bias the docstring warns about
    assert weighted.covers(truth)
    assert estimators.snips(r, mu[x, a], target).covers(truth)


def test_snips_equals_replay_for_a_deterministic_policy_on_a_uniform_log():
    log = bandit_log(seed=5, n=3_000, mu=logging_policy(uniform=True))
    est = all_estimates(log)
    assert est["snips"].value == pytest.approx(est["replay"].value)


def test_a_good_reward_model_makes_doubly_robust_tighter_than_ips():
    log = bandit_log(seed=9, n=5_000, mu=logging_policy(uniform=False))
    good = all_estimates(log, q=CTR)
    assert good["dr"].std_error < 0.9 * good["ips"].std_error
    assert good["dr"].covers(TRUE_VALUE)


def test_stochastic_target_policy_with_ips():
    mu = logging_policy(uniform=False)
    pi = np.full((N_CONTEXTS, N_ACTIONS), 0.1)
    pi[np.arange(N_CONTEXTS), TARGET_ACTION] = 0.6
    truth = float((pi * CTR).sum(axis=1).mean())
    log = bandit_log(seed=11, n=40_000, mu=mu)
    est = estimators.ips(log["r"], log["p"], pi[log["x"], log["a"]])
    assert est.covers(truth)
    assert abs(est.value - truth) < 0.02


def test_rare_clicks_keep_a_nondegenerate_replay_interval():
    # 100 matched rows, no click: the Wilson interval still says "up to ~3.7%".
    policy = np.zeros(100, dtype=int)
    est = estimators.replay(policy, policy, np.zeros(100))
    assert est.value == 0.0 and est.n == 100
    assert 0.03 < est.ci_high < 0.05


def test_edge_cases():
    empty = estimators.replay(np.array([1]), np.array([2]), np.array([1.0]))
    assert empty.n == 0 and np.isnan(empty.value)
    assert empty.to_dict()["estimate"] is None
    with pytest.raises(ValueError, match="propensities must be > 0"):
        estimators.ips(np.array([1.0]), np.array([0.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="one entry per round"):
        estimators.ips(np.array([1.0, 0.0]), np.array([0.5]), np.array([1.0, 1.0]))
    clipped = estimators.ips(np.array([1.0, 1.0]), np.array([0.1, 0.1]), np.array([1.0, 1.0]),
                             bounds=(0.0, 1.0))
    assert clipped.value == 1.0 and clipped.ci_high == 1.0  # raw IPS says 10
