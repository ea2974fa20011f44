"""Service configuration: one documented list of settings, read from environment variables.

Every setting has a sane local default (broker on 127.0.0.1:9092, web on 127.0.0.1:6066).
CLI flags override the environment; the environment overrides the defaults.

>>> s = Settings.from_env({"REFINERY_TOPIC_PREFIX": "t."})
>>> s.topic("messages")
't.messages'
>>> s.bootstrap
'127.0.0.1:9092'
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["Settings", "TOPICS", "PROJECT_ROOT", "datasets_dir", "env_value"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The topics of DESIGN.md section 3, without prefix.
TOPICS = ("messages", "annotations", "predictions", "metrics", "suggestions", "deadletter", "events", "snapshots")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Settings of the service; see README.md "Configuration" for each variable."""

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

    @property
    def bootstrap(self) -> str:
        return self.external_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def uses_local_broker(self) -> bool:
        return self.external_bootstrap is None

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

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
        )


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
