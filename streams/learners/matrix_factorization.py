"""Online matrix factorization on implicit feedback, in numpy, scored over the whole catalog.

The model is a biased matrix factorization, ``score = mean + b_u + b_i + p_u · q_i``,
learned with River's :class:`river.reco.BiasedMF` step (squared loss, RMSProp step
sizes, L2 on biases and latents, the gradient clipped at 1e12, a running global mean).
It used to wrap ``BiasedMF``, whose dict-based parameters and optimizer state cost
~90 µs per event (four River steps). An event's rows (its item and the sampled
negatives) are now learned as one numpy batch: every gradient is taken at the event's
starting parameters, each item row takes its RMSProp step, and the user takes one
RMSProp step per row, in order (the squared-gradient average is a linear recurrence,
computed at once). With a single row that is exactly River's step;
``tests/unit/test_mf_speed_equivalence.py`` checks both that and that the batch learns
planted tastes as well as River's sequential steps.

* **Implicit feedback.** Events say what a user *did* touch, never what they would
  not. Each positive interaction is therefore learned as a regression target equal to
  its strength (a purchase says more than a view), together with ``n_negatives`` items
  drawn uniformly from the catalog and learned with target 0. Explicit negatives
  (a dislike, a low rating) are learned with target 0 for that item. Using the
  strength as the target, rather than repeating steps, keeps the cost of an event
  constant: one batch of ``1 + n_negatives`` rows whatever its type.
* **Per-parameter step sizes.** Both biases and latents use RMSProp: a rarely seen
  item learns as fast as a popular one, and, unlike AdaGrad, the step sizes do not
  shrink forever on an unbounded stream (the squared-gradient average forgets).
* **Parameters in rows.** Each item's bias and latents are one row of an array aligned
  with the shared :class:`~streams.catalog.Catalog` (row ``r`` is item
  ``catalog.item_id_at(r)``; rows never touched stay 0), so scoring every item for a
  user is one matrix-vector product. Users have rows of their own arrays.
* **Bounded users.** At most ``max_users`` users keep parameters. When a new user
  arrives at the bound, the least recently learned ``1/64`` of them are evicted at once
  (one partial sort instead of one per new user); an evicted user is relearned from
  their next events, like a new one.

SGD can diverge (a burst of strong targets, a bad learning rate). A user or item whose
parameters become non-finite (or beyond 1e100 in norm) is reset to a fresh
initialization and counted in :attr:`ImplicitMF.n_resets`; scoring never emits NaN or
infinity regardless.
"""

from __future__ import annotations

import math
import random
import typing

import numpy as np

from streams.catalog import Catalog

__all__ = ["ImplicitMF"]

_RHO, _EPS, _CLIP = 0.9, 1e-8, 1e12  # River's RMSProp defaults and BiasedMF's clip
_MAX_NORM2 = 1e200  # squared norm: parameters beyond 1e100 count as diverged
_INITIAL_ROWS = 64
_EVICT_FRACTION = 64  # evict max_users // 64 users at a time


class ImplicitMF:
    """Biased matrix factorization trained on implicit feedback with sampled negatives.

    Parameters
    ----------
    n_factors
        Dimension of the user and item latent vectors.
    n_negatives
        Catalog items sampled as negatives (target 0) for each positive interaction.
    learning_rate
        RMSProp step size of both biases and latents.
    l2
        L2 regularization of both biases and latents.
    seed
        Seeds the latent initialization and the negative sampling.
    catalog
        The item index that rows are aligned with; a private one is created if omitted.
    max_users
        Users with parameters at most; the least recently learned are evicted beyond.

    Examples
    --------
    >>> catalog = Catalog()
    >>> rows = [catalog.ensure(item) for item in ("x", "y", "z", "w")]
    >>> mf = ImplicitMF(n_factors=4, n_negatives=2, seed=1, catalog=catalog)
    >>> for _ in range(200):
    ...     mf.learn_one("alice", "x", 1.0)
    >>> scores = mf.score_all("alice", 4)
    >>> int(scores.argmax()), scores.shape
    (0, (4,))
    >>> round(mf.predict_one("alice", "x"), 3) == round(float(scores[0]), 3)
    True
    >>> _ = mf.score_all("nobody", 4)  # an unknown user: neutral scores, and no side effect
    >>> mf.knows_user("alice"), mf.knows_user("nobody"), mf.n_users
    (True, False, 1)
    """

    def __init__(
        self,
        n_factors: int = 16,
        n_negatives: int = 3,
        learning_rate: float = 0.02,
        l2: float = 0.01,
        seed: int | None = 42,
        catalog: Catalog | None = None,
        max_users: int = 200_000,
    ) -> None:
        if n_factors < 1 or n_negatives < 0 or max_users < 1:
            raise ValueError("n_factors >= 1, n_negatives >= 0 and max_users >= 1")
        self.n_factors = n_factors
        self.n_negatives = n_negatives
        self.learning_rate = learning_rate
        self.l2 = l2
        self.seed = seed
        self.catalog = catalog
        self.max_users = max_users
        self._catalog = Catalog() if catalog is None else catalog
        self._rng = random.Random(seed)  # negative sampling
        self._init_rng = np.random.RandomState(seed)  # latent initialization, as River's
        width = n_factors + 1  # column 0 the bias, then the latents
        # Items: rows follow the catalog; a row never learned is all 0 (neutral).
        self._items = np.zeros((_INITIAL_ROWS, width))
        self._items_g2 = np.zeros((_INITIAL_ROWS, width))  # RMSProp squared-gradient averages
        self._item_known = np.zeros(_INITIAL_ROWS, dtype=bool)
        # Users: a row each, reused after eviction or forgetting.
        self._user_row: dict[typing.Hashable, int] = {}
        self._row_user: list[typing.Hashable] = []  # row -> user (None: free)
        self._free_rows: list[int] = []
        self._users = np.zeros((0, width))
        self._users_g2 = np.zeros((0, width))
        self._user_clock = np.zeros(0, dtype=np.int64)  # when each row last learned
        self._mean_n = 0.0
        self._mean = 0.0
        self._n_resets = 0
        self._n_learned = 0
        self._n_evicted = 0
        self._bind()

    def _bind(self) -> None:
        """Views of the item array (not pickled)."""
        self._item_bias = self._items[:, 0]
        self._item_factors = self._items[:, 1:]
        self._decays: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # _rmsprop_user's

    # -- learned state, read-only -----------------------------------------------------

    @property
    def catalog_(self) -> Catalog:
        """The catalog rows are aligned with (the one given, or the private one)."""
        return self._catalog

    @property
    def model(self) -> "_ParameterView":
        """A read view of the parameters shaped like River's ``BiasedMF`` (``u_latents``,
        ``u_biases``, ``i_latents``, ``i_biases``, ``global_mean``), for inspection."""
        return _ParameterView(self)

    @property
    def n_resets(self) -> int:
        """How many user or item parameter sets were reset after becoming non-finite."""
        return self._n_resets

    @property
    def n_learned(self) -> int:
        return self._n_learned

    @property
    def n_users(self) -> int:
        """Users with parameters: at most ``max_users``."""
        return len(self._user_row)

    @property
    def n_evicted(self) -> int:
        """Users evicted so far to keep ``max_users``."""
        return self._n_evicted

    def knows_user(self, user: typing.Hashable) -> bool:
        """Whether ``user`` has (finite) learned parameters."""
        return self._user_params(user) is not None

    # -- learning -----------------------------------------------------------------------

    def learn_one(
        self, user: typing.Hashable, item: str, y: float = 1.0, x: dict | None = None
    ) -> None:
        """Learn one interaction: ``y > 0`` is a positive of that strength, ``y <= 0`` an
        explicit negative. A non-finite ``y`` is ignored. ``x`` is accepted for River
        compatibility and unused.
        """
        y = float(y)
        if not math.isfinite(y):
            return
        row = self._catalog.ensure(item)
        self._n_learned += 1
        rows = [row]
        if y > 0.0:
            n_rows = len(self._catalog)
            for _ in range(self.n_negatives if n_rows > 1 else 0):
                negative = self._rng.randrange(n_rows)
                if negative not in rows:
                    rows.append(negative)
            targets = [y] + [0.0] * (len(rows) - 1)
        else:
            targets = [0.0]
        self._learn_rows(user, rows, targets)

    def _learn_rows(self, user: typing.Hashable, rows: list[int], targets: list[float]) -> None:
        """One mini-batch SGD step of the user against the event's item rows.

        Every gradient is taken at the current parameters: each item row moves by its
        own gradient, the user by the sum over the rows (River's ``BiasedMF`` step
        applied to the batch's summed loss; with one row, exactly River's step). Both
        through RMSProp on ``[bias, latents...]`` rows.
        """
        for target in targets:  # the running global mean, one update per target
            self._mean_n += 1.0
            self._mean += (1.0 / self._mean_n) * (target - self._mean)
        u_row = self._user_row.get(user)
        if u_row is None:  # a new user is initialized before new items, as River does
            u_row = self._new_user(user)
        self._user_clock[u_row] = self._n_learned
        if max(rows) >= len(self._item_known):
            self._grow_items(len(self._catalog))
        known = self._item_known
        for row in rows:
            if not known[row]:
                self._items[row, 1:] = self._init_rng.normal(0.0, 0.1, self.n_factors)
                known[row] = True
        items, items_g2 = self._items[rows], self._items_g2[rows]  # copies, written back
        pu, su = self._users[u_row], self._users_g2[u_row]  # views
        ones = items.copy()  # [1, q_i] per row: ones @ pu = b_u + q_i . p_u
        ones[:, 0] = 1.0
        pred = ones @ pu
        pred += items[:, 0]
        pred += self._mean
        g = np.subtract(pred, targets, out=pred)  # squared loss: 2 (pred - y), clipped
        g *= 2.0
        np.minimum(g, _CLIP, out=g)
        np.maximum(g, -_CLIP, out=g)
        l2 = self.l2
        gu = ones * g[:, None]  # d/d(user), per row: g * [1, q_i] + l2 * [b_u, p_u]
        gu += pu * l2
        other = pu.copy()  # d/d(item): g * [1, p_u] + l2 * [b_i, q_i]
        other[0] = 1.0
        gi = np.multiply.outer(g, other)
        gi += items * l2
        self._rmsprop_user(pu, su, gu)
        self._rmsprop(items, items_g2, gi)
        self._items[rows] = items
        self._items_g2[rows] = items_g2
        if not np.dot(pu, pu) < _MAX_NORM2:  # NaN fails the comparison too
            self._n_resets += 1
            self._drop_user(user)
            self._new_user(user)  # a fresh initialization; a diverged history would diverge again
        norms = np.einsum("ij,ij->i", items, items)
        if not (norms < _MAX_NORM2).all():
            for row, norm in zip(rows, norms.tolist()):
                if not norm < _MAX_NORM2:
                    self._n_resets += 1
                    self._items[row] = 0.0
                    self._items_g2[row] = 0.0
                    self._item_known[row] = False

    def _rmsprop(self, params: np.ndarray, g2: np.ndarray, grad: np.ndarray) -> None:
        """River's RMSProp in place: ``g2 = rho g2 + (1 - rho) grad**2``, then
        ``params -= lr / sqrt(g2 + eps) * grad``."""
        g2 *= _RHO
        step = np.square(grad)
        step *= 1 - _RHO
        g2 += step
        np.add(g2, _EPS, out=step)
        np.sqrt(step, out=step)
        np.divide(self.learning_rate, step, out=step)
        step *= grad
        params -= step

    def _rmsprop_user(self, params: np.ndarray, g2: np.ndarray, grads: np.ndarray) -> None:
        """RMSProp steps of one parameter row for each gradient row, in order, as if
        each were its own step: the squared-gradient average is a linear recurrence,
        ``g2_j = rho^j g2_0 + sum_{i<=j} (1 - rho) rho^(j-i) grad_i**2``, computed at once.
        """
        n = len(grads)
        decay = self._decays.get(n)
        if decay is None:
            j = np.arange(n)
            lower = np.tril(np.power(_RHO, (j[:, None] - j[None, :]).clip(0)))
            decay = self._decays[n] = ((1 - _RHO) * lower, np.power(_RHO, j + 1.0))
        averages = decay[0] @ np.square(grads)
        averages += np.multiply.outer(decay[1], g2)
        g2[:] = averages[-1]
        averages += _EPS
        np.sqrt(averages, out=averages)
        np.divide(self.learning_rate, averages, out=averages)
        averages *= grads
        params -= averages.sum(axis=0)

    def _new_user(self, user: typing.Hashable) -> int:
        if not self._free_rows:
            if len(self._user_row) >= self.max_users:
                self._evict()
            else:
                self._grow_users()
        u_row = self._free_rows.pop()
        self._user_row[user] = u_row
        self._row_user[u_row] = user
        self._users[u_row, 0] = 0.0
        self._users[u_row, 1:] = self._init_rng.normal(0.0, 0.1, self.n_factors)
        self._users_g2[u_row] = 0.0
        self._user_clock[u_row] = self._n_learned
        return u_row

    def _grow_users(self) -> None:
        old = len(self._row_user)
        capacity = min(self.max_users, max(_INITIAL_ROWS, 2 * old))
        self._users = _resized(self._users, capacity)
        self._users_g2 = _resized(self._users_g2, capacity)
        self._user_clock = _resized(self._user_clock, capacity)
        self._row_user.extend([None] * (capacity - old))
        self._free_rows.extend(range(capacity - 1, old - 1, -1))  # lowest rows first

    def _evict(self) -> None:
        """Free the least recently learned ``max(1, max_users // 64)`` users' rows."""
        rows = np.fromiter(self._user_row.values(), dtype=np.intp, count=len(self._user_row))
        clocks = self._user_clock[rows]
        n = min(len(rows), max(1, self.max_users // _EVICT_FRACTION))
        oldest = np.argpartition(clocks, n - 1)[:n] if n < len(rows) else np.arange(len(rows))
        for u_row in rows[oldest].tolist():
            self._drop_user(self._row_user[u_row])
        self._n_evicted += n

    def _drop_user(self, user: typing.Hashable) -> None:
        u_row = self._user_row.pop(user, None)
        if u_row is None:
            return
        self._row_user[u_row] = None
        self._users[u_row] = 0.0
        self._users_g2[u_row] = 0.0
        self._free_rows.append(u_row)

    def _grow_items(self, needed: int) -> None:
        capacity = len(self._item_known)
        while capacity < needed:
            capacity *= 2
        self._items = _resized(self._items, capacity)
        self._items_g2 = _resized(self._items_g2, capacity)
        self._item_known = _resized(self._item_known, capacity)
        self._bind()

    def forget_user(self, user: typing.Hashable) -> None:
        """Erase everything learned about ``user`` (privacy: forget-a-user).

        Latents, bias and the optimizer's per-user gradient history all go; the items'
        parameters keep what they learned in aggregate, as they do for every user.
        """
        self._drop_user(user)

    # -- prediction (no side effects) ------------------------------------------------------

    def predict_one(self, user: typing.Hashable, item: str, x: dict | None = None) -> float:
        """Predicted preference; an unknown user or item gets the neutral (bias) score.

        This never creates parameters for an unseen user or item, and it agrees with
        :meth:`score_all`.
        """
        row = self._catalog.index_of(item)
        if row is None:
            return float(self._base(user))
        return float(self.score_rows(user, np.array([row]))[0])

    def score_all(self, user: typing.Hashable, n_items: int) -> np.ndarray:
        """Scores of catalog rows ``0 .. n_items - 1`` for ``user``: finite, one matvec."""
        scores = np.zeros(n_items, dtype=np.float64)
        filled = min(n_items, len(self._item_known))
        params = self._user_params(user)
        if params is None:
            scores[:filled] = self._item_bias[:filled]
        else:
            with np.errstate(invalid="ignore", over="ignore"):  # sanitized by _finish
                np.matmul(self._item_factors[:filled], params[1:], out=scores[:filled])
            scores[:filled] += self._item_bias[:filled]
        return self._finish(scores, user, params)

    def score_rows(self, user: typing.Hashable, rows: np.ndarray) -> np.ndarray:
        """Scores of the given catalog rows for ``user`` (rows never learned score neutral)."""
        rows = np.asarray(rows, dtype=np.intp)
        factors, bias = self._mirror_rows(rows)
        params = self._user_params(user)
        if params is None:
            scores = bias
        else:
            with np.errstate(invalid="ignore", over="ignore"):  # sanitized by _finish
                scores = factors @ params[1:] + bias
        return self._finish(scores, user, params)

    def item_similarity(
        self, item_rows_a: typing.Sequence[int], item_rows_b: typing.Sequence[int]
    ) -> np.ndarray:
        """Cosine similarity of item latents, shape ``(len(a), len(b))``.

        Items without learned latents have similarity 0 with everything.

        >>> mf = ImplicitMF(n_factors=2, n_negatives=0, seed=0)
        >>> mf._item_factors[:3] = [[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]  # for illustration
        >>> mf.item_similarity([0], [1, 2, 3]).round(3).tolist()
        [[1.0, 0.0, 0.0]]
        """
        a, _ = self._mirror_rows(np.asarray(item_rows_a, dtype=np.intp))
        b, _ = self._mirror_rows(np.asarray(item_rows_b, dtype=np.intp))
        norm_a = np.linalg.norm(a, axis=1)
        norm_b = np.linalg.norm(b, axis=1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            similarity = (a @ b.T) / np.outer(norm_a, norm_b)
        return np.nan_to_num(similarity, nan=0.0, posinf=0.0, neginf=0.0)

    # -- internals ------------------------------------------------------------------------

    def _user_params(self, user: typing.Hashable) -> np.ndarray | None:
        """The user's ``[bias, latents...]`` row if known and finite (never creates one)."""
        u_row = self._user_row.get(user)
        if u_row is None:
            return None
        params = self._users[u_row]
        return params if np.dot(params, params) < _MAX_NORM2 else None

    def _base(self, user: typing.Hashable, params: np.ndarray | None = None) -> float:
        """The score of an item without latents: global mean plus the user's bias."""
        base = self._mean
        if params is None:
            params = self._user_params(user)
        if params is not None:
            base += float(params[0])
        return base if math.isfinite(base) else 0.0

    def _finish(self, scores: np.ndarray, user: typing.Hashable,
                params: np.ndarray | None) -> np.ndarray:
        base = self._base(user, params)
        scores += base
        finite = np.isfinite(scores)
        if not finite.all():
            scores[~finite] = base
        return scores

    def _mirror_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = rows < len(self._item_known)
        if inside.all():
            return self._item_factors[rows], self._item_bias[rows]
        factors = np.zeros((len(rows), self.n_factors), dtype=np.float64)
        bias = np.zeros(len(rows), dtype=np.float64)
        factors[inside] = self._item_factors[rows[inside]]
        bias[inside] = self._item_bias[rows[inside]]
        return factors, bias

    # -- pickling: arrays trimmed to the rows in use, views rebuilt --------------------------

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items()
                 if k not in ("_item_bias", "_item_factors", "_decays")}
        used = len(self._catalog)
        for name in ("_items", "_items_g2", "_item_known"):
            state[name] = state[name][: max(used, _INITIAL_ROWS)].copy()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind()


def _resized(array: np.ndarray, capacity: int) -> np.ndarray:
    """``array`` with its first axis grown to ``capacity`` rows (zeros after the old ones)."""
    grown = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


class _ParameterView:
    """The parameters as River's ``BiasedMF`` names them: mappings by user and item id.

    Latent vectors are views into the learner's rows (writing to one writes the model).
    """

    def __init__(self, mf: ImplicitMF) -> None:
        catalog, known = mf._catalog, mf._item_known
        item_rows = {catalog.item_id_at(row): row for row in range(min(len(catalog), len(known)))
                     if known[row]}
        self.u_latents = {user: mf._users[row, 1:] for user, row in mf._user_row.items()}
        self.u_biases = {user: float(mf._users[row, 0]) for user, row in mf._user_row.items()}
        self.i_latents = {item: mf._items[row, 1:] for item, row in item_rows.items()}
        self.i_biases = {item: float(mf._items[row, 0]) for item, row in item_rows.items()}
        self.global_mean = _Mean(mf._mean)


class _Mean:
    def __init__(self, value: float) -> None:
        self._value = value

    def get(self) -> float:
        return self._value
