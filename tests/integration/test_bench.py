"""The bench's broker stages at small scale: a bare Faust stage and a pipeline stage each
count every produced event exactly, and nothing they started outlives them."""

from __future__ import annotations

import pytest

from streams.bench.harness import Children, StageFailed
from streams.bench.throughput import NO_TRIGGERS, run_bare, run_pipeline
from streams.bench.workload import catalog_records, event_records, shop_for

pytestmark = pytest.mark.integration


def test_bare_table_stage_counts_every_event_once(tmp_path):
    shop = shop_for(3_000)
    records = event_records(shop, 3_000)
    children = Children()
    try:
        result = run_bare("table", records, children, tmp_path / "ok")
        assert result["events"] == 3_000 and sum(result["partitions"].values()) == 3_000
        assert len(result["partitions"]) == 4
        assert result["eps"] > 0 and result["window_s"] > 0
        # Two independent clocks of the same window: the worker's own and the changelog's.
        assert result["eps_from_changelog"] == pytest.approx(result["eps"], rel=0.25)
        assert children.running() == []
        # Told to expect fewer than were produced, the stage sees the worker count past it.
        with pytest.raises(StageFailed, match="counted 3000 events, expected 2900"):
            run_bare("count", records, children, tmp_path / "over", expect=2_900)
        assert children.running() == []
    finally:
        children.stop_all()


def test_pipeline_learn_stage_processes_every_event_once(tmp_path):
    shop = shop_for(2_000)
    children = Children()
    try:
        result = run_pipeline("pipeline_learn", event_records(shop, 2_000), catalog_records(shop),
                              NO_TRIGGERS, children, tmp_path)
        assert result["events"] == 2_000
        assert result["outcomes"] == {"processed": 2_000, "duplicate": 0, "dead_lettered": 0}
        assert result["recommendations"] == 0
        assert result["eps"] > 0 and result["join_s"] > 0
        assert children.running() == []
    finally:
        children.stop_all()
