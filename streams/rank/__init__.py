"""Selection and the feedback loop: what happens to the blended scores before a list is served.

:class:`~streams.ranking.Recommender` scores the catalog; this package turns the scores
into the served list and learns from what people do with it (one module per step):

* :mod:`~streams.rank.items` -- category codes and business rules per catalog row;
* :mod:`~streams.rank.controls` -- the person's personalization and novelty dials;
* :mod:`~streams.rank.diversity` -- maximal marginal relevance over categories/embeddings;
* :mod:`~streams.rank.bandit` -- a vectorized LinUCB over context x candidate features;
* :mod:`~streams.rank.explore` -- exploration slots with exact propensities;
* :mod:`~streams.rank.explain` -- one distinct, evidenced reason per item;
* :mod:`~streams.rank.feedback` -- impressions, attributed rewards, zero rewards on expiry;
* :mod:`~streams.rank.selection` -- :class:`Selector`, which runs them in order, and the
  challenger strategies evaluated beside the champion.

Pure numpy (and River-style conventions); nothing here knows about Kafka.
"""

from streams.rank.bandit import LinearUCB
from streams.rank.feedback import ImpressionLog, parse_reward_weights
from streams.rank.selection import CHALLENGERS, SOURCE_EXPLORE, Request, Selector

__all__ = ["CHALLENGERS", "SOURCE_EXPLORE", "ImpressionLog", "LinearUCB", "Request", "Selector",
           "parse_reward_weights"]
