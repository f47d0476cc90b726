"""Offline evaluation by replaying a log through the worker's own code path.

``micromoment replay`` feeds a recorded log, in timestamp order, to
:class:`streams.pipeline.Pipeline` exactly as the worker would receive it (JSON record
bytes, plain dicts for the tables), asks the same :class:`~streams.ranking.Recommender`
for a recommendation *before* each interaction is learned (test-then-learn), and scores
it. There is no second implementation of learning or ranking to drift from the one in
production; this package only reads logs, drives the pipeline and does arithmetic.

Modules, one job each:

* :mod:`~streams.replay.loaders` — generic interaction logs (CSV/TSV/JSONL, gzip),
  the project's own event JSONL, and item catalogs, into records for the pipeline;
* :mod:`~streams.replay.metrics` — pure ranking and exposure metrics (HR@K, NDCG@K,
  MRR, coverage, Gini, novelty, MAE/RMSE);
* :mod:`~streams.replay.estimators` — off-policy estimators over logged bandit
  feedback (replay, IPS, SNIPS, doubly robust) with confidence intervals;
* :mod:`~streams.replay.prequential` — the test-then-learn loop and its scores;
* :mod:`~streams.replay.open_bandit` — the Open Bandit Dataset, the pipeline as a policy;
* :mod:`~streams.replay.plot` and :mod:`~streams.replay.report` — PNG and text output;
* :mod:`~streams.replay.command` — the ``micromoment replay`` subcommand.

Nothing is imported here, so that ``micromoment --help`` does not pay for numpy,
River and matplotlib.
"""

from __future__ import annotations

__all__: list[str] = []
