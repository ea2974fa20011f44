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
import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path

from schemas.topics import TOPICS as _REGISTRY

__all__ = [
    "PROJECT_ROOT",
    "DEV_SNAPSHOT_KEY",
    "SASL_MECHANISMS",
    "SECURITY_PROTOCOLS",
    "TOPICS",
    "KafkaSecurity",
    "SettingError",
    "Settings",
    "check_range",
    "datasets_dir",
    "env_value",
    "is_loopback",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: The names (without prefix) of the topics of the registry, `schemas.topics.TOPICS`.
TOPICS: tuple[str, ...] = tuple(_REGISTRY)

#: The built-in snapshot key: fine on a laptop, refused where others can reach the worker.
DEV_SNAPSHOT_KEY = "refinery-local-dev-key"


class SettingError(ValueError):
    """A setting out of its allowed range; the message is one line naming the variable.

    >>> print(SettingError("REFINERY_PARTITIONS", "an integer in [1, 10000]", 0))
    REFINERY_PARTITIONS: expected an integer in [1, 10000], got 0
    """

    def __init__(self, variable: str, expected: str, found: object) -> None:
        super().__init__(f"{variable}: expected {expected}, got {found!r}")
        self.variable = variable

    @classmethod
    def line(cls, text: str) -> SettingError:
        """The error whose message is ``text``, a line that starts with the variable's name."""
        error = cls(text.partition(":")[0], "", "")
        error.args = (text,)
        return error


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
    snapshot_key: str = DEV_SNAPSHOT_KEY
    #: REFINERY_MAX_BODY_BYTES: largest accepted message body (UTF-8 bytes).
    max_body_bytes: int = 1_000_000
    #: REFINERY_KAFKA_SECURITY_PROTOCOL, REFINERY_KAFKA_SASL_* and REFINERY_KAFKA_SSL_*: how every
    #: Kafka client authenticates and encrypts (`KafkaSecurity`; clients: `agents.kafka.security`).
    kafka_security: KafkaSecurity = dataclasses.field(default_factory=lambda: KafkaSecurity())

    # -- hardening (issue 13): size budgets, memory caps, safe defaults. docs/service.md,
    # "Size budgets" and "Memory budget", derives each from the others; `agents.worker.sizes`
    # checks they add up at start-up.
    #: REFINERY_MAX_RECORD_BYTES: the worker producer's max_request_size (largest record it sends).
    max_record_bytes: int = 1_048_576
    #: REFINERY_MAX_INPUT_BYTES: largest accepted input record (the value of one message or review).
    max_input_bytes: int = 1_040_000
    #: REFINERY_MAX_ID_CHARS: longest dataset name, message id or thread id.
    max_id_chars: int = 256
    #: REFINERY_MAX_LABEL_CHARS: longest label name (the contract allows at most 256).
    max_label_chars: int = 256
    #: REFINERY_MAX_LABELS_PER_REVIEW: labels (and extraction fields) one review may carry.
    max_labels_per_review: int = 50
    #: REFINERY_MAX_METADATA_KEYS / REFINERY_MAX_METADATA_BYTES: a message's user properties.
    max_metadata_keys: int = 64
    max_metadata_bytes: int = 16_384
    #: REFINERY_MAX_LABELS_PER_DATASET: labels (with implied parents) a dataset's taxonomy may hold.
    max_labels_per_dataset: int = 200
    #: REFINERY_MAX_DATASETS_PER_PARTITION: datasets one ``events`` partition may hold.
    max_datasets_per_partition: int = 16
    #: REFINERY_ALLOW_DEV_SNAPSHOT_KEY: run with the built-in snapshot key although the worker is
    #: reachable from other hosts (its web server binds beyond loopback, or the broker is remote).
    allow_dev_snapshot_key: bool = False

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
            max_record_bytes=get("REFINERY_MAX_RECORD_BYTES", defaults.max_record_bytes, int),
            max_input_bytes=get("REFINERY_MAX_INPUT_BYTES", defaults.max_input_bytes, int),
            max_id_chars=get("REFINERY_MAX_ID_CHARS", defaults.max_id_chars, int),
            max_label_chars=get("REFINERY_MAX_LABEL_CHARS", defaults.max_label_chars, int),
            max_labels_per_review=get("REFINERY_MAX_LABELS_PER_REVIEW", defaults.max_labels_per_review, int),
            max_metadata_keys=get("REFINERY_MAX_METADATA_KEYS", defaults.max_metadata_keys, int),
            max_metadata_bytes=get("REFINERY_MAX_METADATA_BYTES", defaults.max_metadata_bytes, int),
            max_labels_per_dataset=get("REFINERY_MAX_LABELS_PER_DATASET", defaults.max_labels_per_dataset, int),
            max_datasets_per_partition=get(
                "REFINERY_MAX_DATASETS_PER_PARTITION", defaults.max_datasets_per_partition, int
            ),
            allow_dev_snapshot_key=get("REFINERY_ALLOW_DEV_SNAPSHOT_KEY", False, _flag),
        ).validate()

    def validate(self) -> Settings:
        """This, when every setting is within its allowed range; else `SettingError`.

        >>> Settings(partitions=0).validate()
        Traceback (most recent call last):
        ...
        agents.settings.SettingError: REFINERY_PARTITIONS: expected an integer in [1, 10000], got 0
        """
        check_range("REFINERY_KAFKA_PORT", self.kafka_port, 1, 65535)
        check_range("REFINERY_WEB_PORT", self.web_port, 1, 65535)
        check_range("REFINERY_PARTITIONS", self.partitions, 1, 10_000)
        if not self.topic_prefix or not _TOPIC_CHARS.fullmatch(self.topic_prefix) or len(self.topic_prefix) > 200:
            raise SettingError(
                "REFINERY_TOPIC_PREFIX", "1 to 200 of the characters a-z A-Z 0-9 . _ -", self.topic_prefix
            )
        if self.external_bootstrap is not None and not _BOOTSTRAP.fullmatch(self.external_bootstrap):
            raise SettingError("REFINERY_KAFKA_BOOTSTRAP", "host:port[,host:port...]", self.external_bootstrap)
        if not self.web_host.strip():
            raise SettingError("REFINERY_WEB_HOST", "a host name or address", self.web_host)
        if not self.snapshot_key:
            raise SettingError("REFINERY_SNAPSHOT_KEY", "a non-empty key", self.snapshot_key)
        check_range("REFINERY_MAX_RECORD_BYTES", self.max_record_bytes, 65_536, 100 * 2**20)
        check_range("REFINERY_MAX_INPUT_BYTES", self.max_input_bytes, 1024, self.max_record_bytes)
        check_range("REFINERY_MAX_BODY_BYTES", self.max_body_bytes, 1, self.max_input_bytes)
        check_range("REFINERY_MAX_ID_CHARS", self.max_id_chars, 8, 4096)
        check_range("REFINERY_MAX_LABEL_CHARS", self.max_label_chars, 8, 256)
        check_range("REFINERY_MAX_LABELS_PER_REVIEW", self.max_labels_per_review, 1, 10_000)
        check_range("REFINERY_MAX_METADATA_KEYS", self.max_metadata_keys, 0, 10_000)
        check_range("REFINERY_MAX_METADATA_BYTES", self.max_metadata_bytes, 2, self.max_input_bytes)
        check_range("REFINERY_MAX_LABELS_PER_DATASET", self.max_labels_per_dataset, 1, 100_000)
        check_range("REFINERY_MAX_DATASETS_PER_PARTITION", self.max_datasets_per_partition, 1, 100_000)
        return self


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
    agents.settings.SettingError: REFINERY_PARTITIONS: expected int, got 'x'
    """
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        raise SettingError(name, getattr(cast, "__name__", "a valid value"), raw) from None


_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]+")
_BOOTSTRAP = re.compile(r"[^\s,:]+:\d{1,5}(,[^\s,:]+:\d{1,5})*")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(raw: str) -> bool:
    """A yes/no variable: 1/true/yes/on or 0/false/no/off (any case)."""
    value = raw.strip().lower()
    if value in _TRUE | _FALSE:
        return value in _TRUE
    raise ValueError(raw)


_flag.__name__ = "1/true/yes/on or 0/false/no/off"


def check_range(variable: str, value: float, low: float, high: float) -> None:
    """`SettingError` naming ``variable`` unless ``low <= value <= high``.

    >>> check_range("REFINERY_SESSION_TIMEOUT", 120.0, 6, 90)
    Traceback (most recent call last):
    ...
    agents.settings.SettingError: REFINERY_SESSION_TIMEOUT: expected a number in [6, 90], got 120.0
    """
    if not low <= value <= high or value != value:  # value != value: NaN
        kind = "an integer" if isinstance(value, int) else "a number"
        raise SettingError(variable, f"{kind} in [{low:g}, {high:g}]", value)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address, maybe ``host:port``) is this machine only.

    >>> is_loopback("127.0.0.1:9092"), is_loopback("localhost"), is_loopback("0.0.0.0"), is_loopback("kafka:9092")
    (True, True, False, False)
    """
    name = host.strip()
    if name.startswith("["):  # [::1]:9092
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.split(":")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def datasets_dir(env: Mapping[str, str] | None = None) -> Path:
    """The shared real data sets: REFINERY_DATASETS, else ``../shared/datasets`` beside the project."""
    env = os.environ if env is None else env
    return Path(env.get("REFINERY_DATASETS") or PROJECT_ROOT.parent / "shared" / "datasets")
