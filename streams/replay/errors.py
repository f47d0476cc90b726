"""The one exception of the replay package: input that cannot be replayed.

Loaders raise it with a message naming the file, line and column, so the command can
print one line and exit with code 2 instead of a traceback.
"""

from __future__ import annotations

__all__ = ["ReplayError"]


class ReplayError(ValueError):
    """A log, catalog or option that cannot be used; the message says which and why.

    >>> str(ReplayError("ratings.dat line 3: no column 'rating'"))
    "ratings.dat line 3: no column 'rating'"
    """
