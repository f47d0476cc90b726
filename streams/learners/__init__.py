"""Online learners, updated one event at a time, each scoring the whole catalog at once.

They follow River's conventions (``learn_one`` mutates, ``predict_one`` does not) and
know nothing about Kafka: the same objects are driven by the stream and by offline
replay. Item rows are aligned with a shared :class:`~streams.catalog.Catalog`.
``tests/unit/test_learners_contract.py`` holds every one of them to the same contract.

What each adds (the module docstrings say why in full):

* :class:`DecayedPopularity` -- what everyone engages with right now (the fallback);
* :class:`KeyedPopularity` -- the same per context or segment ("on mobile this evening");
* :class:`CategoryAffinity` -- the kinds of item this user likes, from one event;
* :class:`ImplicitMF` -- latent taste from many users' co-engagement (needs history);
* :class:`ContextualFM` -- who engages with what *where and when* (device, page, hour);
* :class:`ItemTransitions` -- what people open next after the items just viewed;
* :class:`UserSegments` -- which kind of shopper a new user is (segment cold start);
* :class:`BurstDetector` -- not a recommender: flags bot-like bursts so nobody learns them;
* :class:`RatingBaseline` -- the rating a user would give an item (MAE/RMSE in replays).

How much each recommender counts is learned too: :mod:`streams.learners.blend`.
"""

from streams.learners.anomaly import BurstDetector
from streams.learners.content import CategoryAffinity
from streams.learners.context import ContextualFM
from streams.learners.keyed_popularity import KeyedPopularity
from streams.learners.matrix_factorization import ImplicitMF
from streams.learners.popularity import DecayedPopularity
from streams.learners.ratings import RatingBaseline
from streams.learners.segments import UserSegments
from streams.learners.sequence import ItemTransitions

__all__ = [
    "BurstDetector",
    "CategoryAffinity",
    "ContextualFM",
    "DecayedPopularity",
    "ImplicitMF",
    "ItemTransitions",
    "KeyedPopularity",
    "RatingBaseline",
    "UserSegments",
]
