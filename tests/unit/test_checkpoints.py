"""Checkpoint records: chunking, integrity, crash-safety, and moving users between models."""

from __future__ import annotations

import orjson
import pytest

from streams.checkpoints import (CHECKPOINT_FORMAT, CheckpointReader, CheckpointWriter,
                                 owned_by, partition_of)
from streams.ranking import Recommender
from streams.records import Event, ItemUpdate
from streams.settings import Settings
from streams.state import UserState


def fold(records) -> dict:
    reader = CheckpointReader()
    for key, value in records:
        reader.add(key, value)
    return reader.complete()


def test_round_trip_across_many_chunks():
    model = {"blob": bytes(range(256)) * 400}
    records = CheckpointWriter("w", chunk_bytes=1000).records(model, n_learned=7, now=5.0)
    chunks = [k for k, v in records if "/" in k]
    assert len(chunks) > 1 and records[-1][0] == "w"
    found = fold(records)["w"]
    assert found.load() == model and (found.n_learned, found.created_at, found.seq) == (7, 5.0, 1)


def test_a_crash_before_the_manifest_keeps_the_previous_checkpoint():
    writer = CheckpointWriter("w", chunk_bytes=64)
    first = writer.records({"v": 1}, n_learned=1)
    second = writer.records({"v": 2, "pad": "x" * 500}, n_learned=2)
    manifest_at = next(i for i, (k, _) in enumerate(second) if k == "w")
    assert fold(first + second[:manifest_at])["w"].load() == {"v": 1}
    assert fold(first + second)["w"].load()["v"] == 2


def test_compaction_after_a_full_write_leaves_exactly_one_whole_checkpoint():
    writer = CheckpointWriter("w", chunk_bytes=64)
    log = writer.records({"v": 1, "pad": "y" * 300}, n_learned=1) + writer.records({"v": 2}, n_learned=2)
    latest: dict = {}
    for key, value in log:  # what compaction keeps: the last value per key, tombstones dropped
        latest[key] = value
    compacted = [(k, v) for k, v in latest.items() if v is not None]
    assert [k for k, _ in compacted if "/" in k] == ["w/2/0"]
    assert fold(compacted)["w"].load() == {"v": 2}


def test_damaged_missing_or_foreign_format_checkpoints_are_ignored():
    records = CheckpointWriter("w", chunk_bytes=32).records({"v": bytes(range(200))}, n_learned=1)
    manifest = orjson.loads(records[-1][1])
    corrupted = [(k, b"x" * len(v) if k == "w/1/0" else v) for k, v in records]
    missing = [(k, v) for k, v in records if k != "w/1/1"]
    newer = records[:-1] + [("w", orjson.dumps(dict(manifest, format=CHECKPOINT_FORMAT + 1)))]
    garbage = records[:-1] + [("w", b"{not json")]
    for damaged in (corrupted, missing, newer, garbage):
        assert fold(damaged) == {}


def test_restoring_a_writers_own_checkpoint_continues_its_numbering():
    first = CheckpointWriter("w", chunk_bytes=64)
    old = first.records({"v": 1, "pad": "q" * 200}, n_learned=1)
    found = fold(old)["w"]
    resumed = CheckpointWriter("w", chunk_bytes=64)
    resumed.resume_after(found.seq, found.chunks)
    new = resumed.records({"v": 2}, n_learned=2)
    tombstoned = {k for k, v in new if v is None}
    assert tombstoned == {k for k, _ in old if "/" in k}
    assert fold(old + new)["w"].seq == 2


def test_partition_of_matches_the_kafka_default_partitioner():
    from aiokafka.partitioner import DefaultPartitioner  # what Faust and aiokafka producers use

    partitioner = DefaultPartitioner()
    for n in range(200):
        key = f"user-{n}".encode()
        assert partition_of(key, 4) == partitioner(key, list(range(4)), list(range(4)))


def trained(events: list[tuple[str, str]]) -> Recommender:
    recommender = Recommender(Settings())
    for item, category in [("boot", "shoes"), ("heel", "shoes"), ("tote", "bags"), ("clutch", "bags")]:
        recommender.apply_item(ItemUpdate(item, categories=(category,)))
    for n, (user, item) in enumerate(events):
        recommender.learn_one(Event(f"e{n}", user, item, "purchase", 1_700_000_000_000 + n))
    return recommender


def test_adopting_users_moves_their_taste_only_for_the_wanted_partitions():
    other = trained([(f"user-{n}", "tote") for n in range(40)])
    mine = trained([("local", "boot")])
    wanted = owned_by({0, 1}, 4)
    adopted = mine.adopt_users(other, wanted)
    moved = [f"user-{n}" for n in range(40) if wanted(f"user-{n}")]
    assert adopted == len(moved) > 0
    for n in range(40):
        user = f"user-{n}"
        assert mine.content.knows_user(user) == (user in moved)
    state = UserState()
    state.event_count = 1
    top = mine.recommend(moved[0], state, {}, k=1)[0]
    assert top.item_id in {"tote", "clutch"} and top.source == "content"  # bags, learned elsewhere
    before = mine.content.affinities("local")
    assert mine.adopt_users(trained([("local", "tote")]), lambda user: True) == 0
    assert mine.content.affinities("local") == before  # a known user is never overwritten
