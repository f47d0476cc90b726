"""TLS and SASL for every Kafka client the project uses, from one set of settings.

Three client libraries talk to Kafka here: kafka-python (the CLI's producer, consumer and
topic admin), aiokafka (the worker's catalog replicator) and Faust (the worker itself, on
aiokafka underneath). Each spells its security options a little differently, so this
module turns the ``MICROMOMENT_SECURITY_PROTOCOL`` / ``MICROMOMENT_SSL_*`` /
``MICROMOMENT_SASL_*`` settings into the keyword arguments of each, as pure functions:
the wiring is testable without a broker, and no client can be left out by accident.

* One TLS policy for all clients: :func:`ssl_context` builds an :class:`ssl.SSLContext`
  with aiokafka's ``create_ssl_context`` (certificate verification always on, the CA file
  or else the system's CAs, an optional client certificate for mutual TLS) and the
  ``MICROMOMENT_SSL_CHECK_HOSTNAME`` switch. kafka-python, aiokafka and Faust all accept a
  ready context, so they cannot disagree about what is trusted.
* SASL mechanisms: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, which kafka-python, aiokafka
  and Faust (``faust.SASLCredentials``, whose mechanism enum includes both SCRAM variants
  and is passed straight to aiokafka) all support.
* ``PLAINTEXT`` (the default) yields ``{}`` from every function, so the default path
  passes no extra argument to any client.

Secrets: the SASL password only ever leaves here inside client options; Faust's
``SASLCredentials`` repr shows the username only, and ``Settings`` keeps the password out
of its repr.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from streams.settings import SettingsError

__all__ = ["MECHANISMS", "PROTOCOLS", "aiokafka_options", "faust_options", "kafka_python_options",
           "ssl_context", "validate_security"]

#: Kafka's ``security.protocol`` values.
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
#: SASL mechanisms every client here supports (GSSAPI and OAUTHBEARER need more settings).
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

_TLS = ("SSL", "SASL_SSL")
_SASL = ("SASL_PLAINTEXT", "SASL_SSL")


def _protocol(settings: Any) -> str:
    return (settings.security_protocol or "PLAINTEXT").strip().upper()


def _mechanism(settings: Any) -> str:
    return (settings.sasl_mechanism or "").strip().upper()


def validate_security(settings: Any) -> None:
    """Reject a security configuration no client could use, naming the variable.

    Settings that would be silently ignored are errors too (TLS files with a plaintext
    protocol, SASL credentials without SASL): the likely intent was a secure connection.

    >>> from types import SimpleNamespace as S
    >>> base = dict(ssl_cafile="", ssl_certfile="", ssl_keyfile="", ssl_check_hostname=True,
    ...             sasl_mechanism="", sasl_username="", sasl_password="")
    >>> validate_security(S(security_protocol="PLAINTEXT", **base))
    >>> validate_security(S(security_protocol="TLS", **base))
    Traceback (most recent call last):
    ...
    streams.settings.SettingsError: MICROMOMENT_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, not 'TLS'
    """
    protocol = _protocol(settings)
    if protocol not in PROTOCOLS:
        raise SettingsError(f"MICROMOMENT_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, "
                            f"not {settings.security_protocol!r}")
    files = {"MICROMOMENT_SSL_CAFILE": settings.ssl_cafile,
             "MICROMOMENT_SSL_CERTFILE": settings.ssl_certfile,
             "MICROMOMENT_SSL_KEYFILE": settings.ssl_keyfile}
    sasl = {"MICROMOMENT_SASL_MECHANISM": settings.sasl_mechanism,
            "MICROMOMENT_SASL_USERNAME": settings.sasl_username,
            "MICROMOMENT_SASL_PASSWORD": settings.sasl_password}
    if protocol not in _TLS:
        given = [name for name, value in files.items() if value]
        if given:
            raise SettingsError(f"{given[0]} is set but MICROMOMENT_SECURITY_PROTOCOL is {protocol}, "
                                "which does not use TLS; set it to SSL or SASL_SSL")
    if protocol not in _SASL:
        given = [name for name, value in sasl.items() if value]
        if given:
            raise SettingsError(f"{given[0]} is set but MICROMOMENT_SECURITY_PROTOCOL is {protocol}, "
                                "which does not use SASL; set it to SASL_SSL or SASL_PLAINTEXT")
    else:
        mechanism = _mechanism(settings)
        if not mechanism:
            raise SettingsError(f"MICROMOMENT_SASL_MECHANISM is required with {protocol}: "
                                f"one of {', '.join(MECHANISMS)}")
        if mechanism not in MECHANISMS:
            raise SettingsError(f"MICROMOMENT_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}, "
                                f"not {settings.sasl_mechanism!r}")
        for name in ("MICROMOMENT_SASL_USERNAME", "MICROMOMENT_SASL_PASSWORD"):
            if not sasl[name]:
                raise SettingsError(f"{name} is required with {protocol}")
    if protocol in _TLS:
        for name, path in files.items():
            if path and not os.path.isfile(path):
                raise SettingsError(f"{name}: no such file {path!r}")
        if settings.ssl_keyfile and not settings.ssl_certfile:
            raise SettingsError("MICROMOMENT_SSL_KEYFILE is set without MICROMOMENT_SSL_CERTFILE "
                                "(the client certificate it belongs to)")
        ssl_context(settings)  # loads the files now: a bad PEM fails at start, with its variable


def _no_key_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise SettingsError("MICROMOMENT_SSL_KEYFILE is an encrypted key; decrypt it "
                        "(openssl pkey -in key.pem -out plain.pem) and keep it private by file mode")


def ssl_context(settings: Any) -> ssl.SSLContext | None:
    """The client TLS context for ``SSL``/``SASL_SSL``, else ``None``.

    Built with :func:`aiokafka.helpers.create_ssl_context` (the CA file, or the system's
    CAs when none is given; ``CERT_REQUIRED``), then the client certificate for mutual TLS,
    then ``check_hostname`` from ``MICROMOMENT_SSL_CHECK_HOSTNAME``. Turning the hostname
    check off still verifies the chain against the CA. The steps are separate so that an
    unreadable file is reported under its own variable.
    """
    if _protocol(settings) not in _TLS:
        return None
    from aiokafka.helpers import create_ssl_context

    try:
        context = create_ssl_context(cafile=settings.ssl_cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"MICROMOMENT_SSL_CAFILE {settings.ssl_cafile!r} is not a readable "
                            f"PEM CA bundle: {exc}") from None
    if settings.ssl_certfile:
        try:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile or None,
                                    password=_no_key_password)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(
                f"MICROMOMENT_SSL_CERTFILE {settings.ssl_certfile!r} / MICROMOMENT_SSL_KEYFILE "
                f"{settings.ssl_keyfile!r}: not a PEM certificate with its matching key: {exc}") from None
    context.check_hostname = bool(settings.ssl_check_hostname)
    return context


def _sasl_options(settings: Any) -> dict[str, Any]:
    return {"sasl_mechanism": _mechanism(settings),
            "sasl_plain_username": settings.sasl_username,
            "sasl_plain_password": settings.sasl_password}


def kafka_python_options(settings: Any) -> dict[str, Any]:
    """Keyword arguments for kafka-python's ``KafkaProducer``/``KafkaConsumer``/``KafkaAdminClient``.

    A ready ``ssl_context`` rather than ``ssl_cafile``/``ssl_certfile``/…: kafka-python
    then uses it as is (its own ``ssl_check_hostname`` applies only to contexts it builds),
    so it trusts exactly what aiokafka and Faust trust.

    >>> from types import SimpleNamespace as S
    >>> kafka_python_options(S(security_protocol="PLAINTEXT"))
    {}
    """
    protocol = _protocol(settings)
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in _TLS:
        options["ssl_context"] = ssl_context(settings)
    if protocol in _SASL:
        options.update(_sasl_options(settings))
    return options


def aiokafka_options(settings: Any) -> dict[str, Any]:
    """Keyword arguments for aiokafka's ``AIOKafkaProducer``/``AIOKafkaConsumer``.

    aiokafka requires ``ssl_context`` for ``SSL`` and ``SASL_SSL``; its SASL option names
    are kafka-python's.

    >>> from types import SimpleNamespace as S
    >>> aiokafka_options(S(security_protocol="SASL_PLAINTEXT", sasl_mechanism="scram-sha-512",
    ...                    sasl_username="svc", sasl_password="pw"))["sasl_mechanism"]
    'SCRAM-SHA-512'
    """
    return kafka_python_options(settings)  # same names and values, by design of aiokafka


def faust_options(settings: Any) -> dict[str, Any]:
    """Keyword arguments for ``faust.App(...)``: ``broker_credentials``.

    ``SSL`` → ``faust.SSLCredentials(context)``; ``SASL_PLAINTEXT`` →
    ``faust.SASLCredentials(username, password, mechanism)``; ``SASL_SSL`` → the same with
    ``ssl_context`` (Faust then sets its protocol to ``SASL_SSL``). Faust's aiokafka driver
    (``credentials_to_aiokafka_auth``) turns these into the same aiokafka options as
    :func:`aiokafka_options` for its consumer, producer and topic creation; SCRAM works,
    since the mechanism is passed through to aiokafka unchanged.
    """
    protocol = _protocol(settings)
    if protocol == "PLAINTEXT":
        return {}
    import faust

    context = ssl_context(settings)
    if protocol == "SSL":
        return {"broker_credentials": faust.SSLCredentials(context)}
    return {"broker_credentials": faust.SASLCredentials(
        username=settings.sasl_username, password=settings.sasl_password,
        mechanism=_mechanism(settings), ssl_context=context)}
