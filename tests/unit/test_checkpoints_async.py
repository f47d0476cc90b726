"""Checkpoint writing and loading for the event loop: only pickling runs on the loop."""

from __future__ import annotations

import asyncio
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import streams.checkpoints as checkpoints
from streams.checkpoints import CheckpointReader, CheckpointWriter


def _complete(records):
    reader = CheckpointReader()
    for key, value in records:
        reader.add(key, value)
    return reader.complete()


def test_async_records_equal_the_sync_ones_and_compress_off_the_loop(monkeypatch):
    model = {"weights": list(range(5_000)), "name": "m"}
    compressed_on: list[str] = []
    real_compress = zlib.compress

    def compress(data, level=-1):
        compressed_on.append(threading.current_thread().name)
        return real_compress(data, level)

    monkeypatch.setattr(checkpoints.zlib, "compress", compress)

    async def write():
        with ThreadPoolExecutor(1, thread_name_prefix="ckpt") as pool:
            return await CheckpointWriter("w", chunk_bytes=1_000).records_async(
                model, n_learned=7, now=5.0, executor=pool)

    records = asyncio.run(write())
    assert compressed_on and all(name.startswith("ckpt") for name in compressed_on)
    assert records == CheckpointWriter("w", chunk_bytes=1_000).records(model, n_learned=7, now=5.0)
    loaded = asyncio.run(_complete(records)["w"].load_async())
    assert loaded == model


def test_the_model_is_pickled_before_the_loop_moves_on():
    model = {"n": 1}

    async def write_then_change():
        writer = CheckpointWriter("w")
        task = asyncio.ensure_future(writer.records_async(model, n_learned=1))
        await asyncio.sleep(0)  # the task pickles on its first step, then awaits the executor
        model["n"] = 2  # what an agent does to the model between events
        return await task

    assert _complete(asyncio.run(write_then_change()))["w"].load() == {"n": 1}


def test_concurrent_checkpoints_are_numbered_in_the_order_they_were_taken():
    async def two():
        writer = CheckpointWriter("w")
        first = writer.records_async({"v": 1}, n_learned=1)
        second = writer.records_async({"v": 2}, n_learned=2)
        return await asyncio.gather(first, second)

    first, second = asyncio.run(two())
    assert [k for k, v in first if v is not None] == ["w/1/0", "w"]
    # The second tombstones the first's chunk and is the complete one after both.
    assert ("w/1/0", None) in second
    assert _complete(first + second)["w"].load() == {"v": 2}
