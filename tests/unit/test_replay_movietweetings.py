"""Replay on the real MovieTweetings 10K sample in ../shared/datasets/movietweetings.

Measured on this project's 2-core machine (worker defaults, k=10):

=============================  ======  ==========  ======
configuration                  hybrid  popularity  random
=============================  ======  ==========  ======
ratings only                   0.0946  0.0865      0.0052
ratings + genres (movies.dat)  0.0677  0.0865      0.0028
ratings only, no decay         0.1626  0.1639      0.0052
=============================  ======  ==========  ======

The last row checks the harness: popularity without decay (half-life 10^9 s) lands on
the 0.164 measured independently for this log (``../shared/NOTES.md``). The default
popularity half-life (1 h) is far too short for a log of ~23 ratings an hour, and the
genre affinity pulls the hybrid below popularity: both are reported to the lead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.replay.loaders import ItemSpec, LogSpec, load_items, load_log
from streams.replay.prequential import Prequential, replay_settings
from streams.settings import Settings

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
MOVIETWEETINGS = DATASETS / "movietweetings"

pytestmark = pytest.mark.skipif(not (MOVIETWEETINGS / "ratings.dat").exists(),
                                reason=f"MovieTweetings sample not found at {MOVIETWEETINGS}")


def replay(with_genres: bool, **settings) -> dict:
    events = load_log(MOVIETWEETINGS / "ratings.dat",
                      LogSpec(columns=("user_id", "item_id", "rating", "timestamp")))
    run = Prequential(replay_settings(Settings(**settings), k=10), k=10, seed=42)
    if with_genres:
        run.add_items(load_items(MOVIETWEETINGS / "movies.dat",
                                 ItemSpec(columns=("item_id", "title", "categories"))))
    out = run.run(events, dataset="movietweetings").to_json()
    hr = {"hybrid": out["metrics"]["hr@10"],
          **{name: b["hr@10"] for name, b in out["baselines"].items()}}
    print(f"movietweetings genres={with_genres} {settings}: HR@10 {hr}, "
          f"NDCG@10 {out['metrics']['ndcg@10']:.4f}, MRR {out['metrics']['mrr']:.4f}, "
          f"coverage {out['metrics']['coverage']:.3f}, gini {out['metrics']['gini']:.3f}")
    assert out["events"] == out["applied"] == 10_000
    assert out["targets"] + sum(out["skipped"].values()) == 10_000
    return out


def hit_rates(out: dict) -> tuple[float, float, float]:
    return (out["metrics"]["hr@10"], out["baselines"]["popularity"]["hr@10"],
            out["baselines"]["random"]["hr@10"])


def test_popularity_baseline_matches_the_independent_measurement():
    hybrid, popularity, random = hit_rates(replay(False, popularity_half_life_s=1e9))
    assert popularity == pytest.approx(0.164, abs=0.01)
    assert random < 0.02 < popularity


def test_hybrid_is_not_worse_than_popularity_with_worker_defaults():
    hybrid, popularity, random = hit_rates(replay(False))
    assert hybrid >= popularity > 5 * random


@pytest.mark.xfail(strict=True, reason="known defect for the lead (streams/ranking.py): with "
                   "movies.dat genres the content affinity (weight 0.6 from a user's first "
                   "rating) pulls HR@10 to 0.068 against popularity's 0.087")
def test_hybrid_is_not_worse_than_popularity_with_genres():
    hybrid, popularity, _ = hit_rates(replay(True))
    assert hybrid >= popularity
