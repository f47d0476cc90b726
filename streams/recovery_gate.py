"""Holds back events of partitions whose table state is still being recovered.

Seen here (faust-streaming 0.15.3 on the embedded broker, a survivor taking over a departed
worker's partitions): events of a newly assigned input partition reached the agent while
the table recovery of that partition was still reading the changelog. The agent read an
empty or old state, wrote its update, the recovery then applied the older changelog
records over it, and the consumer committed the event's offset: the event was gone from
state (one request in 80 in a diagnostic run), with nothing logged.

The gate closes a partition when it is newly assigned and opens it when the rebalance has
ended (recovery done, stream partitions sought to their committed offsets). An event of a
closed partition waits. If another rebalance starts meanwhile, the waiting event must not
hold it up (Faust waits for in-flight events before revoking) and must not be processed
on unrecovered state either: it is turned away, left unacknowledged, so its offset is not
committed and it is read again after the next assignment.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Hashable, Iterable

__all__ = ["RecoveryGate"]

log = logging.getLogger(__name__)


class RecoveryGate:
    """Admission of events per partition around table recovery.

    >>> gate = RecoveryGate(assignment=lambda: {"p0", "p1"})
    >>> gate.assigned({"p0"})
    >>> gate.rebalance_ended()
    >>> gate.assigned({"p0", "p1"})  # p1 is new: closed until this rebalance ends
    >>> gate.is_open("p0"), gate.is_open("p1")
    (True, False)
    >>> async def admit_after_recovery():
    ...     waiting = asyncio.ensure_future(gate.admit("p1"))
    ...     await asyncio.sleep(0)
    ...     gate.rebalance_ended()
    ...     return await waiting
    >>> asyncio.run(admit_after_recovery())
    True
    """

    def __init__(self, assignment: Callable[[], Iterable[Hashable]]) -> None:
        self._assignment = assignment
        self._closed: set[Hashable] = set()
        self._owned: set[Hashable] = set()
        self._changed = asyncio.Event()
        self._rebalances = 0
        self.turned_away = 0

    def is_open(self, tp: Hashable) -> bool:
        return tp not in self._closed

    @property
    def closed(self) -> frozenset:
        return frozenset(self._closed)

    def assigned(self, now_assigned: Iterable[Hashable]) -> None:
        """Partitions were (re)assigned: close the newly owned ones, and keep closed those
        of an interrupted recovery that are assigned again; forget the ones not ours."""
        now = set(now_assigned)
        self._closed = (self._closed & now) | (now - self._owned)
        self._owned = now

    def rebalance_started(self) -> None:
        """Turn away every waiting event: the rebalance must not wait for them."""
        self._rebalances += 1
        self._wake()

    def rebalance_ended(self) -> None:
        """Recovery is complete and stream partitions are at their committed offsets."""
        self._closed.clear()
        self._wake()

    async def admit(self, tp: Hashable) -> bool:
        """``True``: process the event now. ``False``: leave it unprocessed and
        unacknowledged (another rebalance began, or the partition is no longer ours)."""
        if tp not in self._closed:
            return True
        rebalances = self._rebalances
        log.info("holding events of %s until its state is recovered", tp)
        while tp in self._closed:
            if self._rebalances != rebalances:
                return self._turn_away(tp, "another rebalance began")
            self._changed.clear()
            await self._changed.wait()
        if tp not in set(self._assignment()):
            return self._turn_away(tp, "the partition is no longer assigned here")
        log.info("state of %s recovered: processing its events", tp)
        return True

    def _turn_away(self, tp: Hashable, why: str) -> bool:
        self.turned_away += 1
        log.info("left an event of %s unprocessed and unacknowledged, to be read again: %s",
                 tp, why)
        return False

    def _wake(self) -> None:
        self._changed.set()
