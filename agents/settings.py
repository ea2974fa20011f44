"""Service configuration, read from environment variables.

Every setting has a sane local default (broker on 127.0.0.1:9092, web on 127.0.0.1:6066).
CLI flags override the environment; the environment overrides the defaults. Every variable
(these and the worker's tuning, `agents.worker.app.WorkerOptions`) is documented in one table,
docs/configuration.md; a test fails when code and table disagree.

>>> s = Settings.from_env({"REFINERY_TOPIC_PREFIX": "t."})
>>> s.topic("messages")
't.messages'
>>> s.bootstrap
'127.0.0.1:9092'
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Mapping
from pathlib import Path

from schemas.topics import TOPICS as _REGISTRY

__all__ = [
    "PROJECT_ROOT",
    "SASL_MECHANISMS",
    "SECURITY_PROTOCOLS",
    "TOPICS",
    "KafkaSecurity",
    "Settings",
    "datasets_dir",
    "env_value",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: The names (without prefix) of the topics of the registry, `schemas.topics.TOPICS`.
TOPICS: tuple[str, ...] = tuple(_REGISTRY)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Settings of the service; docs/configuration.md describes each variable."""

    #: REFINERY_KAFKA_BOOTSTRAP: an external broker; when set, nothing is fetched or started.
    external_bootstrap: str | None = None
    #: REFINERY_KAFKA_PORT: port of the local broker (listens on 127.0.0.1 only).
    kafka_port: int = 9092
    #: REFINERY_HOME: where the local broker's jars, data, logs and pid file live.
    home: Path = PROJECT_ROOT / ".kafka"
    #: REFINERY_TOPIC_PREFIX
    topic_prefix: str = "refinery."
    #: REFINERY_PARTITIONS: partitions of the dataset-keyed topics.
    partitions: int = 4
    #: REFINERY_WEB_HOST / REFINERY_WEB_PORT: the worker's web server (API and /metrics).
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    #: REFINERY_API_TOKEN: bearer token required by every route but /healthz, when set.
    api_token: str | None = None
    #: REFINERY_SNAPSHOT_KEY: HMAC key authenticating snapshots.
    snapshot_key: str = "refinery-local-dev-key"
    #: REFINERY_MAX_BODY_BYTES: largest accepted message body (UTF-8 bytes).
    max_body_bytes: int = 1_000_000
    #: REFINERY_KAFKA_SECURITY_PROTOCOL, REFINERY_KAFKA_SASL_* and REFINERY_KAFKA_SSL_*: how every
    #: Kafka client authenticates and encrypts (`KafkaSecurity`; clients: `agents.kafka.security`).
    kafka_security: KafkaSecurity = dataclasses.field(default_factory=lambda: KafkaSecurity())

    @property
    def bootstrap(self) -> str:
        """The brokers to connect to: the external ones, else the local broker's address."""
        return self.external_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def uses_local_broker(self) -> bool:
        """Whether the broker is the local one that `agents.kafka.broker` fetches and starts."""
        return self.external_bootstrap is None

    def topic(self, name: str) -> str:
        """The full name of topic ``name``: the prefix, then the name."""
        return f"{self.topic_prefix}{name}"

    def topics(self) -> dict[str, str]:
        """``{name: full name}`` of every topic of the registry.

        >>> Settings(topic_prefix="t.").topics()["snapshots"]
        't.snapshots'
        """
        return {name: self.topic(name) for name in TOPICS}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()

        def get(name: str, default, cast=str):
            return env_value(env, name, default, cast)

        return cls(
            external_bootstrap=get("REFINERY_KAFKA_BOOTSTRAP", None),
            kafka_port=get("REFINERY_KAFKA_PORT", defaults.kafka_port, int),
            home=Path(get("REFINERY_HOME", str(defaults.home))),
            topic_prefix=get("REFINERY_TOPIC_PREFIX", defaults.topic_prefix),
            partitions=get("REFINERY_PARTITIONS", defaults.partitions, int),
            web_host=get("REFINERY_WEB_HOST", defaults.web_host),
            web_port=get("REFINERY_WEB_PORT", defaults.web_port, int),
            api_token=get("REFINERY_API_TOKEN", None),
            snapshot_key=get("REFINERY_SNAPSHOT_KEY", defaults.snapshot_key),
            max_body_bytes=get("REFINERY_MAX_BODY_BYTES", defaults.max_body_bytes, int),
            kafka_security=KafkaSecurity.from_env(env).checked(),
        )


#: REFINERY_KAFKA_SECURITY_PROTOCOL: Kafka's own names for how a client connects.
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
#: REFINERY_KAFKA_SASL_MECHANISM: the SASL mechanisms every client of the service supports.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclasses.dataclass(frozen=True)
class KafkaSecurity:
    """How every Kafka client of the service (worker, commands, admin, side readers) authenticates
    and encrypts: one object, turned into client arguments by `agents.kafka.security`.

    `from_env` only reads the variables; `checked` says what is wrong with them, naming the
    variable (`Settings.from_env` calls it, so every command stops at start with one line), and
    reads the password file. The password never shows in ``repr``.

    >>> s = KafkaSecurity.from_env({
    ...     "REFINERY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "REFINERY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    ...     "REFINERY_KAFKA_SASL_USERNAME": "alice", "REFINERY_KAFKA_SASL_PASSWORD": "s3cret"}).checked()
    >>> s.uses_tls, s.uses_sasl, "s3cret" in repr(s)
    (True, True, False)
    >>> KafkaSecurity(protocol="SASL_SSL").checked()
    Traceback (most recent call last):
    ...
    ValueError: REFINERY_KAFKA_SASL_USERNAME: required with REFINERY_KAFKA_SECURITY_PROTOCOL=SASL_SSL
    >>> KafkaSecurity(protocol="TLS").checked()
    Traceback (most recent call last):
    ...
    ValueError: REFINERY_KAFKA_SECURITY_PROTOCOL: expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'
    """

    #: REFINERY_KAFKA_SECURITY_PROTOCOL: one of `SECURITY_PROTOCOLS`.
    protocol: str = "PLAINTEXT"
    #: REFINERY_KAFKA_SASL_MECHANISM: one of `SASL_MECHANISMS` (SASL protocols only).
    sasl_mechanism: str = "PLAIN"
    #: REFINERY_KAFKA_SASL_USERNAME
    username: str | None = None
    #: REFINERY_KAFKA_SASL_PASSWORD (after `checked`: also the content of the password file).
    password: str | None = dataclasses.field(default=None, repr=False)
    #: REFINERY_KAFKA_SASL_PASSWORD_FILE: a file holding the password (instead of the variable).
    password_file: Path | None = None
    #: REFINERY_KAFKA_SSL_CAFILE: PEM certificates to trust (default: the system's).
    cafile: Path | None = None
    #: REFINERY_KAFKA_SSL_CERTFILE / REFINERY_KAFKA_SSL_KEYFILE: the client's certificate and key (PEM).
    certfile: Path | None = None
    keyfile: Path | None = None
    #: REFINERY_KAFKA_SSL_KEY_PASSWORD: the password of an encrypted key.
    key_password: str | None = dataclasses.field(default=None, repr=False)
    #: REFINERY_KAFKA_SSL_CHECK_HOSTNAME: whether the broker's certificate must name its host.
    check_hostname: bool = True

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        env = os.environ if env is None else env

        def path(name: str) -> Path | None:
            raw = env_value(env, name, None)
            return None if raw is None else Path(raw)

        return cls(
            protocol=env_value(env, "REFINERY_KAFKA_SECURITY_PROTOCOL", cls.protocol),
            sasl_mechanism=env_value(env, "REFINERY_KAFKA_SASL_MECHANISM", cls.sasl_mechanism),
            username=env_value(env, "REFINERY_KAFKA_SASL_USERNAME", None),
            password=env_value(env, "REFINERY_KAFKA_SASL_PASSWORD", None),
            password_file=path("REFINERY_KAFKA_SASL_PASSWORD_FILE"),
            cafile=path("REFINERY_KAFKA_SSL_CAFILE"),
            certfile=path("REFINERY_KAFKA_SSL_CERTFILE"),
            keyfile=path("REFINERY_KAFKA_SSL_KEYFILE"),
            key_password=env_value(env, "REFINERY_KAFKA_SSL_KEY_PASSWORD", None),
            check_hostname=env_value(env, "REFINERY_KAFKA_SSL_CHECK_HOSTNAME", cls.check_hostname, _boolean),
        )

    def checked(self) -> KafkaSecurity:
        """This, with the password file read; a ValueError naming the variable when a value is
        unknown, a file is missing, or a setting does not apply to the protocol."""
        protocol = "REFINERY_KAFKA_SECURITY_PROTOCOL"
        if self.protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"{protocol}: expected one of {', '.join(SECURITY_PROTOCOLS)}, got {self.protocol!r}")
        sasl = {
            "REFINERY_KAFKA_SASL_USERNAME": self.username,
            "REFINERY_KAFKA_SASL_PASSWORD": self.password,
            "REFINERY_KAFKA_SASL_PASSWORD_FILE": self.password_file,
        }
        tls = {
            "REFINERY_KAFKA_SSL_CAFILE": self.cafile,
            "REFINERY_KAFKA_SSL_CERTFILE": self.certfile,
            "REFINERY_KAFKA_SSL_KEYFILE": self.keyfile,
            "REFINERY_KAFKA_SSL_KEY_PASSWORD": self.key_password,
            "REFINERY_KAFKA_SSL_CHECK_HOSTNAME": None if self.check_hostname else False,
        }
        for uses, group, protocols in (
            (self.uses_sasl, sasl, "SASL_SSL or SASL_PLAINTEXT"),
            (self.uses_tls, tls, "SSL or SASL_SSL"),
        ):
            given = [name for name, value in group.items() if value is not None]
            if given and not uses:
                raise ValueError(f"{given[0]}: only used when {protocol} is {protocols}, not {self.protocol}")
        for name, file in (*list(sasl.items())[2:], *list(tls.items())[:3]):
            if file is not None and not Path(file).is_file():
                raise ValueError(f"{name}: no file {file}")
        if self.keyfile is not None and self.certfile is None:
            raise ValueError("REFINERY_KAFKA_SSL_KEYFILE: needs REFINERY_KAFKA_SSL_CERTFILE, the key's certificate")
        if self.key_password is not None and self.certfile is None:
            raise ValueError("REFINERY_KAFKA_SSL_KEY_PASSWORD: needs REFINERY_KAFKA_SSL_CERTFILE, a client certificate")
        if self.uses_tls:
            self.tls_context()  # files that do not load: one line now, not a failure inside a client
        if not self.uses_sasl:
            return self
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise ValueError(
                f"REFINERY_KAFKA_SASL_MECHANISM: expected one of {', '.join(SASL_MECHANISMS)}, got {self.sasl_mechanism!r}"
            )
        if not self.username:
            raise ValueError(f"REFINERY_KAFKA_SASL_USERNAME: required with {protocol}={self.protocol}")
        if (self.password is None) == (self.password_file is None):
            raise ValueError(
                f"REFINERY_KAFKA_SASL_PASSWORD or REFINERY_KAFKA_SASL_PASSWORD_FILE: exactly one is required "
                f"with {protocol}={self.protocol}"
            )
        if self.password_file is None:
            return self
        password = self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        if not password:
            raise ValueError(f"REFINERY_KAFKA_SASL_PASSWORD_FILE: {self.password_file} is empty")
        return dataclasses.replace(self, password=password)

    def tls_context(self) -> ssl.SSLContext:
        """The TLS context of these settings: the CA (else the system's), the client certificate if
        any, the hostname check unless turned off (a certificate is always verified). A file that
        does not load is a ValueError naming its variable; an encrypted key without
        REFINERY_KAFKA_SSL_KEY_PASSWORD is one too (OpenSSL would otherwise ask at the terminal)."""
        try:
            context = ssl.create_default_context(cafile=str(self.cafile) if self.cafile else None)
        except (ssl.SSLError, OSError) as error:
            raise ValueError(f"REFINERY_KAFKA_SSL_CAFILE: {self.cafile} holds no PEM certificate ({error})") from None
        context.check_hostname = self.check_hostname
        if self.certfile is not None:
            try:
                context.load_cert_chain(
                    str(self.certfile),
                    str(self.keyfile) if self.keyfile else None,
                    self.key_password if self.key_password is not None else _no_password,
                )
            except (ssl.SSLError, OSError) as error:
                raise ValueError(
                    f"REFINERY_KAFKA_SSL_CERTFILE: {self.certfile} (key: {self.keyfile or 'in the same file'}) does not "
                    f"load ({error}): PEM certificate and key that match, and REFINERY_KAFKA_SSL_KEY_PASSWORD for an "
                    f"encrypted key"
                ) from None
        return context


def _no_password() -> str:
    return ""  # an encrypted key with no password given fails to load, instead of prompting


def _boolean(raw: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``), any case."""
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(raw)


_boolean.__name__ = "true or false"  # what env_value's error says was expected


def env_value(env: Mapping[str, str], name: str, default, cast=str):
    """``cast(env[name])``, or ``default`` when unset or empty; a value that does not cast is a
    ValueError naming the variable.

    >>> env_value({"REFINERY_PARTITIONS": "x"}, "REFINERY_PARTITIONS", 4, int)
    Traceback (most recent call last):
    ...
    ValueError: REFINERY_PARTITIONS: expected int, got 'x'
    """
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        raise ValueError(f"{name}: expected {getattr(cast, '__name__', 'a valid value')}, got {raw!r}") from None


def datasets_dir(env: Mapping[str, str] | None = None) -> Path:
    """The shared real data sets: REFINERY_DATASETS, else ``../shared/datasets`` beside the project."""
    env = os.environ if env is None else env
    return Path(env.get("REFINERY_DATASETS") or PROJECT_ROOT.parent / "shared" / "datasets")
