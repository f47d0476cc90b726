"""The contract every learner keeps (in the spirit of River's ``river/checks``).

Each learner in ``streams.learners`` is driven through the same checks:

* ``learn_one`` returns ``None`` and does not mutate its inputs; scoring neither;
* scoring has no side effects: scoring between two learning steps changes nothing;
* a pickle round trip scores identically and keeps learning identically;
* the same seed (and the same events) gives the same results;
* adversarial inputs (huge, negative, NaN and infinite strengths; NaN, infinite and
  absurd timestamps; unknown items; malformed context) never produce NaN or infinity;
* memory stays within the documented bound after many users and items;
* ``forget_user`` (where a learner keeps per-user data) leaves the user's own scores
  equal to those of a user never seen.

A learner that does not keep a promise is marked ``xfail(strict=True)`` with the
reason, so the gap is visible and the marker must go once it is fixed.
"""

from __future__ import annotations

import copy
import pickle
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest

from streams.catalog import Catalog
from streams.learners import (
    BurstDetector,
    CategoryAffinity,
    ContextualFM,
    DecayedPopularity,
    ImplicitMF,
    ItemTransitions,
    KeyedPopularity,
    RatingBaseline,
    UserSegments,
)
from streams.records import ItemUpdate

T0 = 1_700_000_000_000
RECENT = ["i3", "i1", "i7"]


@dataclass
class Spec:
    name: str
    make: Callable[[Catalog, int], Any]
    score: Callable[[Any, str, int, dict], np.ndarray]
    per_user: bool
    make_small: Callable[[Catalog], Any] | None = None
    sizes: Callable[[Any], list[tuple[int, int]]] | None = None  # (size, bound) pairs
    gaps: dict[str, str] = field(default_factory=dict)  # check -> why it fails (xfail)


def _fm_sizes(fm: ContextualFM) -> list[tuple[int, int]]:
    users = sum(name.startswith("u:") for name in fm.model.latents)
    context = sum(name.startswith("x:") for name in fm.model.latents)
    return [(fm.n_users, 20), (users, 20), (context, 2 * (3 + 1))]


SPECS = [
    Spec(
        "DecayedPopularity",
        lambda c, s: DecayedPopularity(600.0, catalog=c),
        lambda m, u, n, x: m.score_all(n, x),
        per_user=False,
        make_small=lambda c: DecayedPopularity(600.0, catalog=c),
        sizes=lambda m: [(len(m._weights), 2 * len(m._catalog) + 64)],
    ),
    Spec(
        "CategoryAffinity",
        lambda c, s: CategoryAffinity(600.0, attributes=("brand",), catalog=c),
        lambda m, u, n, x: m.score_all(u, n, x),
        per_user=True,
        make_small=lambda c: CategoryAffinity(600.0, max_users=20, catalog=c),
        sizes=lambda m: [(len(m._users), 20), (m.n_users, 20)],
    ),
    Spec(
        "ImplicitMF",
        lambda c, s: ImplicitMF(n_factors=4, seed=s, catalog=c),
        lambda m, u, n, x: m.score_all(u, n),
        per_user=True,
        make_small=lambda c: ImplicitMF(n_factors=4, seed=0, catalog=c, max_users=20),
        sizes=lambda m: [(m.n_users, 20), (len(m._users), 20)],
    ),
    Spec(
        "ItemTransitions",
        lambda c, s: ItemTransitions(session_gap_s=3_600.0, catalog=c),
        lambda m, u, n, x: np.concatenate(
            [m.score_all(u, n, x=x), m.score_all(u, n, recent_items=RECENT, x=x)]
            + [m.score_all(u, n, recent_items=[f"i{j}"]) for j in range(40)]),  # all transitions
        per_user=True,
        make_small=lambda c: ItemTransitions(max_successors=4, max_items=10, max_users=20,
                                             session_gap_s=600.0, catalog=c),
        sizes=lambda m: [(m.n_users, 20), (len(m._successors), 10), (m.n_entries, 40)],
    ),
    Spec(
        "ContextualFM",
        lambda c, s: ContextualFM(n_factors=4, attributes=("brand",), seed=s, catalog=c),
        lambda m, u, n, x: m.score_all(u, n, x),
        per_user=True,
        make_small=lambda c: ContextualFM(n_factors=4, max_users=20, max_values_per_key=3,
                                          seed=0, catalog=c),
        sizes=_fm_sizes,
    ),
    Spec(
        "KeyedPopularity",
        lambda c, s: KeyedPopularity(600.0, catalog=c),
        lambda m, u, n, x: m.score_all(n, x),
        per_user=False,
        make_small=lambda c: KeyedPopularity(600.0, max_keys=5, max_items_per_key=4, catalog=c),
        sizes=lambda m: [(m.n_keys, 5)] + [(len(items), 4) for _, items in m._by_key.values()],
    ),
    Spec(
        "UserSegments",
        lambda c, s: UserSegments(n_segments=4, seed=s, catalog=c),
        lambda m, u, n, x: np.array(
            [_none(m.predict_one(u, x)), _none(m.segment_of(u)),
             *(m.features(u, x) or {}).values()], dtype=float),
        per_user=True,
        make_small=lambda c: UserSegments(n_segments=4, max_users=20, catalog=c),
        sizes=lambda m: [(m.n_users, 20), (len(m._segment), 20)],
    ),
    Spec(
        "RatingBaseline",
        lambda c, s: RatingBaseline(item_damping=1.0, user_damping=1.0),
        lambda m, u, n, x: np.array([_none(m.predict_one(u, f"i{i}", x)) for i in range(n)]),
        per_user=True,
        make_small=lambda c: RatingBaseline(max_users=20, max_items=30),
        sizes=lambda m: [(m.n_users, 20), (len(m._items), 30)],
    ),
    Spec(
        "BurstDetector",
        lambda c, s: BurstDetector(window_size=50, seed=s),
        lambda m, u, n, x: np.array(
            [m.score_one(u, "i0", x), m.is_anomalous(u, "i0", x),
             *m.features(u, "i0", x).values()], dtype=float),
        per_user=True,
        make_small=lambda c: BurstDetector(max_users=20, window_size=50),
        sizes=lambda m: [(m.n_users, 20)],
    ),
]


def _none(value: Any) -> float:
    return -1.0 if value is None else float(value)


def _param(spec: Spec, check: str) -> Any:
    gap = spec.gaps.get(check)
    marks = [pytest.mark.xfail(strict=True, reason=gap)] if gap else []
    return pytest.param(spec, id=spec.name, marks=marks)


def _specs(check: str) -> list:
    return [_param(spec, check) for spec in SPECS]


def _catalog(n_items: int = 40) -> Catalog:
    catalog = Catalog()
    for i in range(n_items):
        categories = (f"c{i % 5}",) if i % 4 else (f"c{i % 5}", "sale")
        brand = {"brand": f"b{i % 3}"}
        catalog.upsert(ItemUpdate(f"i{i}", categories=categories, attributes=brand))
    return catalog


def _events(seed: int = 0, n: int = 400, n_users: int = 12, n_items: int = 40) -> list:
    rng = random.Random(seed)
    events = []
    t = T0
    for _ in range(n):
        t += rng.randrange(500, 90_000)
        x = {"timestamp": t, "device": rng.choice(["ios", "android", "web"]),
             "page": rng.choice(["home", "pdp"]), "session": f"s{(t // 1_800_000) % 3}"}
        y = rng.choice([1.0, 1.5, 2.0, 3.0, -1.0])
        events.append((f"u{rng.randrange(n_users)}", f"i{rng.randrange(n_items)}", y, x))
    return events


_END = _events()[-1][3]["timestamp"]


def _train(spec: Spec, seed: int = 0, events: list | None = None) -> Any:
    learner = spec.make(_catalog(), seed)
    for user, item, y, x in events if events is not None else _events(seed):
        assert learner.learn_one(user, item, y, x) is None
    return learner


def _n_items(learner: Any) -> int:
    catalog = getattr(learner, "_catalog", None)  # DecayedPopularity has no catalog_ property
    return 40 if catalog is None else len(catalog)


def _score(spec: Spec, learner: Any, users: tuple[str, ...] = ("u1", "u5", "nobody")) -> list:
    """Scores of ``users`` a second after the default stream's last event."""
    x = {"timestamp": _END + 1_000, "device": "ios", "page": "home"}
    return [spec.score(learner, user, _n_items(learner) + 2, x) for user in users]


def _assert_same(first: list, second: list) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("spec", _specs("inputs"))
def test_learn_one_returns_none_and_inputs_are_not_mutated(spec):
    learner = spec.make(_catalog(), 0)
    for user, item, y, x in _events(n=150):
        frozen = copy.deepcopy(x)
        assert learner.learn_one(user, item, y, x) is None
        assert x == frozen
        spec.score(learner, user, 42, x)
        assert x == frozen
    assert RECENT == ["i3", "i1", "i7"]


@pytest.mark.parametrize("spec", _specs("side_effects"))
def test_scoring_has_no_side_effects(spec):
    events = _events()
    quiet, chatty = spec.make(_catalog(), 0), spec.make(_catalog(), 0)
    for k, (user, item, y, x) in enumerate(events):
        quiet.learn_one(user, item, y, x)
        chatty.learn_one(user, item, y, x)
        if k % 10 == 0:  # score a lot in between, including unknown users and items
            for who in (user, "stranger", "u3"):
                spec.score(chatty, who, 45, x)
            if hasattr(chatty, "predict_one"):
                args = (who, "never-seen-item", x) if spec.name != "UserSegments" else (who, x)
                chatty.predict_one(*args)
    everyone = tuple(f"u{i}" for i in range(12)) + ("stranger",)
    _assert_same(_score(spec, quiet, everyone), _score(spec, chatty, everyone))
    catalog = getattr(chatty, "_catalog", None)
    assert catalog is None or "never-seen-item" not in catalog


@pytest.mark.parametrize("spec", _specs("pickle"))
def test_pickle_round_trip_scores_and_learns_identically(spec):
    learner = _train(spec)
    clone = pickle.loads(pickle.dumps(learner))
    _assert_same(_score(spec, learner), _score(spec, clone))
    more = _events(seed=9, n=100)
    more = [(u, i, y, dict(x, timestamp=x["timestamp"] + _END - T0)) for u, i, y, x in more]
    for user, item, y, x in more:
        learner.learn_one(user, item, y, x)
        clone.learn_one(user, item, y, x)
    _assert_same(_score(spec, learner), _score(spec, clone))


@pytest.mark.parametrize("spec", _specs("seed"))
def test_same_seed_same_results(spec):
    _assert_same(_score(spec, _train(spec, seed=3)), _score(spec, _train(spec, seed=3)))


ADVERSARIAL_Y = [1e308, -1e308, float("nan"), float("inf"), float("-inf"), 0.0, -5.0, 1e-300, 3.0]
ADVERSARIAL_T = [float("nan"), float("inf"), float("-inf"), -1e15, 1e15, 0.0, None]
ADVERSARIAL_X = [
    {}, None, {"device": ""}, {"timezone": "Mars/Olympus", "local_hour": "99"},
    {"tz_offset_min": "nan", "device": "x" * 10_000}, {"session": None, "page": None},
]


@pytest.mark.parametrize("spec", _specs("adversarial"))
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # River's own steps may overflow
def test_no_nan_or_inf_after_adversarial_inputs(spec):
    learner = _train(spec)
    rng = random.Random(5)
    for _ in range(300):
        extra = rng.choice(ADVERSARIAL_X)
        x = None if extra is None else dict(extra)
        t = rng.choice(ADVERSARIAL_T)
        if x is not None and t is not None:
            x["timestamp"] = t
        item = rng.choice(["i1", "i2", "brand-new", "", "i39"])
        learner.learn_one(f"u{rng.randrange(4)}", item, rng.choice(ADVERSARIAL_Y), x)
    for scores in _score(spec, learner, ("u0", "u1", "u2", "u3", "nobody")):
        assert np.isfinite(scores).all()
    for x in ({"timestamp": float("nan")}, {"timestamp": 1e15}, None, {"local_hour": "25"}):
        assert np.isfinite(spec.score(learner, "u1", _n_items(learner), x or {})).all()


@pytest.mark.parametrize("spec", _specs("memory"))
def test_memory_stays_within_the_documented_bound(spec):
    catalog = _catalog(300)
    learner = spec.make_small(catalog)
    rng = random.Random(1)
    t = T0
    for k in range(3_000):
        t += rng.randrange(1, 2_000)
        x = {"timestamp": t, "device": f"d{rng.randrange(9)}", "page": f"p{rng.randrange(50)}",
             "segment": str(rng.randrange(30))}
        learner.learn_one(f"user{k}", f"i{rng.randrange(300)}", 1.0, x)
    for size, bound in spec.sizes(learner):
        assert size <= bound


@pytest.mark.parametrize("spec", [_param(s, "forget") for s in SPECS if s.per_user])
def test_forget_user_leaves_scores_equal_to_a_stranger(spec):
    learner = _train(spec)
    user = "u1"
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(_score(spec, learner, (user,)), _score(spec, learner, ("stranger",)),
                        strict=True)
    ), "the user should have influenced their own scores before being forgotten"
    learner.forget_user(user)
    _assert_same(_score(spec, learner, (user,)), _score(spec, learner, ("stranger",)))


def test_every_exported_learner_is_under_contract():
    import streams.learners as learners

    assert {spec.name for spec in SPECS} == set(learners.__all__)
