"""A bare Faust worker, the baseline the pipeline's throughput is compared with.

``python -m streams.bench.bare_app --mode count|table|table_send ...`` runs one Faust app
with one agent on one topic and nothing else. It is configured like the worker's app
(``streams/app.py``): the same Faust version and ``micromoment://`` transport (so the same
fetch wait, ``MICROMOMENT_FETCH_MAX_WAIT_MS``; the bench runs it with Faust's default
producer linger, 0 ms, see ``throughput.BARE_PRODUCER_LINGER_MS``), raw key and value
serializers, the memory
store, ``at_least_once``, the same session timeout and heartbeat, the same partitions, an
agent at concurrency 1 iterating ``stream.events()``, the web server in the event loop.

The modes, per event:

* ``count``: ``count += 1``;
* ``table``: one update of a ``Table`` keyed by the record key (``str``, raw serializer,
  orjson values like ``user_state``): ``counts[key] += 1``, i.e. one changelog write;
* ``table_send``: that update, then ``await topic.send()`` of the record's own key and value
  bytes to an output topic (the pipeline also awaits ``topic.send()`` per recommendation).

A bare agent does **not** decode or validate the value: it is raw bytes in, and the table
value is a small integer, not a user's state. That is the point of a baseline: what Faust
itself costs per event, so that everything above it is the pipeline's own work.

The worker measures itself: it writes ``--status`` (JSON, atomically) with the count, the
wall-clock time of the first event and of the ``--expect``-th one, every 0.2 s and as soon
as the count reaches ``--expect``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Sequence

import orjson

__all__ = ["MODES", "build_app", "main"]

#: What the agent does per event (see the module docstring).
MODES = ("count", "table", "table_send")


def _write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(orjson.dumps(data))
    os.replace(tmp, path)


def build_app(mode: str, *, broker: str, app_id: str, topic: str, out_topic: str, expect: int,
              status_path: str, web_port: int, datadir: str, partitions: int = 4,
              session_timeout_s: float = 10.0) -> Any:
    """The bare Faust app for ``mode``; its agent counts and reports to ``status_path``."""
    import faust
    from faust.serializers import codecs

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")

    class OrjsonCodec(codecs.Codec):  # the same codec as streams/app.py's table values
        def _dumps(self, obj: object) -> bytes:
            return orjson.dumps(obj)

        def _loads(self, s: bytes) -> object:
            return orjson.loads(s)

    codecs.register("orjson", OrjsonCodec())
    servers = ";".join(f"micromoment://{server.partition('://')[2] or server}"
                       for server in broker.replace(",", ";").split(";") if server.strip())
    app = faust.App(
        app_id,
        broker=servers,
        store="memory://",
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee="at_least_once",
        broker_session_timeout=session_timeout_s,
        broker_heartbeat_interval=min(3.0, session_timeout_s / 4),
        topic_partitions=partitions,
        topic_replication_factor=1,
        web_host="127.0.0.1",
        web_port=web_port,
        canonical_url=f"http://127.0.0.1:{web_port}",
        datadir=datadir,
        web_in_thread=False,
    )
    source = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=partitions)
    output = app.topic(out_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=partitions)
    table = None
    if mode != "count":
        table = app.Table("counts", default=int, key_type=str, partitions=partitions)
        table.key_serializer = "raw"  # as streams/tables.py does for user_state
        table.value_serializer = "orjson"
        table.changelog_topic = table._new_changelog_topic()

    progress = {"count": 0, "first": None, "at_expect": None, "last": None}

    def report() -> None:
        _write_json(status_path, dict(progress, expect=expect, mode=mode, pid=os.getpid()))

    async def count(stream: Any) -> None:
        async for event in stream.events():
            progress["count"] += 1
            if progress["first"] is None:
                progress["first"] = time.time()
            if progress["count"] == expect:
                progress["at_expect"] = time.time()
                report()

    async def update(stream: Any) -> None:
        async for event in stream.events():
            key = event.message.key.decode("utf-8")
            table[key] += 1
            progress["count"] += 1
            if progress["first"] is None:
                progress["first"] = time.time()
            if progress["count"] == expect:
                progress["at_expect"] = time.time()
                report()

    async def update_send(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            table[message.key.decode("utf-8")] += 1
            await output.send(key=message.key, value=message.value)
            progress["count"] += 1
            if progress["first"] is None:
                progress["first"] = time.time()
            if progress["count"] == expect:
                progress["at_expect"] = time.time()
                report()

    agent = {"count": count, "table": update, "table_send": update_send}[mode]
    app.agent(source, name=f"bare_{mode}", concurrency=1)(agent)

    @app.timer(interval=0.2)
    async def write_status() -> None:
        progress["last"] = time.time()
        report()

    report()
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.bench.bare_app",
                                     description="A bare Faust worker (a throughput baseline).")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--broker", required=True, help="kafka://host:port")
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--out-topic", required=True)
    parser.add_argument("--expect", type=int, required=True, help="events to count")
    parser.add_argument("--status", required=True, help="JSON file the worker reports to")
    parser.add_argument("--web-port", type=int, required=True)
    parser.add_argument("--datadir", required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--session-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    app = build_app(args.mode, broker=args.broker, app_id=args.app_id, topic=args.topic,
                    out_topic=args.out_topic, expect=args.expect, status_path=args.status,
                    web_port=args.web_port, datadir=args.datadir, partitions=args.partitions,
                    session_timeout_s=args.session_timeout)
    from faust import Worker

    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
