"""Secured listeners for the local broker: TLS, mutual TLS and SASL (PLAIN, SCRAM), to try and
test Refinery's client security (`agents.settings.KafkaSecurity`) on this machine.

``refinery kafka start --secured`` (`agents.kafka.broker.start` with ``secured=True``) makes a
throwaway CA and certificates with ``openssl`` under ``<home>/tls``, a SCRAM user created by
Kafka's own storage tool when the data directory is formatted, and these listeners beside the
plaintext one, all on 127.0.0.1:

=================  ===============  ===============================================
port               protocol         clients authenticate with
=================  ===============  ===============================================
``port + 2``       SSL              a client certificate signed by the CA (mutual TLS)
``port + 3``       SASL_SSL         SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN
``port + 4``       SASL_PLAINTEXT   the same, unencrypted
=================  ===============  ===============================================

`client_env` gives the ``REFINERY_KAFKA_*`` variables of a client of one of them. The plaintext
listener stays (loopback only), for ``refinery kafka status`` and ``stop``.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from agents.settings import Settings

__all__ = ["SCRAM_MECHANISMS", "USER", "client_env", "format_arguments", "listener_properties", "ports", "prepare"]

#: The SASL user of the secured listeners; its password is in ``<home>/tls/password``.
USER = "refinery"
#: The SCRAM mechanisms the user is created for.
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_DAYS = "30"


def _tls(settings: Settings) -> Path:
    return settings.home / "tls"


def ports(settings: Settings) -> dict[str, int]:
    """``{protocol: port}`` of the secured listeners of the local broker of ``settings``."""
    port = settings.kafka_port
    return {"SSL": port + 2, "SASL_SSL": port + 3, "SASL_PLAINTEXT": port + 4}


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl not found on PATH: install it (apt-get install openssl) for --secured")
    result = subprocess.run(
        [openssl, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed (exit {result.returncode}): {result.stdout[-2000:]}")


def _certificate(directory: Path, name: str, subject: str, extensions: str) -> None:
    """``<name>.key`` and ``<name>.pem``: a P-256 key and its certificate signed by the CA."""
    (directory / f"{name}.ext").write_text(extensions + "\n")
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", _DAYS, "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=directory,
    )  # fmt: skip


def prepare(settings: Settings) -> None:
    """Make ``<home>/tls`` unless it exists: a CA, the broker's certificate (for 127.0.0.1 and
    localhost) in a PKCS#12 keystore, a client certificate, and the SASL user's password."""
    directory = _tls(settings)
    if (directory / "password").is_file():
        return
    staging = directory.with_name("tls.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", _DAYS, "-subj", "/CN=Refinery local CA", cwd=staging,
    )  # fmt: skip
    _certificate(staging, "broker", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    _certificate(staging, "client", f"/CN={USER}", "extendedKeyUsage=clientAuth")
    store_password = secrets.token_urlsafe(16)
    _openssl(
        "pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile", "ca.pem",
        "-name", "broker", "-out", "broker.p12", "-passout", f"pass:{store_password}", cwd=staging,
    )  # fmt: skip
    (staging / "store-password").write_text(store_password)
    (staging / "password").write_text(secrets.token_urlsafe(16))
    for file in staging.iterdir():
        file.chmod(0o600)
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def _password(settings: Settings) -> str:
    return (_tls(settings) / "password").read_text()


def listener_properties(settings: Settings) -> str:
    """The broker properties of the secured listeners (they override the plaintext ones written
    before them: the last of two equal keys wins)."""
    tls, port = _tls(settings), settings.kafka_port
    listeners = ports(settings)
    secured = ",".join(f"{name}://127.0.0.1:{p}" for name, p in listeners.items())
    protocols = ",".join(f"{name}:{name}" for name in listeners)
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain = f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}="{_password(settings)}";'
    jaas = "\n".join(
        f"listener.name.{listener}.{mechanism.lower()}.sasl.jaas.config={scram if 'SCRAM' in mechanism else plain}"
        for listener in ("sasl_ssl", "sasl_plaintext")
        for mechanism in (*SCRAM_MECHANISMS, "PLAIN")
    )
    store_password = (tls / "store-password").read_text()
    return f"""
# Secured listeners (`refinery kafka start --secured`, agents/kafka/secured.py).
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1},{secured}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},{secured}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,{protocols}
ssl.keystore.type=PKCS12
ssl.keystore.location={tls / "broker.p12"}
ssl.keystore.password={store_password}
ssl.key.password={store_password}
ssl.truststore.type=PEM
ssl.truststore.location={tls / "ca.pem"}
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms={",".join((*SCRAM_MECHANISMS, "PLAIN"))}
{jaas}
"""


def format_arguments(settings: Settings) -> list[str]:
    """The storage tool's ``--add-scram`` arguments creating the SCRAM user, one per mechanism."""
    password = _password(settings)
    return [
        argument
        for mechanism in SCRAM_MECHANISMS
        for argument in ("--add-scram", f"{mechanism}=[name={USER},password={password}]")
    ]


def client_env(settings: Settings, protocol: str = "SASL_SSL", mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
    """The ``REFINERY_KAFKA_*`` variables of a client of the secured listener of ``protocol``
    (``mechanism`` for the SASL ones)."""
    tls = _tls(settings)
    env = {
        "REFINERY_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports(settings)[protocol]}",
        "REFINERY_KAFKA_SECURITY_PROTOCOL": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        env["REFINERY_KAFKA_SSL_CAFILE"] = str(tls / "ca.pem")
    if protocol == "SSL":
        env["REFINERY_KAFKA_SSL_CERTFILE"] = str(tls / "client.pem")
        env["REFINERY_KAFKA_SSL_KEYFILE"] = str(tls / "client.key")
    else:
        env["REFINERY_KAFKA_SASL_MECHANISM"] = mechanism
        env["REFINERY_KAFKA_SASL_USERNAME"] = USER
        env["REFINERY_KAFKA_SASL_PASSWORD_FILE"] = str(tls / "password")
    return env
