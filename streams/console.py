"""Reading the recommendation topic as a person (pretty) or a program (JSON lines)."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

import orjson

from streams.codecs import decode_recommendation
from streams.settings import Settings

__all__ = ["format_recommendation", "tail_recommendations"]


def _clock_ms() -> int:
    return int(time.time() * 1000)


def format_recommendation(rec: dict[str, Any], now_ms: int | None = None, max_items: int = 5) -> str:
    """Who, what, why and how fresh, in a few terminal lines.

    >>> rec = {"user_id": "u1", "trigger_event_id": "e9", "event_timestamp": 1000,
    ...        "created_at": 1012, "model_version": "mf+pop:5", "context": {"device": "ios"},
    ...        "items": [{"item_id": "i2", "score": 0.5, "reason": "popular right now",
    ...                   "source": "popularity"}]}
    >>> print(format_recommendation(rec, now_ms=1040))
    user u1 [device=ios] after e9: fresh 12 ms (event→recommendation), seen 40 ms after the event, model mf+pop:5
       1. i2                  0.500  popular right now
    """
    now_ms = _clock_ms() if now_ms is None else now_ms
    context = rec.get("context") or {}
    where = ", ".join(f"{k}={v}" for k, v in context.items() if k != "session_id")
    lines = [
        f"user {rec['user_id']}{f' [{where}]' if where else ''} after {rec['trigger_event_id']}: "
        f"fresh {rec['created_at'] - rec['event_timestamp']} ms (event→recommendation), "
        f"seen {now_ms - rec['event_timestamp']} ms after the event, model {rec['model_version']}"
    ]
    for rank, item in enumerate(rec["items"][:max_items], start=1):
        lines.append(f"  {rank:>2}. {item['item_id']:<18} {item['score']:>6.3f}  {item['reason']}")
    if len(rec["items"]) > max_items:
        lines.append(f"      … and {len(rec['items']) - max_items} more")
    return "\n".join(lines)


def tail_recommendations(settings: Settings, *, from_beginning: bool = False, as_json: bool = False,
                         count: int = 0, timeout: float = 0.0, out: TextIO = sys.stdout,
                         should_stop: Callable[[], bool] | None = None,
                         on_record: Callable[[dict[str, Any]], bool] | None = None) -> int:
    """Print recommendations as they arrive; return how many were read.

    Stops after ``count`` records or ``timeout`` seconds (``0`` = never), or when
    ``should_stop()`` says so. ``on_record`` may return ``False`` to skip printing one.
    """
    from streams.clients import make_consumer

    consumer = make_consumer(settings, settings.topic_recommendations, from_beginning=from_beginning)
    deadline = time.monotonic() + timeout if timeout else None
    seen = 0
    try:
        while True:
            if should_stop is not None and should_stop():
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            batches = consumer.poll(timeout_ms=250)
            for messages in batches.values():
                for message in messages:
                    rec = decode_recommendation(message.value, message.headers)
                    seen += 1
                    if on_record is None or on_record(rec) is not False:
                        out.write(orjson.dumps(rec).decode() + "\n" if as_json
                                  else format_recommendation(rec) + "\n")
                        out.flush()
                    if count and seen >= count:
                        return seen
    finally:
        consumer.close()
    return seen
