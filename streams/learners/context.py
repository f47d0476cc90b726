"""Context-aware factorization machine: what a user engages with *here and now*.

Why it exists: matrix factorization learns one taste per user and content affinity one
profile per user, whatever the moment; popularity knows the moment but not the user.
Behaviour depends on the moment, though: the same shopper browses dresses on their
phone in the evening and office supplies on a desktop at 10 am, and everyone buys
coffee in the morning. A factorization machine (Rendle, 2010) learns a latent vector
for *every* feature -- the user, the item, the item's categories and attributes, the
device, the page, the local hour, daypart and weekday -- and scores an interaction
with all their pairwise dot products, so "mobile x evening x dresses" is learned from
every event that shares any two of those, and a new item or a new user is scored
through the features it has.

The model is River's :class:`river.facto.FMRegressor` (plain SGD, gradient clipping,
L2), predicting engagement: the event's strength clipped to ``[0, max_target]``, by
default 1 for any positive event (see ``max_target`` for why). Implicit logs
only hold positives, so every positive is learned together with ``n_negatives`` catalog
items drawn uniformly and learned with target 0 *in the same context*, as
:class:`~streams.learners.ImplicitMF` does; an explicit negative is learned as 0.

River's per-step cost is dominated by Python loops over feature pairs (about 160 us
per step with 8 features here), so the learner uses a subclass that computes the same
interaction sum and latent gradient with numpy (about 45 us; same math, equal to the
stock model's predictions up to float rounding). ``FFMRegressor`` (field-aware) was
measured at about 610 us per step: too slow for the per-event path. An event costs
``1 + n_negatives`` steps.

Scoring the catalog item by item through River would be a Python loop (and River's
``predict_one`` creates random latents for unseen features). The learner mirrors the
item-side parameters in numpy arrays aligned with the shared catalog -- each item's
weight ``w_i`` and latent vector ``v_i``, and a table of category/attribute ("group")
weights and vectors -- refreshed for the features each step touched. Items with the
same categories and attributes share a *signature*; with ``u`` the sum of the
user-side vectors (user, context, time) and ``S`` the sum of a signature's group
vectors, the FM equation splits into

    y(i) = C(user, context) + w_i + <v_i, u> + <v_i, S> + <u, S> + B(signature)

where ``C`` is the same for every item and ``B`` (group weights and the pairwise terms
among the item's groups) depends on the signature only. ``S``, ``B`` and ``<v_i, S>``
do not depend on the user: they are cached and recomputed, before a ranking, only for
the groups and items that learning changed since the previous one (see
``_refresh``). :meth:`ContextualFM.score_all` then costs a matrix-vector product over
the items, one over the signatures and a few gathers; :meth:`ContextualFM.score_rows`
computes a given set of rows directly (O(rows): re-ranking candidates of a large
catalog). Features the model has never learned count as absent (0), so an unknown
user gets the context and item terms only, and an item never learned is scored by its
categories.

Divergence guard: after every step each touched feature is checked; a weight or latent
vector that is non-finite or beyond ``1e6`` is dropped (River re-initializes it on
next use) and counted in :attr:`ContextualFM.n_resets`, as is a non-finite intercept
(reset to 0). Scores are never NaN or infinite.

Memory bound: user parameters (one weight and one vector per user) are evicted when the
user has not been seen for ``user_ttl_s`` of event time or when more than
``max_users`` users are held (least recently seen first). Context values are capped
at ``max_values_per_key`` distinct values per key (later values share one
``<other>`` feature); time features are bounded by definition (24 + 4 + 7). Item,
category and attribute parameters are bounded by the catalog (one each per item row,
category and attribute value).
"""

from __future__ import annotations

import math
import random
import typing

import numpy as np
from river import facto, optim

from streams.catalog import Catalog
from streams.learners._common import Recency, clipped_strength, daypart, grown, time_context
from streams.learners.base import event_time

__all__ = ["ContextualFM"]

#: Parameters beyond this magnitude are treated as diverged.
_MAX_ABS = 1e6
_OTHER = "<other>"


class _VectorizedFM(facto.FMRegressor):
    """River's ``FMRegressor`` with the pairwise sum and latent update done in numpy.

    Same equations as ``river.facto.fm.FM``: ``sum_{j<j'} <v_j, v_j'> x_j x_j'`` is
    computed as ``(||sum_j x_j v_j||^2 - sum_j x_j^2 ||v_j||^2) / 2``, and the latent
    gradient of every feature from that same sum. With plain SGD (what
    :class:`ContextualFM` uses) the step of all features is one array operation;
    any other optimizer gets River's per-feature ``step``. Within one ``learn_one``
    the stacked latents of the prediction are reused by the update (River changes only
    the linear weights in between). After each update, ``diverged`` names the
    features whose new latent vector is non-finite or beyond ``_MAX_ABS``.
    """

    _stacked: tuple | None = None
    diverged: tuple = ()

    def _stack(self, x: dict) -> tuple:
        stacked = self._stacked
        if stacked is not None and stacked[0] is x:
            self._stacked = None
            return stacked[1:]
        latents = self.latents
        vectors = np.array([latents[j] for j in x])
        values = np.fromiter(x.values(), dtype=np.float64, count=len(x))
        return vectors, values, values @ vectors

    def _calculate_interactions(self, x: dict) -> float:
        vectors, values, total = self._stack(x)
        self._stacked = (x, vectors, values, total)
        squares = (values * values) @ np.einsum("ij,ij->i", vectors, vectors)
        return 0.5 * float(total @ total - squares)

    def _update_latents(self, x: dict, g_loss: float) -> None:
        latents, l1, l2 = self.latents, self.l1_latent, self.l2_latent
        vectors, values, total = self._stack(x)
        gradients = g_loss * (values[:, None] * total - vectors * (values * values)[:, None])
        gradients += l2 * vectors
        if l1:
            gradients += l1 * np.sign(vectors)
        optimizer = self.latent_optimizer
        if type(optimizer) is optim.SGD:  # its step, for every feature at once
            vectors = vectors - optimizer.learning_rate * gradients
            optimizer.n_iterations += len(x)
            for j, vector in zip(x, vectors):
                latents[j] = vector
        else:
            steps = zip(vectors, gradients, strict=True)
            vectors = np.array([optimizer.step(w=v.copy(), g=g) for v, g in steps])
            for j, vector in zip(x, vectors):
                latents[j] = vector
        if np.abs(vectors).max() < _MAX_ABS:  # NaN fails the test too
            self.diverged = ()
        else:
            bad = ~(np.abs(vectors).max(axis=1) < _MAX_ABS)
            self.diverged = tuple(j for j, b in zip(x, bad) if b)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_stacked", None)
        return state


class ContextualFM:
    """A factorization machine over user, item, item features and the event's context.

    Parameters
    ----------
    n_factors
        Dimension of every feature's latent vector.
    n_negatives
        Catalog items learned with target 0 (in the same context) per positive event.
    learning_rate
        SGD step size of weights, latents and intercept.
    l2
        L2 regularization of weights and latents.
    max_target
        Event strengths are clipped to ``[0, max_target]`` and used as the target. The
        default, 1, learns "engaged or not" (every positive event type is a 1): on the
        planted context test in ``tests/unit/test_learners_context.py`` raw strengths
        (1 to 3) as targets made learning noisy -- over 5 seeds the worst top-10 share of
        the planted category was 0.0-0.6 with strengths and 1.0 with 1 -- so strength is
        left to the other learners (popularity, MF, content) and the FM learns *where
        and when* people engage.
    clip_gradient
        Bound on the absolute loss gradient of one step.
    context_keys
        Keys of ``x`` learned as categorical context features, e.g. ``device``, ``page``.
    time_features
        Which of ``"hour"``, ``"daypart"``, ``"weekday"`` to derive from the event time
        (local to ``x["timezone"]``/``x["tz_offset_min"]``/``x["local_hour"]``, else UTC).
    attributes
        Item attributes (e.g. ``("brand",)``) learned as item features besides categories.
    max_values_per_key
        Distinct values learned per context key; later ones share an ``<other>`` feature.
    max_users, user_ttl_s
        Users held at most, and how long (event time) an inactive user is kept.
    seed
        Seeds the latent initialization and the negative sampling.
    catalog
        The item index that rows are aligned with; a private one is created if omitted.

    Examples
    --------
    >>> from streams.records import ItemUpdate
    >>> catalog = Catalog()
    >>> for item, category in [("latte", "coffee"), ("espresso", "coffee"),
    ...                        ("merlot", "wine"), ("rioja", "wine")]:
    ...     _ = catalog.upsert(ItemUpdate(item, categories=(category,)))
    >>> fm = ContextualFM(n_factors=4, seed=1, catalog=catalog)
    >>> morning, evening = 1_700_035_200_000, 1_700_074_800_000  # 08:00 and 19:00 UTC
    >>> for day in range(100):
    ...     t = day * 86_400_000
    ...     fm.learn_one(f"u{day}", "latte", 1.0, {"timestamp": morning + t})
    ...     fm.learn_one(f"v{day}", "merlot", 1.0, {"timestamp": evening + t})
    >>> def best(x):  # a new user: ranked by context and item features alone
    ...     return catalog.item_id_at(int(fm.score_all("new", 4, x).argmax()))
    >>> best({"timestamp": morning}), best({"timestamp": evening})
    ('latte', 'merlot')
    >>> fm.score_all("new", 4, {"timestamp": evening}).shape, fm.n_resets
    ((4,), 0)
    """

    def __init__(
        self,
        n_factors: int = 8,
        n_negatives: int = 2,
        learning_rate: float = 0.01,
        l2: float = 1e-4,
        max_target: float = 1.0,
        clip_gradient: float = 10.0,
        context_keys: typing.Sequence[str] = ("device", "page"),
        time_features: typing.Sequence[str] = ("hour", "daypart", "weekday"),
        attributes: typing.Sequence[str] = (),
        max_values_per_key: int = 64,
        max_users: int = 200_000,
        user_ttl_s: float = 30 * 86_400.0,
        seed: int | None = 42,
        catalog: Catalog | None = None,
    ) -> None:
        unknown = set(time_features) - {"hour", "daypart", "weekday"}
        if unknown:
            raise ValueError(f"unknown time features: {sorted(unknown)}")
        if n_factors < 1 or n_negatives < 0 or max_users < 1 or max_values_per_key < 1:
            raise ValueError("n_factors, max_users, max_values_per_key >= 1 and n_negatives >= 0")
        if not (learning_rate > 0 and max_target > 0 and user_ttl_s > 0):
            raise ValueError("learning_rate, max_target and user_ttl_s must be positive")
        self.n_factors = n_factors
        self.n_negatives = n_negatives
        self.learning_rate = learning_rate
        self.l2 = l2
        self.max_target = max_target
        self.clip_gradient = clip_gradient
        self.context_keys = tuple(context_keys)
        self.time_features = tuple(time_features)
        self.attributes = tuple(attributes)
        self.max_values_per_key = max_values_per_key
        self.max_users = max_users
        self.user_ttl_s = user_ttl_s
        self.seed = seed
        self.catalog = catalog
        self._catalog = Catalog() if catalog is None else catalog
        self._model = _VectorizedFM(
            n_factors=n_factors,
            weight_optimizer=optim.SGD(learning_rate),
            latent_optimizer=optim.SGD(learning_rate),
            l2_weight=l2,
            l2_latent=l2,
            intercept_lr=learning_rate,
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            clip_gradient=clip_gradient,
            seed=seed,
        )
        self._rng = random.Random(seed)
        # Item-id parameters mirrored per catalog row (rows never learned stay 0), with
        # each latent vector's squared norm.
        self._item_w = np.zeros(64, dtype=np.float64)
        self._item_v = np.zeros((64, n_factors), dtype=np.float64)
        self._item_sq = np.zeros(64, dtype=np.float64)
        # Category/attribute ("group") vocabulary and mirrored parameters. The arrays
        # always keep at least one spare zero row at the end: padding id -1 reads it.
        self._group_id: dict[str, int] = {}
        self._group_name: list[str] = []
        self._group_w = np.zeros(16, dtype=np.float64)
        self._group_v = np.zeros((16, n_factors), dtype=np.float64)
        # Per indexed row: its item-side features (a cache of the catalog) and its
        # "signature": the id of its tuple of (group, value) pairs. Items sharing
        # categories and attributes share a signature, so the group terms are computed
        # once per signature, not once per item.
        self._item_features: list[dict[str, float]] = []
        self._item_sig = np.zeros(64, dtype=np.intp)
        self._sig_id: dict[tuple, int] = {(): 0}
        self._sig_groups = np.full((16, 1), -1, dtype=np.intp)  # -1: padding
        self._sig_x = np.zeros((16, 1), dtype=np.float64)
        self._group_sigs: list[list[int]] = []  # the signatures of each group
        self._group_sig_arrays: dict[int, np.ndarray] = {}  # the same, as arrays (a cache)
        # Caches derived from the mirrors, brought up to date lazily (before scoring)
        # for what changed since: per signature, the summed group vector S and its
        # user-independent bias; per row, <v_i, S>. See _item_scores.
        self._sig_vec = np.zeros((16, n_factors), dtype=np.float64)
        self._sig_bias = np.zeros(16, dtype=np.float64)
        self._item_cross = np.zeros(64, dtype=np.float64)
        self._stale_groups: set[int] = set()
        self._stale_sigs: set[int] = {0}
        self._stale_rows: set[int] = set()
        self._n_indexed = 0
        self._context_values: dict[str, set[str]] = {}
        self._users = Recency()
        self._clock: float | None = None
        self._n_resets = 0
        self._n_learned = 0

    # -- learned state, read-only -----------------------------------------------------

    @property
    def catalog_(self) -> Catalog:
        return self._catalog

    @property
    def model(self) -> facto.FMRegressor:
        """The wrapped River model (a vectorized ``FMRegressor``)."""
        return self._model

    @property
    def n_resets(self) -> int:
        """Parameter sets (feature weight+latents, or the intercept) reset after diverging."""
        return self._n_resets

    @property
    def n_learned(self) -> int:
        return self._n_learned

    @property
    def n_users(self) -> int:
        """Users with parameters: at most ``max_users``."""
        return len(self._users)

    def knows_user(self, user: typing.Hashable) -> bool:
        return _user_feature(user) in self._model.latents

    def forget_user(self, user: typing.Hashable) -> None:
        """Erase the user's weight and latent vector (privacy: forget-a-user).

        Item, category and context parameters keep what they learned in aggregate.
        """
        self._drop(_user_feature(user))
        self._users.discard(user)

    # -- features -----------------------------------------------------------------------

    def features(self, user: typing.Hashable | None, item: str | None, x: dict | None) -> dict:
        """The FM's input for ``user`` (``None``: none) and ``item`` in context ``x``.

        Keys are feature names (``"u:<user>"``, ``"i:<item>"``, ``"c:<category>"``,
        ``"a:<attribute>=<value>"``, ``"x:<key>=<value>"``, ``"t:<hour|daypart|weekday>=..."``)
        and values their weights; River reads it as is (no string values).

        >>> fm = ContextualFM(context_keys=("device",), time_features=("daypart",))
        >>> fm.features("ann", "boot", {"timestamp": 1_700_074_800_000, "device": "ios"})
        {'u:ann': 1.0, 'x:device=ios': 1.0, 't:daypart=evening': 1.0, 'i:boot': 1.0}
        """
        features = self._user_side(user, x, learning=False)
        if item is not None:
            features.update(self._item_side(item))
        return features

    def _user_side(self, user: typing.Hashable | None, x: dict | None, learning: bool) -> dict:
        features: dict[str, float] = {}
        if user is not None:
            features[_user_feature(user)] = 1.0
        x = x or {}
        for key in self.context_keys:
            value = x.get(key)
            if value is None:
                continue
            value = str(value)
            seen = self._context_values.get(key)
            if seen is None or value not in seen:
                if seen is not None and len(seen) >= self.max_values_per_key:
                    value = _OTHER
                elif learning:
                    self._context_values.setdefault(key, set()).add(value)
            features[f"x:{key}={value}"] = 1.0
        if self.time_features:
            when = time_context(x, event_time(x))
            if when is not None:
                hour, weekday = when
                if "hour" in self.time_features:
                    features[f"t:hour={hour}"] = 1.0
                if "daypart" in self.time_features:
                    features[f"t:daypart={daypart(hour)}"] = 1.0
                if "weekday" in self.time_features:
                    features[f"t:weekday={weekday}"] = 1.0
        return features

    def _item_side(self, item: str, row: int | None = None) -> dict:
        row = self._catalog.index_of(item) if row is None else row
        if row is not None and row < self._n_indexed:
            return self._item_features[row]
        features = {f"i:{item}": 1.0}
        features.update(self._group_names_of(item))
        return features

    def _group_names_of(self, item: str) -> list[tuple[str, float]]:
        categories = list(dict.fromkeys(self._catalog.categories_of(item)))
        names = [(f"c:{c}", 1.0 / len(categories)) for c in categories]
        if self.attributes:
            values = self._catalog.attributes_of(item)
            names += [(f"a:{a}={values[a]}", 1.0) for a in self.attributes if a in values]
        return names

    # -- catalog -------------------------------------------------------------------------

    def index_item(self, item_id: str) -> None:
        """Re-read ``item_id``'s categories and attributes (after the catalog changed them)."""
        row = self._catalog.index_of(item_id)
        if row is None:
            return
        if row >= self._n_indexed:
            self._sync(row + 1)
        else:
            self._index_row(row)

    def _sync(self, n_rows: int) -> None:
        """Index catalog rows up to ``n_rows`` (a cache of the catalog: each row read once)."""
        n_rows = min(n_rows, len(self._catalog))
        if n_rows <= self._n_indexed:
            return
        self._ensure_rows(n_rows)
        for row in range(self._n_indexed, n_rows):
            self._item_features.append({})
            self._index_row(row)
        self._n_indexed = n_rows

    def _ensure_rows(self, n_rows: int) -> None:
        if n_rows > len(self._item_w):
            self._item_w = grown(self._item_w, n_rows)
            self._item_v = grown(self._item_v, n_rows)
            self._item_sq = grown(self._item_sq, n_rows)
        if n_rows > len(self._item_sig):
            self._item_sig = grown(self._item_sig, n_rows)
            self._item_cross = grown(self._item_cross, n_rows)

    def _index_row(self, row: int) -> None:
        item = self._catalog.item_id_at(row)
        groups = self._group_names_of(item)
        features = {f"i:{item}": 1.0}
        features.update(groups)
        self._item_features[row] = features
        key = tuple((self._group(name), value) for name, value in groups)
        sig = self._sig_id.get(key)
        if sig is None:
            sig = self._sig_id[key] = len(self._sig_id)
            if sig >= len(self._sig_groups):
                old = len(self._sig_groups)
                self._sig_groups = grown(self._sig_groups, sig + 1)
                self._sig_groups[old:] = -1
                self._sig_x = grown(self._sig_x, sig + 1)
                self._sig_vec = grown(self._sig_vec, sig + 1)
                self._sig_bias = grown(self._sig_bias, sig + 1)
            for gid, _ in key:
                self._group_sigs[gid].append(sig)
                self._group_sig_arrays.pop(gid, None)
            self._stale_sigs.add(sig)
            width = self._sig_groups.shape[1]
            if len(key) > width:  # a wider item: widen
                extra = len(key) - width
                self._sig_groups = np.hstack(
                    [self._sig_groups, np.full((len(self._sig_groups), extra), -1, np.intp)])
                self._sig_x = np.hstack([self._sig_x, np.zeros((len(self._sig_x), extra))])
            for slot, (gid, value) in enumerate(key):
                self._sig_groups[sig, slot] = gid
                self._sig_x[sig, slot] = value
        self._item_sig[row] = sig
        self._stale_rows.add(row)

    def _group(self, name: str) -> int:
        gid = self._group_id.get(name)
        if gid is None:
            gid = self._group_id[name] = len(self._group_name)
            self._group_name.append(name)
            self._group_sigs.append([])
            if len(self._group_name) >= len(self._group_w) - 1:  # keep a spare zero row
                self._group_w = grown(self._group_w, len(self._group_name) + 2)
                self._group_v = grown(self._group_v, len(self._group_name) + 2)
            self._mirror_group(name, gid)
        return gid

    # -- learning -----------------------------------------------------------------------

    def learn_one(
        self, user: typing.Hashable, item: str, y: float = 1.0, x: dict | None = None
    ) -> None:
        """Learn one interaction of ``user`` with ``item`` in context ``x``.

        ``x`` holds ``"timestamp"`` (epoch ms) and the context keys (e.g. the event's
        context dict merged in). ``y > 0`` is a positive of that strength (clipped to
        ``max_target``), learned with ``n_negatives`` sampled negatives; ``y <= 0`` an
        explicit negative (target 0). A non-finite ``y`` is ignored.
        """
        y = clipped_strength(y, self.max_target)
        if y is None:
            return
        t = event_time(x)
        if t is not None and (self._clock is None or t > self._clock):
            self._clock = t
        row = self._catalog.ensure(item)
        self._sync(row + 1)
        user_side = self._user_side(user, x, learning=True)
        self._step(user_side, row, max(y, 0.0))
        n_rows = len(self._catalog)
        if y > 0.0 and n_rows > 1:
            for _ in range(self.n_negatives):
                negative = self._rng.randrange(n_rows)
                if negative != row:
                    self._sync(negative + 1)
                    self._step(user_side, negative, 0.0)
        self._users.touch(user, t if t is not None else (self._clock or 0.0))
        ttl_ms = self.user_ttl_s * 1_000.0
        for gone in self._users.evict(self.max_users, ttl_ms, self._clock):
            self._drop(_user_feature(gone))
        self._n_learned += 1

    def _step(self, user_side: dict, row: int, target: float) -> None:
        model = self._model
        x = dict(user_side)
        item_side = self._item_features[row]
        x.update(item_side)
        model.learn_one(x, target)
        if not math.isfinite(model.intercept) or abs(model.intercept) > _MAX_ABS:
            model.intercept = 0.0
            self._n_resets += 1
        weights = model.weights
        diverged = set(model.diverged)
        diverged.update(j for j in x if not abs(weights[j]) < _MAX_ABS)  # NaN fails too
        for j in diverged:
            self._drop(j)
            self._n_resets += 1
        for j in item_side:
            if j[0] == "i":
                self._mirror_item(j, row)
            else:
                self._mirror_group(j, self._group(j))

    def _drop(self, name: str) -> None:
        """Forget a feature's parameters: River re-initializes them on next use."""
        self._model.weights.pop(name, None)
        self._model.latents.pop(name, None)

    def _mirror_item(self, name: str, row: int) -> None:
        latents = self._model.latents.get(name)
        self._item_w[row] = self._model.weights.get(name, 0.0)
        if latents is None:
            self._item_v[row] = 0.0
            self._item_sq[row] = 0.0
        else:
            self._item_v[row] = latents
            self._item_sq[row] = latents @ latents
        self._stale_rows.add(row)

    def _mirror_group(self, name: str, gid: int) -> None:
        latents = self._model.latents.get(name)
        self._group_w[gid] = self._model.weights.get(name, 0.0)
        self._group_v[gid] = 0.0 if latents is None else latents
        self._stale_groups.add(gid)

    # -- prediction (no side effects on what was learned) ----------------------------------

    def score_all(self, user: typing.Hashable, n_items: int, x: dict | None = None) -> np.ndarray:
        """Predicted engagement of catalog rows ``0 .. n_items - 1`` for ``user`` in
        context ``x`` (``{"timestamp": ms, **context}``), vectorized and finite.

        Equal to River's ``predict_one`` on the same features when all of them have been
        learned; features never learned count as absent. Rows past the catalog score the
        neutral value (the terms shared by every item).
        """
        self._sync(n_items)
        constant, user_vector = self._user_terms(user, x)
        if not math.isfinite(constant):
            constant = 0.0
        scores = np.full(n_items, constant, dtype=np.float64)
        filled = min(n_items, self._n_indexed)
        if filled:
            with np.errstate(over="ignore", invalid="ignore"):
                self._item_scores(filled, user_vector, out=scores[:filled])
            bad = ~np.isfinite(scores)
            if bad.any():
                scores[bad] = constant
        return scores

    def score_rows(
        self, user: typing.Hashable, rows: typing.Sequence[int] | np.ndarray, x: dict | None = None
    ) -> np.ndarray:
        """Scores of the given catalog rows only, computed directly (no catalog-wide cache).

        Equal to ``score_all(...)[rows]``; costs O(len(rows)), so re-ranking a few hundred
        candidates of a large catalog is much cheaper than :meth:`score_all`. Rows past
        the catalog score the neutral value.
        """
        rows = np.asarray(rows, dtype=np.intp)
        self._sync(int(rows.max()) + 1 if len(rows) else 0)
        constant, user_vector = self._user_terms(user, x)
        if not math.isfinite(constant):
            constant = 0.0
        scores = np.full(len(rows), constant, dtype=np.float64)
        inside = rows < self._n_indexed
        if inside.any():
            index = rows[inside]
            sig = self._item_sig[index]
            groups, values = self._sig_groups[sig], self._sig_x[sig]
            group_v = self._group_v[groups]  # -1 (padding) reads the spare zero row
            totals = self._item_v[index] + np.einsum("rm,rmk->rk", values, group_v)
            own = self._item_sq[index] + (
                values * values * np.einsum("rmk,rmk->rm", group_v, group_v)).sum(axis=1)
            with np.errstate(over="ignore", invalid="ignore"):  # sanitized below
                part = self._item_w[index] + (values * self._group_w[groups]).sum(axis=1)
                part += totals @ user_vector
                part += 0.5 * (np.einsum("rk,rk->r", totals, totals) - own)
            scores[inside] += part
            bad = ~np.isfinite(scores)
            if bad.any():
                scores[bad] = constant
        return scores

    def predict_one(self, user: typing.Hashable, item: str, x: dict | None = None) -> float:
        """One item's score, as in :meth:`score_all`; an unknown item gets the neutral value."""
        row = self._catalog.index_of(item)
        if row is None:
            constant, _ = self._user_terms(user, x)
            return constant if math.isfinite(constant) else 0.0
        return float(self.score_rows(user, [row], x)[0])

    def explain(
        self, user: typing.Hashable, item: str, x: dict | None = None
    ) -> list[tuple[str, float]]:
        """Contribution of each user-side feature (user, context, time) to ``item``'s score.

        The pairwise term ``<v_f, T_item>`` of every learned user-side feature ``f`` plus
        its own weight, largest first: the evidence for "popular on mobile this evening".

        >>> fm = ContextualFM(n_factors=2, context_keys=("device",), time_features=())
        >>> fm.learn_one("ann", "boot", 1.0, {"device": "ios"})
        >>> sorted(name for name, _ in fm.explain("ann", "boot", {"device": "ios"}))
        ['u:ann', 'x:device=ios']
        >>> fm.explain("ann", "unknown-item", {"device": "ios"})
        []
        """
        row = self._catalog.index_of(item)
        if row is None:
            return []
        self._sync(row + 1)
        sig = self._item_sig[row]
        item_vector = self._item_v[row] + self._sig_x[sig] @ self._group_v[self._sig_groups[sig]]
        contributions = []
        for name, value in self._user_side(user, x, learning=False).items():
            latents = self._model.latents.get(name)
            if latents is None:
                continue
            weight = self._model.weights.get(name, 0.0)
            contributions.append((name, float(value * (weight + latents @ item_vector))))
        return sorted(contributions, key=lambda p: -p[1])

    # -- internals ------------------------------------------------------------------------

    def _user_terms(self, user: typing.Hashable, x: dict | None) -> tuple[float, np.ndarray]:
        """The item-independent part of the score and the summed user-side vector."""
        model = self._model
        constant = float(model.intercept)
        total = np.zeros(self.n_factors, dtype=np.float64)
        squares = 0.0
        for name, value in self._user_side(user, x, learning=False).items():
            latents = model.latents.get(name)  # .get: never creates a feature
            if latents is None:
                continue
            constant += value * model.weights.get(name, 0.0)
            total += value * latents
            squares += value * value * float(latents @ latents)
        constant += 0.5 * (float(total @ total) - squares)
        return constant, total

    def _item_scores(self, n: int, user_vector: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Add the item-dependent part of the FM score of rows ``< n`` to ``out``.

        With ``S`` the sum of an item's group vectors (``x_s G_s``, shared by every item
        of the same signature) and ``v_i``, ``w_i`` its own parameters, the terms are

            w_i + <v_i, u> + <v_i, S> + [<u, S> + sum_s x_s w_s
                                         + (||S||^2 - sum_s x_s^2 ||G_s||^2) / 2]

        ``<v_i, S>`` and the user-independent part of the bracket are cached (see
        :meth:`_refresh`), so a call costs one matrix-vector product over the items,
        one over the signatures and a few gathers and sums.
        """
        self._refresh()
        n_sigs = len(self._sig_id)
        sig_total = self._sig_vec[:n_sigs] @ user_vector
        sig_total += self._sig_bias[:n_sigs]
        one_d = self._work(n)
        out += self._item_w[:n]
        out += self._item_cross[:n]
        np.matmul(self._item_v[:n], user_vector, out=one_d)
        out += one_d
        sig_total.take(self._item_sig[:n], out=one_d)
        out += one_d
        return out

    def _refresh(self) -> None:
        """Recompute the cached signature terms and item cross terms that went stale.

        A group whose parameters changed makes its signatures stale, a stale
        signature its rows; an item whose own vector changed its row. Between two
        rankings a few events touch a few groups, so this is usually a small part of
        the catalog; it never costs more than recomputing everything.
        """
        n_sigs, n_rows = len(self._sig_id), self._n_indexed
        stale = [np.fromiter(self._stale_sigs, dtype=np.intp, count=len(self._stale_sigs))]
        for gid in self._stale_groups:
            array = self._group_sig_arrays.get(gid)
            if array is None:
                array = self._group_sig_arrays[gid] = np.array(self._group_sigs[gid], np.intp)
            stale.append(array)
        sigs = np.unique(np.concatenate(stale))
        rows = np.fromiter(self._stale_rows, dtype=np.intp, count=len(self._stale_rows))
        self._stale_groups, self._stale_sigs, self._stale_rows = set(), set(), set()
        if len(sigs) == 0 and len(rows) == 0:
            return
        everything = 2 * len(sigs) > n_sigs
        if everything:
            sigs = np.arange(n_sigs)
        if len(sigs):
            groups, x = self._sig_groups[sigs], self._sig_x[sigs]
            group_v = self._group_v[groups]  # -1 (padding) reads the spare zero row
            vectors = np.einsum("sm,smk->sk", x, group_v)
            own = (x * x * np.einsum("smk,smk->sm", group_v, group_v)).sum(axis=1)
            bias = (x * self._group_w[groups]).sum(axis=1)
            bias += 0.5 * (np.einsum("sk,sk->s", vectors, vectors) - own)
            self._sig_vec[sigs] = vectors
            self._sig_bias[sigs] = bias
        if not everything:
            marked = np.zeros(n_sigs, dtype=bool)
            marked[sigs] = True
            mask = marked[self._item_sig[:n_rows]]
            mask[rows[rows < n_rows]] = True
            rows = np.flatnonzero(mask)
        if everything or 8 * len(rows) > n_rows:  # past ~1/8 a full pass is cheaper
            gathered = self._sig_vec.take(self._item_sig[:n_rows], axis=0)
            np.einsum("ij,ij->i", self._item_v[:n_rows], gathered, out=self._item_cross[:n_rows])
        else:
            gathered = self._sig_vec[self._item_sig[rows]]
            self._item_cross[rows] = np.einsum("ij,ij->i", self._item_v[rows], gathered)

    def _work(self, n: int) -> np.ndarray:
        """A scratch array for :meth:`_item_scores`.

        Catalog-sized temporaries are what ranking a large catalog costs (allocating and
        first touching them dominates the arithmetic), so it is kept between calls; it
        is scratch space, not learned state, and is not pickled.
        """
        scratch = self.__dict__.get("_scratch")
        if scratch is None or len(scratch) < n:
            scratch = self._scratch = np.empty(max(n, len(self._item_w)))
        return scratch[:n]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_scratch", None)
        return state


def _user_feature(user: typing.Hashable) -> str:
    return f"u:{user}"
