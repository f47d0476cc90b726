"""TLS and SASL settings map to the right options for kafka-python, aiokafka and Faust.

Real objects throughout: the SSL contexts are built from a throwaway CA made with the
``openssl`` command (the tests that need files skip when it is missing), the Faust
credentials are Faust's own classes, and Faust's own ``credentials_to_aiokafka_auth`` is
asked what it would hand aiokafka.
"""

from __future__ import annotations

import secrets
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from streams.security import (
    MECHANISMS,
    aiokafka_options,
    faust_options,
    kafka_python_options,
    ssl_context,
)
from streams.settings import Settings, SettingsError

SECRET = "correct-horse-battery-staple"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _leaf(directory: Path, name: str, san: str, usage: str) -> None:
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    (directory / f"{name}.ext").write_text(
        f"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        + (f"subjectAltName={san}\n" if san else ""))
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-set_serial", str(secrets.randbelow(2**62) + 1), "-days", "2",
             "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=directory)


def make_pki(directory: Path) -> dict[str, Path]:
    """A throwaway CA; a server certificate for 127.0.0.1/localhost; one naming another
    host; a client certificate for mutual TLS; that client key encrypted.

    Skips the calling test when ``openssl`` is not installed.
    """
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (Debian: apt-get install openssl); "
                    "it makes the throwaway CA these tests need")
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=micromoment-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _leaf(directory, "server", "DNS:localhost,IP:127.0.0.1", "serverAuth")
    _leaf(directory, "wrongname", "DNS:kafka.invalid", "serverAuth")
    _leaf(directory, "client", "", "clientAuth")
    _openssl("pkey", "-in", "client.key", "-aes256", "-passout", "pass:x", "-out", "client-enc.key",
             cwd=directory)
    names = ("ca.pem", "server.pem", "server.key", "wrongname.pem", "wrongname.key", "client.pem",
             "client.key", "client-enc.key")
    return {name: directory / name for name in names}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def settings(**variables: str) -> Settings:
    return Settings.from_env({f"MICROMOMENT_{k.upper()}": v for k, v in variables.items()})


def tls(pki: dict[str, Path], protocol: str = "SSL", **more: str) -> Settings:
    return settings(security_protocol=protocol, ssl_cafile=str(pki["ca.pem"]),
                    ssl_certfile=str(pki["client.pem"]), ssl_keyfile=str(pki["client.key"]), **more)


def sasl(protocol: str = "SASL_PLAINTEXT", mechanism: str = "SCRAM-SHA-512", **more: str) -> Settings:
    return settings(security_protocol=protocol, sasl_mechanism=mechanism, sasl_username="svc-reco",
                    sasl_password=SECRET, **more)


def ca_subjects(context: ssl.SSLContext) -> list[str]:
    return [dict(part[0] for part in cert["subject"]).get("commonName", "")
            for cert in context.get_ca_certs()]


def aiokafka_view_of_faust(options: dict[str, Any]) -> dict[str, Any]:
    """What Faust's aiokafka driver hands to every AIOKafkaConsumer/Producer it creates."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
    from faust.types.auth import to_credentials

    return dict(credentials_to_aiokafka_auth(to_credentials(options.get("broker_credentials"))))


# --- the default path is untouched -------------------------------------------------------

def test_plaintext_is_the_default_and_adds_no_option_anywhere():
    s = Settings.from_env({})
    assert s.security_protocol == "PLAINTEXT" and s.ssl_check_hostname is True
    assert kafka_python_options(s) == aiokafka_options(s) == faust_options(s) == {}
    assert ssl_context(s) is None
    assert aiokafka_view_of_faust(faust_options(s)) == {"security_protocol": "PLAINTEXT"}


# --- TLS ---------------------------------------------------------------------------------

def test_ssl_gives_every_client_a_verifying_context_with_the_ca_and_client_cert(pki):
    s = tls(pki)
    for options in (kafka_python_options(s), aiokafka_options(s)):
        assert set(options) == {"security_protocol", "ssl_context"}
        assert options["security_protocol"] == "SSL"
        context = options["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert ca_subjects(context) == ["micromoment-test-ca"]  # only our CA, not the system's
    credentials = faust_options(s)["broker_credentials"]
    import faust
    from faust.types.auth import AuthProtocol

    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol is AuthProtocol.SSL
    assert ca_subjects(credentials.context) == ["micromoment-test-ca"]
    view = aiokafka_view_of_faust(faust_options(s))
    assert view["security_protocol"] == "SSL" and view["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_client_certificate_is_loaded_for_mutual_tls(pki):
    """The context really presents client.pem: a TLS server that requires one accepts it."""
    import socket
    import threading

    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca.pem"]))
    server_side.verify_mode = ssl.CERT_REQUIRED
    server_side.load_cert_chain(pki["server.pem"], pki["server.key"])
    seen: list[Any] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with server_side.wrap_socket(conn, server_side=True) as tls_conn:
                seen.append(tls_conn.getpeercert())
                tls_conn.recv(1)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        context = kafka_python_options(tls(pki))["ssl_context"]
        with (socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
              context.wrap_socket(raw, server_hostname="127.0.0.1") as client):
            client.sendall(b"x")
        thread.join(10)
    assert seen and dict(part[0] for part in seen[0]["subject"])["commonName"] == "client"


def test_without_a_ca_file_the_system_cas_are_trusted():
    context = ssl_context(settings(security_protocol="SSL"))
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    assert "micromoment-test-ca" not in ca_subjects(context)


@pytest.mark.parametrize("raw, expected", [("false", False), ("0", False), ("no", False),
                                           ("true", True), ("1", True)])
def test_hostname_check_can_be_turned_off_but_the_ca_is_still_verified(pki, raw, expected):
    s = tls(pki, ssl_check_hostname=raw)
    assert s.ssl_check_hostname is expected
    for context in (kafka_python_options(s)["ssl_context"], aiokafka_options(s)["ssl_context"],
                    faust_options(s)["broker_credentials"].context):
        assert context.check_hostname is expected
        assert context.verify_mode == ssl.CERT_REQUIRED


def test_a_mistyped_boolean_is_an_error_not_false(pki):
    with pytest.raises(SettingsError, match="MICROMOMENT_SSL_CHECK_HOSTNAME"):
        tls(pki, ssl_check_hostname="ture")


def test_certfile_holding_the_key_too_is_enough(pki, tmp_path):
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki["client.pem"].read_bytes() + pki["client.key"].read_bytes())
    s = settings(security_protocol="SSL", ssl_cafile=str(pki["ca.pem"]), ssl_certfile=str(bundle))
    assert kafka_python_options(s)["ssl_context"].verify_mode == ssl.CERT_REQUIRED


# --- SASL --------------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_plaintext_maps_mechanism_and_credentials(mechanism):
    s = sasl("SASL_PLAINTEXT", mechanism)
    expected = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
                "sasl_plain_username": "svc-reco", "sasl_plain_password": SECRET}
    assert kafka_python_options(s) == expected
    assert aiokafka_options(s) == expected

    import faust
    from faust.types.auth import AuthProtocol, SASLMechanism

    credentials = faust_options(s)["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_PLAINTEXT
    assert credentials.mechanism is SASLMechanism(mechanism)
    assert (credentials.username, credentials.password, credentials.ssl_context) == ("svc-reco",
                                                                                     SECRET, None)
    assert aiokafka_view_of_faust(faust_options(s)) == {**expected, "ssl_context": None}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_ssl_combines_both(pki, mechanism):
    s = sasl("SASL_SSL", mechanism, ssl_cafile=str(pki["ca.pem"]))
    for options in (kafka_python_options(s), aiokafka_options(s), aiokafka_view_of_faust(faust_options(s))):
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == mechanism
        assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("svc-reco", SECRET)
        assert ca_subjects(options["ssl_context"]) == ["micromoment-test-ca"]
    from faust.types.auth import AuthProtocol

    assert faust_options(s)["broker_credentials"].protocol is AuthProtocol.SASL_SSL


def test_protocol_and_mechanism_are_case_insensitive():
    s = sasl("sasl_plaintext", "scram-sha-256")
    assert kafka_python_options(s)["security_protocol"] == "SASL_PLAINTEXT"
    assert aiokafka_options(s)["sasl_mechanism"] == "SCRAM-SHA-256"


def test_options_are_accepted_by_the_real_client_constructors(pki):
    """Each library takes the options as they are (no connection is made)."""
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from kafka.producer.kafka import KafkaProducer

    s = sasl("SASL_SSL", "SCRAM-SHA-256", ssl_cafile=str(pki["ca.pem"]))
    config = dict(KafkaProducer.DEFAULT_CONFIG)
    assert set(kafka_python_options(s)) <= set(config)  # kafka-python rejects unknown keys

    async def build() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", **aiokafka_options(s))
        assert consumer._client._security_protocol == "SASL_SSL"
        assert consumer._client._sasl_mechanism == "SCRAM-SHA-256"

    asyncio.run(build())


# --- secrets -----------------------------------------------------------------------------

def test_the_password_never_appears_in_repr_or_str():
    s = sasl("SASL_SSL", "PLAIN")
    assert s.sasl_password == SECRET
    assert SECRET not in repr(s) and SECRET not in str(s)
    assert "svc-reco" in repr(s)  # the username is not a secret and helps debugging
    credentials = faust_options(s)["broker_credentials"]
    assert SECRET not in repr(credentials) and SECRET not in str(credentials)


# --- validation --------------------------------------------------------------------------

@pytest.mark.parametrize("variables, fragment", [
    ({"security_protocol": "TLS"}, "MICROMOMENT_SECURITY_PROTOCOL must be one of"),
    ({"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": "p"},
     "MICROMOMENT_SASL_MECHANISM is required"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI", "sasl_username": "u",
      "sasl_password": "p"}, "MICROMOMENT_SASL_MECHANISM must be one of"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_password": "p"},
     "MICROMOMENT_SASL_USERNAME is required"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
     "MICROMOMENT_SASL_PASSWORD is required"),
    ({"sasl_username": "u"},
     "MICROMOMENT_SASL_USERNAME is set but MICROMOMENT_SECURITY_PROTOCOL is PLAINTEXT"),
    ({"security_protocol": "SSL", "sasl_mechanism": "PLAIN"}, "does not use SASL"),
    ({"ssl_cafile": "/etc/hostname"}, "MICROMOMENT_SSL_CAFILE is set but MICROMOMENT_SECURITY_PROTOCOL"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u",
      "sasl_password": "p", "ssl_cafile": "/etc/hostname"}, "does not use TLS"),
    ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"},
     "MICROMOMENT_SSL_CAFILE: no such file '/nonexistent/ca.pem'"),
    ({"security_protocol": "SSL", "ssl_certfile": "/nonexistent/c.pem"},
     "MICROMOMENT_SSL_CERTFILE: no such file"),
    ({"security_protocol": "SSL", "ssl_keyfile": "/nonexistent/k.pem"},
     "MICROMOMENT_SSL_KEYFILE: no such file"),
])
def test_unusable_configurations_are_rejected_naming_the_variable(variables, fragment):
    with pytest.raises(SettingsError, match=fragment.replace("(", r"\(")) as info:
        settings(**variables)
    assert SECRET not in str(info.value)


def test_bad_pem_files_are_reported_under_their_variable(pki, tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(SettingsError, match="MICROMOMENT_SSL_CAFILE .* not a readable PEM CA bundle"):
        settings(security_protocol="SSL", ssl_cafile=str(garbage))
    with pytest.raises(SettingsError, match="MICROMOMENT_SSL_CERTFILE .* matching key"):
        settings(security_protocol="SSL", ssl_certfile=str(pki["client.pem"]),
                 ssl_keyfile=str(pki["server.key"]))  # another certificate's key
    with pytest.raises(SettingsError, match="MICROMOMENT_SSL_KEYFILE is set without"):
        settings(security_protocol="SSL", ssl_keyfile=str(pki["client.key"]))


def test_an_encrypted_key_fails_with_advice_instead_of_prompting(pki):
    with pytest.raises(SettingsError, match="MICROMOMENT_SSL_KEYFILE is an encrypted key"):
        settings(security_protocol="SSL", ssl_certfile=str(pki["client.pem"]),
                 ssl_keyfile=str(pki["client-enc.key"]))


def test_every_client_construction_site_passes_the_options():
    """A cheap guard without a broker (tests/integration/test_tls.py proves it for real).

    Read from the sources: importing streams.app would build the app from this process's
    environment, once for the whole session."""
    source = (Path(__file__).resolve().parents[2] / "streams" / "app.py").read_text()
    assert "**faust_options(settings)" in source
    for module, call in (("clients.py", "kafka_python_options(settings)"),
                         ("admin.py", "kafka_python_options(settings)"),
                         ("agents.py", "aiokafka_options(settings)")):
        text = (Path(__file__).resolve().parents[2] / "streams" / module).read_text()
        assert call in text, f"streams/{module} does not pass {call}"
