"""The recovery gate: events of a partition whose state is recovering wait, or are turned away."""

from __future__ import annotations

import asyncio

from streams.recovery_gate import RecoveryGate


def gate_owning(*partitions: str) -> tuple[RecoveryGate, set[str]]:
    owned = set(partitions)
    gate = RecoveryGate(assignment=lambda: owned)
    gate.assigned(owned)
    gate.rebalance_ended()
    return gate, owned


def test_retained_partitions_stay_open_and_new_ones_close_until_the_rebalance_ends():
    gate, owned = gate_owning("p0")
    gate.rebalance_started()
    owned |= {"p1"}
    gate.assigned(owned)
    assert gate.is_open("p0") and not gate.is_open("p1")
    gate.rebalance_ended()
    assert gate.is_open("p1")


def test_an_event_of_a_recovering_partition_waits_then_is_admitted():
    gate, owned = gate_owning("p0")
    owned |= {"p1"}
    gate.assigned(owned)

    async def scenario() -> tuple[bool, bool]:
        waiting = asyncio.ensure_future(gate.admit("p1"))
        await asyncio.sleep(0.01)
        still_waiting = not waiting.done()
        gate.rebalance_ended()
        return still_waiting, await waiting

    assert asyncio.run(scenario()) == (True, True)
    assert gate.turned_away == 0


def test_a_new_rebalance_turns_the_waiting_event_away_instead_of_blocking_it():
    gate, owned = gate_owning("p0")
    owned |= {"p1"}
    gate.assigned(owned)

    async def scenario() -> bool:
        waiting = asyncio.ensure_future(gate.admit("p1"))
        await asyncio.sleep(0.01)
        gate.rebalance_started()  # Faust now waits for in-flight events before revoking
        return await asyncio.wait_for(waiting, timeout=1)

    assert asyncio.run(scenario()) is False
    assert gate.turned_away == 1


def test_an_interrupted_recovery_keeps_its_partitions_closed_after_reassignment():
    gate, owned = gate_owning("p0")
    owned |= {"p1"}
    gate.assigned(owned)
    gate.rebalance_started()  # before p1 finished recovering
    gate.assigned(owned)  # p1 is "retained" now, but its state never finished recovering
    assert not gate.is_open("p1")


def test_an_event_of_a_partition_lost_while_waiting_is_turned_away():
    gate, owned = gate_owning("p0")
    owned |= {"p1"}
    gate.assigned(owned)

    async def scenario() -> bool:
        waiting = asyncio.ensure_future(gate.admit("p1"))
        await asyncio.sleep(0.01)
        owned.discard("p1")
        gate.rebalance_ended()
        return await waiting

    assert asyncio.run(scenario()) is False


def test_partitions_no_longer_owned_are_forgotten():
    gate, owned = gate_owning("p0", "p1")
    gate.assigned({"p0"})
    assert gate.closed == frozenset()
    assert gate.is_open("p0")
