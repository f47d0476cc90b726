"""Publishing events and catalog records, as any app would: keyed, in JSON or Avro."""

from __future__ import annotations

import dataclasses
import gzip
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from streams.codecs import encode, encode_event
from streams.records import Event, ItemUpdate
from streams.settings import Settings

__all__ = ["publish_catalog", "publish_events", "read_event_lines", "RateLimiter"]


class RateLimiter:
    """Paces a loop to ``rate`` iterations per second (``0`` = unpaced)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()

    def wait(self) -> None:
        if not self.interval:
            return
        self._next += self.interval
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:  # fell far behind (paused?): do not burst to catch up
            self._next = time.monotonic()


def item_record(item: ItemUpdate) -> dict[str, Any]:
    record = dataclasses.asdict(item)
    record["categories"] = list(item.categories)
    return record


def publish_catalog(producer: Any, settings: Settings, items: Iterable[ItemUpdate], fmt: str) -> int:
    sent = 0
    for item in items:
        value, headers = encode("item", item_record(item), fmt)
        producer.send(settings.topic_items, key=item.item_id.encode(), value=value, headers=headers)
        sent += 1
    producer.flush()
    return sent


def publish_events(producer: Any, settings: Settings, events: Iterable[Event], fmt: str,
                   rate: float = 0, should_stop: Any = None) -> int:
    """Send events keyed by user id; return how many were sent."""
    limiter = RateLimiter(rate)
    sent = 0
    for event in events:
        if should_stop is not None and should_stop():
            break
        value, headers = encode_event(event, fmt)
        producer.send(settings.topic_events, key=event.user_id.encode(), value=value, headers=headers)
        sent += 1
        limiter.wait()
    producer.flush()
    return sent


def read_event_lines(path: str | Path) -> Iterator[tuple[bytes, dict[str, Any] | None]]:
    """Lines of a JSONL file (``.gz`` allowed): the raw bytes and the parsed object (or None)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                parsed = orjson.loads(line)
            except orjson.JSONDecodeError:
                parsed = None
            yield line, parsed if isinstance(parsed, dict) else None
