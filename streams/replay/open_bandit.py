"""The Open Bandit Dataset: the pipeline as a policy, valued off-policy on a random log.

The dataset (ZOZO, Saito et al., NeurIPS 2021; CC BY 4.0) logs a fashion carousel:
each row is one impression of one item at one of three positions, chosen by either a
uniformly random policy (``random/``) or Bernoulli Thompson Sampling (``bts/``), with
the click, the logger's propensity, four hashed user features and hashed item
features (``item_context.csv.gz``). Because the ``random/`` logger chose uniformly, the
click rate *any* other policy would have got can be estimated from it.

How the pipeline plays the policy (all through :class:`streams.pipeline.Pipeline`):

* **user** — there are no user ids, only four hashed user features; their combination
  (hashed, ``seg-…``) is the ``user_id``. The pipeline therefore personalizes per
  *segment* of similar users (~200 per campaign), which is what the data allows.
* **items** — every item of ``item_context.csv.gz`` is published to the catalog first,
  with its categorical features as categories (``f1:…``, ``f2:…``, ``f3:…``) and its
  numeric feature as a quartile (``f0:q1``…``f0:q4``), so the content learner can
  generalize across similar items.
* **decision** — for each logged row the policy's slate is
  ``recommend(segment, state, k=3)`` *before* the row's click is known; its item at the
  row's position is the policy's choice for that row.
* **learning** — a click becomes a ``click`` event for the segment and item, processed
  by the pipeline. An impression without a click teaches nothing: the random logger's
  impressions say what the logger drew, not what users wanted, and feeding them as
  ``view`` events would make popularity mostly a count of random draws.

The pipeline learns from every logged click, including clicks on items it would not
have shown (a shadow deployment that consumes all traffic), so the estimate is "what
its choices would have earned while learning from this traffic", not the value of
deploying it alone: that would need it to learn only from matched rows (Li et al.,
2011), which leaves about one click in this 10,000-row sample. The ranker still filters
a "user's" recent items, here a segment's recently clicked items, a small distortion at
this click rate.

Estimates (:mod:`streams.replay.estimators`): replay by rejection sampling (the
headline ``policy_ctr``), IPS, SNIPS and doubly robust with a reward model of smoothed
per-(item, position) click rates cross-fitted on two folds of rows, each with a 95%
interval; beside them the logged click rates of the random and the Thompson-sampling
policies. The non-personalized path of the same recommender (popularity) and a
uniformly random policy over the same candidates are valued the same way; the random
policy's replay estimate should agree with the random log's own CTR.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import orjson

from streams.pipeline import Pipeline, RawRecord
from streams.replay import estimators, metrics
from streams.replay.errors import ReplayError
from streams.replay.loaders import parse_time
from streams.replay.prequential import STRATEGIES, EventClock, settings_summary
from streams.settings import Settings
from streams.state import UserState

__all__ = [
    "CAMPAIGNS",
    "POSITIONS",
    "BanditLog",
    "log_path",
    "load_bandit_log",
    "load_item_context",
    "segment_of",
    "reward_model",
    "OpenBanditReplay",
]

CAMPAIGNS = ("all", "men", "women")
#: Display positions of the carousel (1-based in the data).
POSITIONS = 3
#: Prior strength (in impressions) pulling an (item, position) click rate to its position's.
PRIOR_IMPRESSIONS = 100.0
_USER_FEATURES = tuple(f"user_feature_{n}" for n in range(4))


@dataclass
class BanditLog:
    """One logged policy's rows, as arrays (one entry per impression)."""

    policy: str
    campaign: str
    timestamps: np.ndarray  # epoch ms
    items: np.ndarray  # item ids (str)
    positions: np.ndarray  # 1-based
    clicks: np.ndarray  # 0.0 / 1.0
    propensities: np.ndarray
    users: list[str]  # segment ids

    def __len__(self) -> int:
        return int(self.clicks.size)


def segment_of(features: list[str]) -> str:
    """A stable id for a combination of hashed user features.

    >>> segment_of(["a", "b", "c", "d"]) == segment_of(["a", "b", "c", "d"]) != segment_of(["a"])
    True
    """
    return "seg-" + hashlib.sha1("|".join(features).encode()).hexdigest()[:12]


def _dir(root: Path, policy: str, campaign: str) -> Path:
    if campaign not in CAMPAIGNS:
        raise ReplayError(f"--campaign must be one of {', '.join(CAMPAIGNS)}, not {campaign!r}")
    if not root.exists():
        raise FileNotFoundError(f"no such directory: {root}")
    if not root.is_dir():
        raise ReplayError(f"{root} is not a directory; --format open-bandit takes the dataset's "
                          "directory (the one holding random/ and bts/)")
    return root / policy / campaign


def log_path(root: str | Path, policy: str, campaign: str) -> Path:
    """``ROOT/<policy>/<campaign>/<campaign>.csv[.gz]``, the dataset's own layout."""
    folder = _dir(Path(root), policy, campaign)
    for name in (f"{campaign}.csv.gz", f"{campaign}.csv"):
        if (folder / name).exists():
            return folder / name
    raise ReplayError(f"no {policy} log for campaign {campaign!r}: expected {folder}/{campaign}.csv.gz "
                      "(the Open Bandit Dataset layout: random/ and bts/, each with all/, men/, women/)")


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        header = next(reader, None)
        if not header:
            raise ReplayError(f"{path} is empty")
        return header, [row for row in reader if row]


def _index(header: list[str], names: tuple[str, ...], path: Path) -> list[int]:
    missing = [n for n in names if n not in header]
    if missing:
        raise ReplayError(f"{path}: missing columns {', '.join(missing)} (is this the Open Bandit Dataset?)")
    return [header.index(n) for n in names]


def load_bandit_log(root: str | Path, policy: str, campaign: str, limit: int = 0) -> BanditLog:
    """Read ``policy``'s log for ``campaign`` (first ``limit`` rows if > 0), in time order."""
    path = log_path(root, policy, campaign)
    header, rows = _rows(path)
    if limit:
        rows = rows[:limit]
    cols = _index(header, ("timestamp", "item_id", "position", "click", "propensity_score",
                           *_USER_FEATURES), path)
    t, item, position, click, propensity = cols[:5]
    features = cols[5:]
    try:
        stamps = np.array([parse_time(r[t], "iso") for r in rows], dtype=np.int64)
        log = BanditLog(
            policy=policy, campaign=campaign, timestamps=stamps,
            items=np.array([r[item] for r in rows], dtype=str),
            positions=np.array([int(r[position]) for r in rows], dtype=np.int64),
            clicks=np.array([float(r[click]) for r in rows], dtype=float),
            propensities=np.array([float(r[propensity]) for r in rows], dtype=float),
            users=[segment_of([r[i] for i in features]) for r in rows])
    except (ValueError, IndexError) as exc:
        raise ReplayError(f"{path}: unreadable row ({exc})") from None
    if log.positions.size and (log.positions.min() < 1 or log.positions.max() > POSITIONS):
        raise ReplayError(f"{path}: positions must be 1..{POSITIONS}")
    order = np.argsort(log.timestamps, kind="stable")
    return BanditLog(policy, campaign, log.timestamps[order], log.items[order], log.positions[order],
                     log.clicks[order], log.propensities[order], [log.users[i] for i in order])


def load_item_context(root: str | Path, campaign: str, policy: str = "random") -> list[tuple[bytes, bytes]]:
    """``items`` records ``(key, value)`` from the campaign's ``item_context.csv.gz``.

    Categories: ``f1:``, ``f2:``, ``f3:`` + the first 8 characters of each hashed
    feature (the files hash them differently per policy: use the log's own), and the
    numeric ``item_feature_0`` as a quartile ``f0:q1``..``f0:q4``.
    """
    folder = _dir(Path(root), policy, campaign)
    path = folder / "item_context.csv.gz"
    if not path.exists():
        path = folder / "item_context.csv"
    if not path.exists():
        raise ReplayError(f"no item context: expected {folder}/item_context.csv.gz")
    header, rows = _rows(path)
    names = ("item_id", "item_feature_0", "item_feature_1", "item_feature_2", "item_feature_3")
    item, f0, *hashed = _index(header, names, path)
    try:
        numeric = np.array([float(r[f0]) for r in rows])
    except ValueError as exc:
        raise ReplayError(f"{path}: item_feature_0 is not numeric ({exc})") from None
    edges = np.quantile(numeric, [0.25, 0.5, 0.75]) if numeric.size else np.array([])
    quartile = np.searchsorted(edges, numeric, side="right") + 1
    records = []
    for row, q in zip(rows, quartile.tolist()):
        categories = [f"f{n}:{row[i][:8]}" for n, i in enumerate(hashed, 1)] + [f"f0:q{q}"]
        item_id = row[item]
        records.append((item_id.encode(), orjson.dumps({"item_id": item_id, "categories": categories})))
    return records


def reward_model(item_rows: np.ndarray, positions: np.ndarray, clicks: np.ndarray, n_items: int,
                 folds: int = 2, prior: float = PRIOR_IMPRESSIONS) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted click-rate tables for the doubly robust estimator.

    Row ``t`` belongs to fold ``t % folds``; the table for fold ``f`` is fitted on the
    other folds only: per (item, position), ``(clicks + prior * position_ctr) /
    (impressions + prior)``. Returns ``(tables, fold_of_row)``, ``tables`` shaped
    ``(folds, n_items, POSITIONS)``.

    >>> tables, fold = reward_model(np.array([0, 0, 1, 1]), np.array([1, 1, 1, 1]),
    ...                             np.array([1.0, 1.0, 0.0, 0.0]), n_items=2, prior=0.0)
    >>> tables[0, :, 0].tolist(), fold.tolist()  # fold 0 is fitted on rows 1 and 3
    ([1.0, 0.0], [0, 1, 0, 1])
    """
    n = clicks.size
    fold_of_row = np.arange(n) % folds
    tables = np.zeros((folds, n_items, POSITIONS))
    for f in range(folds):
        train = fold_of_row != f
        pos = positions[train] - 1
        shown = np.zeros((n_items, POSITIONS))
        clicked = np.zeros((n_items, POSITIONS))
        np.add.at(shown, (item_rows[train], pos), 1.0)
        np.add.at(clicked, (item_rows[train], pos), clicks[train])
        per_position = clicked.sum(axis=0) / np.maximum(shown.sum(axis=0), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            table = (clicked + prior * per_position) / (shown + prior)
        tables[f] = np.where(shown + prior > 0, table, per_position)
    return tables, fold_of_row


class OpenBanditReplay:
    """Replays the random log of a campaign through the pipeline and values its choices.

    ``run`` returns the JSON-ready result; ``choices`` then holds each strategy's item
    per row (``""`` where it had none) for plots and further analysis.
    """

    def __init__(self, root: str | Path, campaign: str = "all", settings: Settings | None = None,
                 *, seed: int = 0, limit: int = 0, level: float = 0.95) -> None:
        from streams.replay.prequential import replay_settings

        self.root = Path(root)
        self.campaign = campaign
        self.settings = settings if settings is not None else replay_settings(k=POSITIONS)
        self.level = level
        self.log = load_bandit_log(self.root, "random", campaign, limit)
        self.bts = load_bandit_log(self.root, "bts", campaign, limit)
        self.clock = EventClock()
        self.pipeline = Pipeline(self.settings, clock=self.clock)
        self.recommender = self.pipeline.recommender
        self.n_items = self.add_items(load_item_context(self.root, campaign))
        self.states: dict[str, dict] = {}
        self.rng = np.random.default_rng(seed)
        self.choices = {name: [""] * len(self.log) for name in STRATEGIES}
        self.rows_done = 0
        self._matched_clicks = 0
        self._matched = 0

    def add_items(self, records: list[tuple[bytes, bytes]]) -> int:
        applied = 0
        for offset, (key, value) in enumerate(records):
            applied += self.pipeline.apply_item(RawRecord("items", 0, offset, key, value))
        return applied

    @property
    def running_ctr(self) -> float | None:
        """The hybrid's replay estimate so far (``None`` before its first matched row)."""
        return self._matched_clicks / self._matched if self._matched else None

    def _slates(self, user: str, before: UserState) -> tuple[list[str], list[str], list[str]]:
        rec = self.recommender
        hybrid = [r.item_id for r in rec.recommend(user, before, {}, POSITIONS, personalized=True,
                                                      explain=False)]
        popular = [r.item_id for r in rec.recommend(user, before, {}, POSITIONS, personalized=False,
                                                       explain=False)]
        catalog = rec.catalog_
        rows = np.flatnonzero(rec.candidates(before, len(catalog)))
        picked = self.rng.choice(rows, size=min(POSITIONS, rows.size), replace=False) if rows.size else []
        return hybrid, popular, [catalog.item_id_at(r) for r in list(picked)]

    def step(self, t: int) -> None:
        log = self.log
        user, item, position = log.users[t], str(log.items[t]), int(log.positions[t])
        self.clock.now = int(log.timestamps[t])
        before = UserState.from_dict(self.states.get(user))
        for name, slate in zip(STRATEGIES, self._slates(user, before)):
            self.choices[name][t] = slate[position - 1] if len(slate) >= position else ""
        if self.choices["hybrid"][t] == item:
            self._matched += 1
            self._matched_clicks += int(log.clicks[t])
        if log.clicks[t] > 0:
            record = orjson.dumps({"event_id": f"obd-{self.campaign}-{t}", "user_id": user,
                                   "item_id": item, "event_type": "click",
                                   "timestamp": int(log.timestamps[t]),
                                   "context": {"position": str(position)}})
            outcome = self.pipeline.process_event(
                RawRecord("events", 0, t, user.encode(), record), self.states.get, lambda _: None)
            if outcome.applied:
                self.states[outcome.user_id] = outcome.state.to_dict()
        self.rows_done += 1

    def run(self, on_progress: Callable[["OpenBanditReplay", int], None] | None = None,
            progress_every: int = 250) -> dict[str, Any]:
        started = time.perf_counter()
        pending = 0
        for t in range(len(self.log)):
            self.step(t)
            pending += 1
            if on_progress is not None and pending >= progress_every:
                on_progress(self, pending)
                pending = 0
        if on_progress is not None and pending:
            on_progress(self, pending)
        return self.result(time.perf_counter() - started)

    def strategy(self, name: str, tables: np.ndarray, fold: np.ndarray,
                 index: dict[str, int]) -> dict[str, Any]:
        log, level, unit = self.log, self.level, (0.0, 1.0)
        chosen = np.array(self.choices[name], dtype=str)
        target = estimators.deterministic_probabilities(chosen, log.items)
        chosen_rows = np.array([index.get(c, -1) for c in chosen.tolist()], dtype=np.int64)
        logged_rows = np.array([index[i] for i in log.items.tolist()], dtype=np.int64)
        pos = log.positions - 1
        q_logged = tables[fold, logged_rows, pos]
        q_target = np.where(chosen_rows >= 0, tables[fold, np.maximum(chosen_rows, 0), pos], 0.0)
        estimates = {
            "replay": estimators.replay(chosen, log.items, log.clicks, level),
            "ips": estimators.ips(log.clicks, log.propensities, target, level, unit),
            "snips": estimators.snips(log.clicks, log.propensities, target, level, unit),
            "dr": estimators.doubly_robust(log.clicks, log.propensities, target, q_logged, q_target,
                                           level, unit),
        }
        matched = target > 0
        exposures = Counter(c for c in chosen.tolist() if c)
        headline = estimates["replay"].to_dict()
        return {
            "policy_ctr": headline["estimate"],
            "policy_ctr_ci": headline["ci"],
            "estimates": {k: v.to_dict() for k, v in estimates.items()},
            "matched": int(matched.sum()),
            "matched_clicks": int(log.clicks[matched].sum()),
            "coverage": metrics.catalog_coverage(exposures, self.n_items),
            "gini": metrics.exposure_gini(exposures, self.n_items),
        }

    def result(self, seconds: float = 0.0) -> dict[str, Any]:
        log = self.log
        catalog = self.recommender.catalog_
        index = {catalog.item_id_at(r): r for r in range(len(catalog))}
        unknown = sorted(set(log.items.tolist()) - set(index))
        if unknown:
            raise ReplayError(f"items {unknown[:5]} of the log are not in item_context.csv.gz")
        item_rows = np.array([index[i] for i in log.items.tolist()], dtype=np.int64)
        tables, fold = reward_model(item_rows, log.positions, log.clicks, len(catalog))
        random_ctr = estimators.proportion(log.clicks, self.level)
        bts_ctr = estimators.proportion(self.bts.clicks, self.level)
        per_strategy = {name: self.strategy(name, tables, fold, index) for name in STRATEGIES}
        for summary in per_strategy.values():
            value = summary["policy_ctr"]
            summary["relative_to_random"] = (value / random_ctr.value
                                             if value is not None and random_ctr.value > 0 else None)
        hybrid = per_strategy["hybrid"]
        return {
            "dataset": f"open-bandit/{self.campaign}",
            "format": "open-bandit",
            "campaign": self.campaign,
            "events": len(log),
            "clicks": int(log.clicks.sum()),
            "k": POSITIONS,
            "items": self.n_items,
            "segments": len(set(log.users)),
            "policy_ctr": hybrid["policy_ctr"],
            "policy_ctr_ci": hybrid["policy_ctr_ci"],
            "random_ctr": random_ctr.value,
            "random_ctr_ci": list(random_ctr.ci),
            "bts_ctr": bts_ctr.value,
            "bts_ctr_ci": list(bts_ctr.ci),
            "bts_events": len(self.bts),
            "relative_to_random": hybrid["relative_to_random"],
            "estimates": hybrid["estimates"],
            "matched": hybrid["matched"],
            "matched_clicks": hybrid["matched_clicks"],
            "metrics": hybrid,
            "baselines": {name: per_strategy[name] for name in STRATEGIES[1:]},
            "seconds": round(seconds, 3),
            "events_per_second": round(len(log) / seconds, 1) if seconds > 0 else None,
            "settings": settings_summary(self.settings),
        }
