"""Learner checkpoints: a restarted worker resumes with its models warm, not cold.

The tables (user state, profiles) are changelog-backed, so Faust restores them exactly.
The learners are ordinary Python objects in the worker's memory; without checkpoints a
restarted worker would rank with empty models until it had relearned from new events.
So each worker periodically writes its whole :class:`~streams.ranking.Recommender` to
the compacted, one-partition topic ``<app_id>-checkpoints``:

* the pickled, zlib-compressed model is cut into chunks (Kafka's default record limit is
  1 MB) keyed ``<worker>/<seq>/<n>``;
* then a manifest keyed ``<worker>`` (JSON: sequence number, chunk count, SHA-256 of
  the payload, format, when, how many events the model had learned);
* then tombstones for the previous checkpoint's chunks, so compaction keeps one complete
  checkpoint per worker. A crash between these steps leaves the previous manifest and its
  chunks intact: a reader only trusts a manifest whose chunks are all present and whose
  digest matches.

On start a worker restores its own latest checkpoint (``MICROMOMENT_WORKER_ID``), or the
newest one of any worker when it has none (a new replica starts with the others' item
knowledge). After a rebalance, the users of partitions it newly owns are adopted from the
other workers' checkpoints (:meth:`~streams.ranking.Recommender.adopt_users`).

Trust: a checkpoint is a pickle, and unpickling runs code. The topic must be writable
only by the workers (Kafka ACLs), like the tables' changelogs.
Between checkpoints a crash loses at most ``MICROMOMENT_CHECKPOINT_INTERVAL`` seconds of
*model* learning; the tables, and hence every user's event count and history, lose nothing.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import pickle
import time
import zlib
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Iterable

import orjson

from streams.settings import Settings

__all__ = ["CHECKPOINT_FORMAT", "CHUNK_BYTES", "Checkpoint", "CheckpointReader",
           "CheckpointWriter", "read_checkpoints", "choose_checkpoint", "partition_of", "owned_by",
           "snapshot"]

log = logging.getLogger(__name__)

#: Bumped whenever the pickled classes change incompatibly: an older checkpoint is then
#: ignored (the worker starts cold, and says so) instead of half-loading.
#: 2: ImplicitMF keeps its parameters in numpy rows, no longer in a River BiasedMF.
CHECKPOINT_FORMAT = 2
#: Chunk size, well under Kafka's default 1 MB record limit.
CHUNK_BYTES = 512 * 1024


@dataclass
class Checkpoint:
    """A complete checkpoint of one worker's learners, as read back from the topic."""

    worker: str
    seq: int
    created_at: float
    n_learned: int
    payload: bytes = field(repr=False)
    chunks: int = 1

    def load(self) -> Any:
        """The unpickled model."""
        return pickle.loads(zlib.decompress(self.payload))

    async def load_async(self, executor: Executor | None = None) -> Any:
        """:meth:`load` for the event loop: decompressing runs in ``executor``.

        (Unpickling holds the GIL from start to end wherever it runs, so it stays here.)
        """
        loop = asyncio.get_running_loop()
        return pickle.loads(await loop.run_in_executor(executor, zlib.decompress, self.payload))


class CheckpointWriter:
    """Turns a model into the records of one checkpoint, remembering the previous one.

    Examples
    --------
    >>> writer = CheckpointWriter("w1", chunk_bytes=8)
    >>> records = writer.records({"weights": list(range(20))}, n_learned=3, now=1.0)
    >>> [key for key, _ in records][-1]  # the manifest comes after its chunks
    'w1'
    >>> reader = CheckpointReader()
    >>> for key, value in records:
    ...     reader.add(key, value)
    >>> reader.complete()["w1"].load()["weights"][-1]
    19
    >>> again = writer.records({"weights": []}, n_learned=4, now=2.0)
    >>> [key for key, value in again if value is None][:2]  # the previous chunks, tombstoned
    ['w1/1/0', 'w1/1/1']
    """

    def __init__(self, worker: str, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.worker = worker
        self.chunk_bytes = chunk_bytes
        self._seq = 0
        self._previous_chunks = 0
        self._lock: asyncio.Lock | None = None  # created on the loop that first uses it

    def resume_after(self, seq: int, chunks: int) -> None:
        """Continue numbering after a restored checkpoint (and tombstone its chunks later)."""
        self._seq, self._previous_chunks = seq, chunks

    def records(self, model: Any, *, n_learned: int, now: float | None = None
                ) -> list[tuple[str, bytes | None]]:
        """Keys and values to send, in order: chunks, manifest, tombstones of the last one."""
        return self.records_from_pickle(snapshot(model), n_learned=n_learned, now=now)

    async def records_async(self, model: Any, *, n_learned: int, now: float | None = None,
                            executor: Executor | None = None) -> list[tuple[str, bytes | None]]:
        """:meth:`records` for the event loop: only the pickling runs on it.

        Pickling must: the agents change the model between events, on the loop, so a
        pickle taken elsewhere could see it half-updated (or fail on a dict resized under
        it). Compressing and hashing the pickle, as long again, run in ``executor``
        (zlib and hashlib release the GIL), while the loop goes on processing events.
        One checkpoint at a time: a second call waits for the first to finish numbering.
        """
        lock = self._lock = self._lock or asyncio.Lock()
        async with lock:
            pickled = snapshot(model)
            return await asyncio.get_running_loop().run_in_executor(
                executor, functools.partial(self.records_from_pickle, pickled,
                                            n_learned=n_learned, now=now))

    def records_from_pickle(self, pickled: bytes, *, n_learned: int, now: float | None = None
                            ) -> list[tuple[str, bytes | None]]:
        """The records of a checkpoint of an already pickled model (touches no model, so it
        can run in a thread)."""
        payload = zlib.compress(pickled, 1)
        seq = self._seq + 1
        chunks = [payload[i:i + self.chunk_bytes]
                  for i in range(0, len(payload), self.chunk_bytes)] or [b""]
        records: list[tuple[str, bytes | None]] = [
            (f"{self.worker}/{seq}/{n}", chunk) for n, chunk in enumerate(chunks)]
        manifest = {"format": CHECKPOINT_FORMAT, "worker": self.worker, "seq": seq,
                    "chunks": len(chunks), "bytes": len(payload),
                    "sha256": hashlib.sha256(payload).hexdigest(),
                    "created_at": time.time() if now is None else now, "n_learned": n_learned}
        records.append((self.worker, orjson.dumps(manifest)))
        records.extend((f"{self.worker}/{self._seq}/{n}", None)
                       for n in range(self._previous_chunks))
        self._seq, self._previous_chunks = seq, len(chunks)
        return records


def snapshot(model: Any) -> bytes:
    """The model pickled (highest protocol): the part of a checkpoint that must run where
    the model is changed, between two changes."""
    return pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)


class CheckpointReader:
    """Folds the checkpoint topic's records (in offset order) into complete checkpoints."""

    def __init__(self) -> None:
        self._chunks: dict[str, bytes] = {}
        self._manifests: dict[str, dict] = {}

    def add(self, key: str, value: bytes | None) -> None:
        if "/" in key:
            if value is None:
                self._chunks.pop(key, None)
            else:
                self._chunks[key] = value
        elif value is None:
            self._manifests.pop(key, None)
        else:
            try:
                self._manifests[key] = orjson.loads(value)
            except orjson.JSONDecodeError:
                log.warning("ignoring an unreadable checkpoint manifest of %s", key)

    def complete(self) -> dict[str, Checkpoint]:
        """Per worker, its newest checkpoint if whole, current in format, and intact."""
        found = {}
        for worker, manifest in self._manifests.items():
            try:
                if manifest.get("format") != CHECKPOINT_FORMAT:
                    log.warning("ignoring the checkpoint of %s: format %s, this version reads %s",
                                worker, manifest.get("format"), CHECKPOINT_FORMAT)
                    continue
                seq = int(manifest["seq"])
                parts = [self._chunks.get(f"{worker}/{seq}/{n}") for n in range(int(manifest["chunks"]))]
                if any(part is None for part in parts):
                    log.warning("ignoring the checkpoint of %s: chunks missing", worker)
                    continue
                payload = b"".join(parts)  # type: ignore[arg-type]
                if hashlib.sha256(payload).hexdigest() != manifest["sha256"]:
                    log.warning("ignoring the checkpoint of %s: digest mismatch", worker)
                    continue
                found[worker] = Checkpoint(worker, seq, float(manifest["created_at"]),
                                           int(manifest["n_learned"]), payload, len(parts))
            except (KeyError, TypeError, ValueError):
                log.warning("ignoring a malformed checkpoint manifest of %s", worker)
        return found


def choose_checkpoint(checkpoints: dict[str, Checkpoint], worker: str) -> Checkpoint | None:
    """This worker's own checkpoint, else the newest of any worker, else ``None``.

    >>> a, b = Checkpoint("a", 1, 10.0, 5, b""), Checkpoint("b", 1, 20.0, 9, b"")
    >>> choose_checkpoint({"a": a, "b": b}, "a").worker, choose_checkpoint({"a": a, "b": b}, "c").worker
    ('a', 'b')
    >>> choose_checkpoint({}, "a") is None
    True
    """
    if worker in checkpoints:
        return checkpoints[worker]
    return max(checkpoints.values(), key=lambda c: c.created_at, default=None)


def read_checkpoints(settings: Settings, timeout_s: float = 30.0) -> dict[str, Checkpoint]:
    """Read the whole checkpoint topic (blocking; used before the worker starts).

    Reads until the position reaches the highwater the fetches report (kafka-python's
    ``end_offsets`` is unreliable on some brokers, the embedded one included).
    """
    from kafka import KafkaConsumer, TopicPartition

    from streams.security import kafka_python_options

    reader = CheckpointReader()
    consumer = KafkaConsumer(bootstrap_servers=settings.broker_servers, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             fetch_max_wait_ms=settings.fetch_max_wait_ms,
                             client_id=f"{settings.app_id}-checkpoint-reader",
                             **kafka_python_options(settings))
    try:
        tp = TopicPartition(settings.checkpoint_topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200, max_records=500).values():
                for record in records:
                    reader.add(record.key.decode("utf-8"), record.value)
            highwater = consumer.highwater(tp)
            if highwater is not None and consumer.position(tp) >= highwater:
                break
        else:
            log.warning("checkpoint topic not read to its end within %.0f s", timeout_s)
    finally:
        consumer.close()
    return reader.complete()


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partition of a key (murmur2, as Java, kafka-python and aiokafka do).

    >>> partition_of(b"user-00001", 4) == partition_of(b"user-00001", 4)
    True
    """
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def owned_by(partitions: Iterable[int], count: int):
    """A predicate on user ids: does the user's partition belong to ``partitions``?"""
    wanted = frozenset(partitions)
    return lambda user_id: partition_of(str(user_id).encode("utf-8"), count) in wanted
