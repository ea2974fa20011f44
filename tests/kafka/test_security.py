"""Client security settings (`agents.settings.KafkaSecurity`) and the client arguments built from
them (`agents.kafka.security`): one object, the same TLS and SASL for aiokafka, kafka-python and
Faust; a wrong setting is one line naming the variable. No broker: tests/kafka/test_secured.py
runs them against one."""

from __future__ import annotations

import ssl
import subprocess
import sys

import pytest

from agents.kafka import secured
from agents.kafka.security import aiokafka_kwargs, explain, faust_credentials, kafka_python_kwargs, ssl_context
from agents.settings import PROJECT_ROOT, KafkaSecurity, Settings

SASL_SSL = {
    "REFINERY_KAFKA_BOOTSTRAP": "kafka.example:9096",
    "REFINERY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "REFINERY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "REFINERY_KAFKA_SASL_USERNAME": "alice",
    "REFINERY_KAFKA_SASL_PASSWORD": "s3cret",
}


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    """A throwaway CA, broker and client certificates (`agents.kafka.secured.prepare`)."""
    settings = Settings(home=tmp_path_factory.mktemp("home"), kafka_port=39092)
    secured.prepare(settings)
    return settings.home / "tls"


def test_settings_read_every_variable_and_keep_the_password_out_of_repr():
    settings = Settings.from_env(SASL_SSL)

    assert settings.kafka_security == KafkaSecurity(
        protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", username="alice", password="s3cret"
    )
    assert "s3cret" not in repr(settings)


def test_the_password_file_is_read_without_its_trailing_newline(tmp_path):
    (tmp_path / "password").write_text("s3cret\n")
    env = {k: v for k, v in SASL_SSL.items() if k != "REFINERY_KAFKA_SASL_PASSWORD"}

    security = Settings.from_env(
        {**env, "REFINERY_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "password")}
    ).kafka_security

    assert security.password == "s3cret"


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"REFINERY_KAFKA_SECURITY_PROTOCOL": "TLS"}, "REFINERY_KAFKA_SECURITY_PROTOCOL: expected one of PLAINTEXT"),
        ({**SASL_SSL, "REFINERY_KAFKA_SASL_MECHANISM": "GSSAPI"}, "REFINERY_KAFKA_SASL_MECHANISM: expected one of"),
        ({**SASL_SSL, "REFINERY_KAFKA_SASL_USERNAME": ""}, "REFINERY_KAFKA_SASL_USERNAME: required with"),
        ({**SASL_SSL, "REFINERY_KAFKA_SASL_PASSWORD_FILE": "/etc/hostname"}, "exactly one is required"),
        ({"REFINERY_KAFKA_SASL_USERNAME": "alice"}, "REFINERY_KAFKA_SASL_USERNAME: only used when"),
        ({"REFINERY_KAFKA_SSL_CAFILE": "/etc/hostname"}, "REFINERY_KAFKA_SSL_CAFILE: only used when"),
        ({**SASL_SSL, "REFINERY_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "REFINERY_KAFKA_SSL_CAFILE: no file"),
        ({**SASL_SSL, "REFINERY_KAFKA_SSL_KEYFILE": "/etc/hostname"}, "needs REFINERY_KAFKA_SSL_CERTFILE"),
        ({**SASL_SSL, "REFINERY_KAFKA_SSL_CHECK_HOSTNAME": "maybe"}, "REFINERY_KAFKA_SSL_CHECK_HOSTNAME: expected"),
    ],
    ids=["protocol", "mechanism", "no-user", "two-passwords", "sasl-on-plaintext", "tls-on-plaintext", "no-ca",
         "key-alone", "flag"],
)  # fmt: skip
def test_a_wrong_setting_is_a_value_error_naming_the_variable(env, error):
    with pytest.raises(ValueError, match=error):
        Settings.from_env(env)


def test_a_command_stops_on_a_wrong_setting_with_one_line():
    env = {"PYTHONPATH": str(PROJECT_ROOT), "REFINERY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
    result = subprocess.run(
        [sys.executable, "-m", "agents.cli", "tail", "messages"], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "refinery: error: REFINERY_KAFKA_SASL_USERNAME: required with REFINERY_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
    ]


def test_plaintext_clients_get_no_security_arguments():
    assert kafka_python_kwargs(Settings()) == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert aiokafka_kwargs("kafka:9092") == {"bootstrap_servers": "kafka:9092", "security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None


def test_aiokafka_kafka_python_and_faust_get_the_same_sasl_ssl_settings(ca):
    settings = Settings.from_env({**SASL_SSL, "REFINERY_KAFKA_SSL_CAFILE": str(ca / "ca.pem")})

    for kwargs in (aiokafka_kwargs(settings), kafka_python_kwargs(settings)):
        assert kwargs["bootstrap_servers"] == "kafka.example:9096"
        assert kwargs["security_protocol"] == "SASL_SSL"
        assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == (
            "SCRAM-SHA-512",
            "alice",
            "s3cret",
        )
        assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED
        assert kwargs["ssl_context"].check_hostname is True
    credentials = faust_credentials(settings)
    assert (credentials.protocol.value, credentials.mechanism.value) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (credentials.username, credentials.password) == ("alice", "s3cret")
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_the_worker_app_carries_the_credentials(ca):
    from agents.worker.app import create_app

    settings = Settings.from_env(
        {**SASL_SSL, "REFINERY_KAFKA_SSL_CAFILE": str(ca / "ca.pem"), "REFINERY_SNAPSHOT_KEY": "a-key-of-our-own"}
    )
    app = create_app(settings)

    assert app.conf.broker_credentials.protocol.value == "SASL_SSL"
    assert app.conf.broker_credentials.username == "alice"


def test_the_ssl_context_trusts_the_ca_and_presents_the_client_certificate(ca):
    security = KafkaSecurity(
        protocol="SSL", cafile=ca / "ca.pem", certfile=ca / "client.pem", keyfile=ca / "client.key"
    ).checked()
    context = ssl_context(security)

    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "Refinery local CA"),),)]
    assert ssl_context(KafkaSecurity(protocol="SSL", check_hostname=False)).check_hostname is False
    credentials = faust_credentials(Settings(kafka_security=security))
    assert credentials.protocol.value == "SSL"


def test_explain_names_what_to_fix_for_an_untrusted_certificate_and_a_refused_login():
    from aiokafka.errors import KafkaConnectionError
    from kafka.errors import SaslAuthenticationFailedError

    settings = Settings.from_env(SASL_SSL)
    untrusted = ssl.SSLCertVerificationError(
        1, "certificate verify failed: self-signed certificate in certificate chain"
    )
    wrapped = KafkaConnectionError("Unable to bootstrap")
    wrapped.__cause__ = untrusted
    refused = SaslAuthenticationFailedError("Authentication failed: invalid credentials with SASL mechanism SCRAM")

    assert "certificate is not trusted" in explain(wrapped, settings)
    assert "REFINERY_KAFKA_SSL_CAFILE" in explain(wrapped, settings)
    assert "login refused for user 'alice'" in explain(refused, settings)
    assert "\n" not in explain(refused, settings)


def test_an_encrypted_client_key_opens_with_its_password_and_never_prompts(ca, tmp_path):
    encrypted = tmp_path / "client.key"
    subprocess.run(
        ["openssl", "pkcs8", "-topk8", "-in", str(ca / "client.key"), "-out", str(encrypted), "-passout", "pass:pw"],
        check=True,
        capture_output=True,
    )
    env = {
        "REFINERY_KAFKA_SECURITY_PROTOCOL": "SSL",
        "REFINERY_KAFKA_SSL_CAFILE": str(ca / "ca.pem"),
        "REFINERY_KAFKA_SSL_CERTFILE": str(ca / "client.pem"),
        "REFINERY_KAFKA_SSL_KEYFILE": str(encrypted),
    }

    assert Settings.from_env({**env, "REFINERY_KAFKA_SSL_KEY_PASSWORD": "pw"}).kafka_security.key_password == "pw"
    for wrong in ({}, {"REFINERY_KAFKA_SSL_KEY_PASSWORD": "not-pw"}):
        with pytest.raises(ValueError, match=r"^REFINERY_KAFKA_SSL_CERTFILE: .* does not load .*KEY_PASSWORD"):
            Settings.from_env({**env, **wrong})


def test_a_ca_file_without_a_certificate_names_the_variable(ca):
    env = {"REFINERY_KAFKA_SECURITY_PROTOCOL": "SSL", "REFINERY_KAFKA_SSL_CAFILE": str(ca / "password")}

    with pytest.raises(ValueError, match="^REFINERY_KAFKA_SSL_CAFILE: .* holds no PEM certificate"):
        Settings.from_env(env)
