"""Online learners, updated one event at a time, each scoring the whole catalog at once.

They follow River's conventions (``learn_one`` mutates, ``predict_one`` does not) and
know nothing about Kafka: the same objects are driven by the stream and by offline
replay. Item rows are aligned with a shared :class:`~streams.catalog.Catalog`.
"""

from streams.learners.anomaly import BurstDetector
from streams.learners.content import CategoryAffinity
from streams.learners.context import ContextualFM
from streams.learners.keyed_popularity import KeyedPopularity
from streams.learners.matrix_factorization import ImplicitMF
from streams.learners.popularity import DecayedPopularity
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
    "UserSegments",
]
