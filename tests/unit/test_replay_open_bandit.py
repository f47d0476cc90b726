"""The pipeline as a policy on Open Bandit-shaped logs: a synthetic one with a planted
best item, and the real sample in ../shared/datasets/open_bandit when it is there."""

from __future__ import annotations

import csv
import gzip
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from streams.replay.errors import ReplayError
from streams.replay.open_bandit import (
    POSITIONS,
    OpenBanditReplay,
    load_bandit_log,
    load_item_context,
    reward_model,
)
from streams.replay.prequential import replay_settings
from streams.settings import Settings

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
OPEN_BANDIT = DATASETS / "open_bandit"

N_ITEMS = 10
BEST_ITEM, BEST_CTR, OTHER_CTR = 0, 0.3, 0.02


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_open_bandit(root: Path, n_rows: int = 3_000, seed: int = 0, campaign: str = "all") -> Path:
    """A dataset directory in the Open Bandit layout: uniform-random and "bts" logs where
    item 0 is clicked 30% of the time it is shown and every other item 2%."""
    rng = np.random.default_rng(seed)
    user_cols = [f"user_feature_{n}" for n in range(4)]
    header = ["", "timestamp", "item_id", "position", "click", "propensity_score", *user_cols]
    start = datetime(2019, 11, 24, tzinfo=timezone.utc)
    for policy in ("random", "bts"):
        rows = []
        for t in range(n_rows):
            if policy == "random":
                item = int(rng.integers(N_ITEMS))
                propensity = 1.0 / N_ITEMS
            else:  # a logger that already favours the best item
                item = BEST_ITEM if rng.random() < 0.5 else int(rng.integers(N_ITEMS))
                propensity = 0.5 + 0.5 / N_ITEMS if item == BEST_ITEM else 0.5 / N_ITEMS
            ctr = BEST_CTR if item == BEST_ITEM else OTHER_CTR
            user = int(rng.integers(300))
            features = [f"h{user % 7}", f"h{user % 11}", f"h{user % 13}", f"h{user}"]
            stamp = start + timedelta(seconds=20 * t)
            rows.append([t, stamp.isoformat(sep=" "), item, int(rng.integers(1, POSITIONS + 1)),
                         int(rng.random() < ctr), propensity, *features])
        _write_csv(root / policy / campaign / f"{campaign}.csv.gz", header, rows)
        items = [[n, n, float(n % 4), f"cat{n % 3}", f"style{n % 2}", "x"] for n in range(N_ITEMS)]
        _write_csv(root / policy / campaign / "item_context.csv.gz",
                   ["", "item_id", "item_feature_0", "item_feature_1", "item_feature_2",
                    "item_feature_3"], items)
    return root


def assert_coherent(low, value, high) -> None:
    assert 0.0 <= low <= value <= high <= 1.0, (low, value, high)


def assert_result_is_coherent(out: dict) -> None:
    for key in ("dataset", "events", "policy_ctr", "policy_ctr_ci", "random_ctr", "random_ctr_ci",
                "bts_ctr", "bts_ctr_ci", "relative_to_random", "estimates", "matched",
                "matched_clicks", "metrics", "baselines"):
        assert key in out, key
    assert set(out["baselines"]) == {"popularity", "random"}
    assert_coherent(out["random_ctr_ci"][0], out["random_ctr"], out["random_ctr_ci"][1])
    assert_coherent(out["bts_ctr_ci"][0], out["bts_ctr"], out["bts_ctr_ci"][1])
    for summary in (out["metrics"], *out["baselines"].values()):
        assert_coherent(summary["policy_ctr_ci"][0], summary["policy_ctr"], summary["policy_ctr_ci"][1])
        assert set(summary["estimates"]) == {"replay", "ips", "snips", "dr"}
        for est in summary["estimates"].values():
            assert_coherent(est["ci"][0], est["estimate"], est["ci"][1])
        assert 0 < summary["matched"] < out["events"]
        assert summary["relative_to_random"] == pytest.approx(summary["policy_ctr"] / out["random_ctr"])
        assert summary["estimates"]["replay"]["estimate"] == summary["policy_ctr"]
        # SNIPS of a deterministic policy on a uniform log is the replay estimate.
        assert summary["estimates"]["snips"]["estimate"] == pytest.approx(summary["policy_ctr"])
    assert out["policy_ctr"] == out["metrics"]["policy_ctr"]


def test_the_pipeline_learns_the_planted_best_item(tmp_path):
    root = write_open_bandit(tmp_path / "obd")
    out = OpenBanditReplay(root, "all", seed=1).run()
    assert_result_is_coherent(out)
    random_truth = (BEST_CTR + (N_ITEMS - 1) * OTHER_CTR) / N_ITEMS  # 4.8%
    print(f"synthetic open bandit: pipeline {out['policy_ctr']:.3f} {out['policy_ctr_ci']}, "
          f"random log {out['random_ctr']:.3f}, uniform policy "
          f"{out['baselines']['random']['policy_ctr']:.3f}")
    # Clicks teach the pipeline that item 0 converts: it shows it first, so its CTR
    # beats the random log's, with the whole interval above it.
    assert out["policy_ctr_ci"][0] > out["random_ctr"]
    assert out["random_ctr_ci"][0] < random_truth < out["random_ctr_ci"][1]
    # The uniform policy over the same candidates is valued near the random log's CTR.
    uniform = out["baselines"]["random"]
    assert uniform["policy_ctr_ci"][0] < random_truth < uniform["policy_ctr_ci"][1]
    assert out["bts_ctr"] > out["random_ctr"]


def test_reward_model_is_cross_fitted():
    items = np.array([0, 0, 1, 1, 0, 1])
    positions = np.array([1, 2, 1, 2, 1, 1])
    clicks = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    tables, fold = reward_model(items, positions, clicks, n_items=2, prior=0.0)
    assert fold.tolist() == [0, 1, 0, 1, 0, 1]
    # Fold 0's table comes from rows 1, 3, 5 only: item 1 at position 1 clicked once of once.
    assert tables[0, 1, 0] == 1.0
    # Fold 1's table comes from rows 0, 2, 4: item 0 at position 1 clicked twice of twice.
    assert tables[1, 0, 0] == 1.0 and tables[1, 1, 0] == 0.0
    # Pairs never seen fall back to their position's rate.
    assert tables[1, 0, 2] == 0.0 and tables.shape == (2, 2, POSITIONS)
    shrunk, _ = reward_model(items, positions, clicks, n_items=2, prior=100.0)
    # Shrunk towards fold 1's position-1 rate (2/3): item 1's 0/1 becomes just under it.
    assert 0.6 < shrunk[1, 1, 0] < 2 / 3


def test_loading_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_bandit_log(tmp_path / "absent", "random", "all")
    with pytest.raises(ReplayError, match="no random log for campaign 'men'"):
        load_bandit_log(write_open_bandit(tmp_path / "obd", n_rows=10), "random", "men")
    with pytest.raises(ReplayError, match="--campaign must be one of"):
        load_bandit_log(tmp_path, "random", "kids")


def test_item_context_becomes_categories(tmp_path):
    root = write_open_bandit(tmp_path / "obd", n_rows=10)
    import orjson

    records = [orjson.loads(value) for _, value in load_item_context(root, "all")]
    assert len(records) == N_ITEMS
    assert records[1]["categories"][:3] == ["f1:cat1", "f2:style1", "f3:x"]
    assert {r["categories"][3] for r in records} <= {"f0:q1", "f0:q2", "f0:q3", "f0:q4"}


@pytest.mark.skipif(not OPEN_BANDIT.is_dir(), reason=f"Open Bandit sample not found at {OPEN_BANDIT}")
def test_real_open_bandit_sample_gives_coherent_estimates():
    settings = replay_settings(Settings(), k=POSITIONS)
    out = OpenBanditReplay(OPEN_BANDIT, "all", settings, seed=42).run()
    assert_result_is_coherent(out)
    with gzip.open(OPEN_BANDIT / "random" / "all" / "all.csv.gz", "rt") as handle:
        rows = list(csv.DictReader(handle))
    assert out["events"] == len(rows)
    assert out["random_ctr"] == pytest.approx(sum(int(r["click"]) for r in rows) / len(rows))
    # About 1/80 of the rows match a deterministic policy on the uniform 80-item log.
    expected = len(rows) / 80
    assert abs(out["matched"] - expected) < 5 * math.sqrt(expected)
    print(f"open bandit (all): pipeline {out['policy_ctr']:.4f} {out['policy_ctr_ci']} on "
          f"{out['matched']} matched rows / {out['matched_clicks']} clicks; random log "
          f"{out['random_ctr']:.4f} {out['random_ctr_ci']}; bts {out['bts_ctr']:.4f}; IPS "
          f"{out['estimates']['ips']['estimate']:.4f}, DR {out['estimates']['dr']['estimate']:.4f}")
