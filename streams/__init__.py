"""micromoment: Kafka events in, River learners updated per event, recommendations out."""

__version__ = "0.1.0"
__all__ = ["__version__"]
