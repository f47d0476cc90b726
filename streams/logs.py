"""Logging for operators: plain or one JSON object per line, never a raw user id.

User ids are personal data; logs travel to places (aggregators, tickets) that the
``forget`` guarantees do not reach. So logs carry a keyed pseudonym instead: stable for one
key, so ops can follow one user through the logs, useless without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

import orjson

__all__ = ["JsonFormatter", "pseudonymize", "logging_config"]

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def pseudonymize(user_id: str | bytes | None, key: str) -> str:
    """A short keyed pseudonym of a user id (HMAC-SHA256), for logs.

    >>> p = pseudonymize("alice", key="k")
    >>> p == pseudonymize(b"alice", key="k") and p != pseudonymize("alice", key="other")
    True
    >>> p.startswith("u:") and "alice" not in p
    True
    >>> pseudonymize(None, key="k")
    'u:-'
    """
    if user_id is None:
        return "u:-"
    raw = user_id if isinstance(user_id, bytes) else user_id.encode("utf-8")
    return "u:" + hmac.new(key.encode("utf-8"), raw, hashlib.sha256).hexdigest()[:16]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RESERVED and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def logging_config(level: str, fmt: str) -> dict[str, Any] | None:
    """A ``logging.config.dictConfig`` for JSON lines, or ``None`` for Faust's default."""
    if fmt != "json":
        return None
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "streams.logs.JsonFormatter"}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json",
                                 "stream": "ext://sys.stdout", "level": level}},
        "root": {"level": level, "handlers": ["default"]},
    }
