"""Personalize any decision: caller-supplied actions ranked per request, rewards back.

The item recommender answers "which products"; this package answers any other choice
a product makes for one person at one moment — which hero image, which layout, which
difficulty, which reminder now. A caller sends a request on ``decisions`` (decision
point, user, context, candidate actions), reads the answer on ``decisions.out`` (every
action with the probability the policy gave it, the first one to show), and sends the
outcome on ``rewards``. Each named decision point runs its own contextual bandit.

Modules, one job each:

* :mod:`~streams.decisions.records` — the requests, decisions and rewards;
* :mod:`~streams.decisions.validation` — bytes to records, or a dead-letter reason;
* :mod:`~streams.decisions.config` — decision points' options and named action sets;
* :mod:`~streams.decisions.features` — action × context feature rows;
* :mod:`~streams.decisions.policies` — ε-greedy, softmax, Thompson sampling, LinUCB;
* :mod:`~streams.decisions.point` — one decision point: policy, apprentice mode, estimates;
* :mod:`~streams.decisions.engine` — pending decisions, reward windows, exactly-once effect;
* :mod:`~streams.decisions.simulation` — synthetic environments with known best actions;
* :mod:`~streams.decisions.metrics` — Prometheus figures per decision point;
* :mod:`~streams.decisions.agents` — the Faust agents (imported by the worker only).
"""

from __future__ import annotations

__all__: list[str] = []
