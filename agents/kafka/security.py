"""Kafka client arguments from one settings object, for every client of the service.

Each Kafka client of Refinery is built from `agents.settings.Settings` (its bootstrap and its
`agents.settings.KafkaSecurity`) through one of these, so that TLS and SASL apply everywhere at
once:

- `aiokafka_kwargs`: aiokafka (the shell's side readers, `agents.kafka.ranges`);
- `kafka_python_kwargs`: kafka-python (`refinery send`, `tail`, `status`, `agents.kafka.admin`);
- `faust_credentials`: Faust's ``broker_credentials`` (the worker's consumer and producer).

All three share one ``ssl.SSLContext`` (`ssl_context`), so the CA, the client certificate and
the hostname check are the same for every client. `explain` turns a failure to connect into one
line a person can act on::

    >>> from agents.settings import Settings
    >>> aiokafka_kwargs(Settings())
    {'bootstrap_servers': '127.0.0.1:9092', 'security_protocol': 'PLAINTEXT'}
"""

from __future__ import annotations

import errno
import socket
import ssl
from typing import Any

from agents.settings import KafkaSecurity, Settings

__all__ = [
    "KafkaAccessError",
    "aiokafka_kwargs",
    "as_settings",
    "check_access",
    "explain",
    "faust_credentials",
    "kafka_python_kwargs",
    "ssl_context",
]


class KafkaAccessError(RuntimeError):
    """The broker refused this client (an untrusted certificate, a refused login, a protocol the
    listener does not speak); the message is one line saying which and what to do."""


def as_settings(where: Settings | str) -> Settings:
    """``where`` itself, or, for a bare bootstrap string, the settings of a plaintext client of it.

    >>> as_settings("kafka:9092").kafka_security.protocol
    'PLAINTEXT'
    """
    return where if isinstance(where, Settings) else Settings(external_bootstrap=where)


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext:
    """The TLS context of ``security`` (`agents.settings.KafkaSecurity.tls_context`): its CA
    (else the system's), its client certificate if any, and the hostname check unless turned off
    (a certificate is always verified)."""
    return security.tls_context()


def _auth(settings: Settings) -> dict[str, Any]:
    security = settings.kafka_security
    kwargs: dict[str, Any] = {"security_protocol": security.protocol}
    if security.uses_tls:
        kwargs["ssl_context"] = ssl_context(security)
    if security.uses_sasl:
        kwargs.update(
            sasl_mechanism=security.sasl_mechanism,
            sasl_plain_username=security.username,
            sasl_plain_password=security.password,
        )
    return kwargs


def aiokafka_kwargs(where: Settings | str) -> dict[str, Any]:
    """``bootstrap_servers`` and the security arguments of an aiokafka client (consumer,
    producer or admin) for ``where`` (settings, or a plaintext bootstrap string)."""
    settings = as_settings(where)
    return {"bootstrap_servers": settings.bootstrap, **_auth(settings)}


def kafka_python_kwargs(where: Settings | str) -> dict[str, Any]:
    """``bootstrap_servers`` and the security arguments of a kafka-python client for ``where``
    (settings, or a plaintext bootstrap string).

    >>> kafka_python_kwargs("kafka:9093")
    {'bootstrap_servers': 'kafka:9093', 'security_protocol': 'PLAINTEXT'}
    """
    # kafka-python takes the same names as aiokafka; its ssl_context overrides its ssl_* options.
    settings = as_settings(where)
    return {"bootstrap_servers": settings.bootstrap, **_auth(settings)}


def faust_credentials(settings: Settings):
    """Faust's ``broker_credentials`` for ``settings``: None for PLAINTEXT, else SSL or SASL
    credentials carrying the same `ssl_context`."""
    from faust.auth import SASLCredentials, SSLCredentials

    security = settings.kafka_security
    if security.uses_sasl:
        credentials = SASLCredentials(
            username=security.username,
            password=security.password,
            mechanism=security.sasl_mechanism,
            ssl_context=ssl_context(security) if security.uses_tls else None,
        )
        return credentials
    if security.uses_tls:
        return SSLCredentials(ssl_context(security))
    return None


def explain(error: BaseException, settings: Settings) -> str:
    """One line saying why connecting to Kafka failed and what to do, for ``error`` raised by any
    client (or found in its causes): an untrusted or mismatched certificate, a refused SASL login,
    a TLS/plaintext mix-up; else the error itself."""
    security = settings.kafka_security
    where = f"Kafka at {settings.bootstrap} ({security.protocol})"
    for cause in _causes(error):
        text = str(cause)
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or _first_line(text)
            if "mismatch" in text.lower():
                return (
                    f"{where}: the broker's certificate does not name the host you connect to ({reason}): "
                    f"connect by a name it carries, or set REFINERY_KAFKA_SSL_CHECK_HOSTNAME=false"
                )
            return (
                f"{where}: the broker's certificate is not trusted ({reason}): set "
                f"REFINERY_KAFKA_SSL_CAFILE to the CA that signed it (now: {security.cafile or 'the system CAs'})"
            )
        if "authentication" in text.lower() and ("sasl" in text.lower() or "credentials" in text.lower()):
            return (
                f"{where}: SASL {security.sasl_mechanism} login refused for user {security.username!r}: check "
                f"REFINERY_KAFKA_SASL_USERNAME and REFINERY_KAFKA_SASL_PASSWORD(_FILE) ({_first_line(text)})"
            )
        if isinstance(cause, ssl.SSLError) and "CERTIFICATE" in str(getattr(cause, "reason", "")):
            return (
                f"{where}: the broker refused the client's certificate ({getattr(cause, 'reason', text)}): set REFINERY_KAFKA_SSL_CERTFILE "
                f"and REFINERY_KAFKA_SSL_KEYFILE to a certificate signed by a CA the broker trusts"
            )
        if isinstance(cause, (ssl.SSLError, ConnectionResetError)) or text.endswith("closed"):
            return (
                f"{where}: the connection failed during the handshake ({_first_line(text) or type(cause).__name__}): "
                f"does this listener speak {security.protocol}? (REFINERY_KAFKA_SECURITY_PROTOCOL)"
                + (
                    "; one that requires client certificates also needs REFINERY_KAFKA_SSL_CERTFILE"
                    if security.uses_tls and security.certfile is None
                    else ""
                )
            )
    return f"{where}: {_first_line(str(error)) or type(error).__name__}"


def check_access(where: Settings | str, timeout: float = 15.0) -> bool:
    """Connect once to the first bootstrap broker that answers, with the TLS and SASL of
    ``where``; True when it accepted the client, False when none could be reached, or none
    finished the handshake within ``timeout`` seconds (a broker still starting: not a refusal).

    Raises `KafkaAccessError` (its message is `explain`'s line) when a broker answered but refused
    the client: every such mismatch seen fails at once, none hangs. The clients themselves report
    a refusal only as a failure to bootstrap, after their own timeout (kafka-python), or in a log
    line while retrying (aiokafka, Faust): so commands and the worker ask this first.
    Synchronous: call it before an event loop runs.
    """
    import asyncio

    settings = as_settings(where)

    async def attempt(host: str, port: int) -> None:
        from aiokafka.conn import create_conn

        auth = _auth(settings)
        conn = await create_conn(
            host, port, client_id="refinery-access-check", request_timeout_ms=int(timeout * 1000), **auth
        )
        conn.close()

    for server in settings.bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if not port.isdigit():
            continue  # not host:port: the clients will say so
        try:
            asyncio.run(asyncio.wait_for(attempt(host or "127.0.0.1", int(port)), timeout))
            return True
        except (TimeoutError, ConnectionRefusedError, socket.gaierror):
            continue  # nothing there: not a refusal of this client (the clients will say so)
        except OSError as error:
            if error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                continue
            raise KafkaAccessError(explain(error, settings)) from error
        except Exception as error:
            raise KafkaAccessError(explain(error, settings)) from error
    return False


def _causes(error: BaseException):
    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        stack.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
