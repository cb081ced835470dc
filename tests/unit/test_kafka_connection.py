"""Kafka connection security as settings (issue 13): validation, the environment, the aiokafka
keyword arguments, secrets read through a SecretSource and kept out of every text, and the
MSK IAM token provider. No broker: the real listeners are in
tests/integration/test_kafka_security.py."""

from __future__ import annotations

import datetime
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr, ValidationError

from bus.config import BusSettings
from bus.errors import KafkaAuthFailed, KafkaConfigError
from bus.security.keys import InvalidKey
from bus.transport.connection import KafkaSecurity, aiokafka_kwargs, resolve_kafka_secrets
from bus.transport.msk_iam import MskIamTokenProvider
from infra.settings import Settings

PASSWORD = "hunter2-do-not-print"
SCRAM = {"protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "orders"}


def scram(**extra: object) -> KafkaSecurity:
    return KafkaSecurity.model_validate({**SCRAM, **extra})


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str | None = None,
          issuer_key: ec.EllipticCurvePrivateKey | None = None, ca: bool = False
          ) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                          issuer or subject)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """A CA and a client certificate + key signed by it, as files and PEM text."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = _cert("test-ca", ca_key, ca=True)
    client = _cert("orders", client_key, issuer="test-ca", issuer_key=ca_key)
    key_pem = client_key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    (folder / "ca.pem").write_bytes(_pem(ca))
    (folder / "client.pem").write_bytes(_pem(client))
    (folder / "client.key").write_bytes(key_pem)
    return {"ca": folder / "ca.pem", "ca_pem": _pem(ca).decode(), "cert": folder / "client.pem",
            "key": folder / "client.key", "key_pem": key_pem.decode(),
            "cert_pem": _pem(client).decode()}


# -- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    ({"protocol": "SASL_SSL"}, "protocol SASL_SSL needs sasl_mechanism"),
    ({"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_password": "x"},
     "sasl_mechanism PLAIN needs sasl_username"),
    ({**SCRAM}, "needs exactly one of sasl_password and sasl_password_secret"),
    ({**SCRAM, "sasl_password": "x", "sasl_password_secret": "s"}, "exactly one of"),
    ({"protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"},
     "OAUTHBEARER needs oauth_provider"),
    ({"protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", "oauth_provider": "msk-iam"},
     "msk-iam needs aws_region"),
    ({**SCRAM, "sasl_password": "x", "oauth_provider": "msk-iam", "aws_region": "eu-west-1"},
     "oauth_provider needs sasl_mechanism OAUTHBEARER"),
    ({"protocol": "PLAINTEXT", "sasl_mechanism": "PLAIN"},
     "sasl_mechanism: only with protocol SASL_PLAINTEXT or SASL_SSL"),
    ({"protocol": "SSL", "sasl_username": "u"}, "sasl_username: only with protocol SASL"),
    ({"protocol": "PLAINTEXT", "ssl_cafile": "/ca.pem"},
     "ssl_cafile: only with protocol SSL or SASL_SSL"),
    ({"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256", "sasl_username": "u",
      "sasl_password": "x", "ssl_check_hostname": False},
     "ssl_check_hostname: only with protocol SSL"),
    ({"protocol": "SSL", "ssl_cafile": "/a", "ssl_ca_pem": "b"}, "not both"),
    ({"protocol": "SSL", "ssl_keyfile": "/k"}, "ssl_keyfile needs ssl_certfile"),
    ({"protocol": "SSL", "ssl_keyfile": "/k", "ssl_certfile": "/c", "ssl_key_secret": "s"},
     "ssl_keyfile or ssl_key_secret, not both"),
    ({"protocol": "TLS"}, "protocol"),
    ({"protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
])
def test_inconsistent_settings_are_refused_with_a_clear_sentence(
        values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KafkaSecurity.model_validate(values)


@pytest.mark.parametrize("values", [
    {},
    {"protocol": "SSL"},
    {"protocol": "SSL", "ssl_cafile": "/ca.pem", "ssl_certfile": "/c.pem", "ssl_keyfile": "/k"},
    {"protocol": "SSL", "ssl_key_secret": "prod/kafka/client-key"},
    {**SCRAM, "sasl_password_secret": "AmazonMSK_orders"},
    {"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "k",
     "sasl_password": "s"},
    {"protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER", "oauth_provider": "msk-iam",
     "aws_region": "eu-west-1"},
])
def test_consistent_settings_are_accepted(values: dict[str, object]) -> None:
    KafkaSecurity.model_validate(values)


def test_a_password_never_shows_in_a_repr_a_description_or_a_validation_error() -> None:
    security = scram(sasl_password=SecretStr(PASSWORD))
    assert PASSWORD not in repr(security)
    assert PASSWORD not in str(security)
    assert PASSWORD not in security.describe()
    assert PASSWORD not in repr(BusSettings(kafka=security))
    with pytest.raises(ValidationError) as refused:  # the error would echo its input
        KafkaSecurity.model_validate({"protocol": "PLAINTEXT", "sasl_password": PASSWORD})
    assert PASSWORD not in str(refused.value)
    with pytest.raises(KafkaConfigError) as unusable:
        BusSettings.resolve(env={"MESH_KAFKA_SASL_PASSWORD": PASSWORD})
    assert PASSWORD not in str(unusable.value)


@pytest.mark.parametrize(("env", "line"), [
    ({"MESH_KAFKA_PROTOCOL": "SASL_SSL"},
     "MESH_KAFKA_*: protocol SASL_SSL needs sasl_mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 "
     "or OAUTHBEARER)"),
    ({"MESH_KAFKA_PROTOCOL": "TLS"},
     "MESH_KAFKA_PROTOCOL: Input should be 'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'"),
    ({"MESH_KAFKA_PROTOCOL": "SSL", "MESH_KAFKA_SSL_CHECK_HOSTNAME": "maybe"},
     "MESH_KAFKA_SSL_CHECK_HOSTNAME: Input should be a valid boolean, unable to interpret input"),
])
def test_unusable_variables_are_one_line_naming_them(env: dict[str, str], line: str) -> None:
    with pytest.raises(KafkaConfigError) as unusable:
        BusSettings.resolve(env=env)
    assert str(unusable.value) == line
    assert unusable.value.code == "kafka_config"
    with pytest.raises(KafkaConfigError, match=r"^MESHGATE_KAFKA_"):
        Settings.resolve(env={k.replace("MESH_", "MESHGATE_"): v for k, v in env.items()})


# -- environment ------------------------------------------------------------------------------

def test_the_mesh_reads_mesh_kafka_variables_and_an_explicit_value_wins() -> None:
    env = {"MESH_KAFKA_PROTOCOL": "SASL_SSL", "MESH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
           "MESH_KAFKA_SASL_USERNAME": "orders", "MESH_KAFKA_SASL_PASSWORD_SECRET": "/s/orders",
           "MESH_KAFKA_SSL_CA_PEM": "-----BEGIN CERTIFICATE-----", "MESH_KAFKA_SSL_CAFILE": "",
           "MESH_BOOTSTRAP_SERVERS": "b:9094"}
    settings = BusSettings.resolve(env=env)
    assert settings.kafka == scram(sasl_password_secret="/s/orders",
                                           ssl_ca_pem="-----BEGIN CERTIFICATE-----")
    assert settings.bootstrap_servers == "b:9094"
    assert BusSettings.resolve(env=env, kafka=KafkaSecurity()).kafka == KafkaSecurity()
    assert BusSettings.resolve(env={}).kafka == KafkaSecurity()


def test_msk_iam_takes_the_lambda_region_when_none_is_given() -> None:
    env = {"MESH_KAFKA_PROTOCOL": "SASL_SSL", "MESH_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
           "MESH_KAFKA_OAUTH_PROVIDER": "msk-iam", "AWS_REGION": "eu-central-1"}
    assert BusSettings.resolve(env=env).kafka.aws_region == "eu-central-1"
    env["MESH_KAFKA_AWS_REGION"] = "us-west-2"
    assert BusSettings.resolve(env=env).kafka.aws_region == "us-west-2"


def test_operator_tools_read_meshgate_kafka_and_hand_it_on_without_the_password() -> None:
    env = {"MESHGATE_KAFKA_PROTOCOL": "SASL_SSL", "MESHGATE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
           "MESHGATE_KAFKA_SASL_USERNAME": "admin", "MESHGATE_KAFKA_SASL_PASSWORD": PASSWORD,
           "MESHGATE_KAFKA_SSL_CHECK_HOSTNAME": "false", "MESHGATE_KAFKA_BOOTSTRAP": "h:9094"}
    settings = Settings.resolve(env=env)
    assert settings.kafka_bootstrap == "h:9094"
    assert settings.kafka_security.sasl_username == "admin"
    assert settings.kafka_security.ssl_check_hostname is False
    handed = settings.environment()
    assert handed["MESHGATE_KAFKA_PROTOCOL"] == "SASL_SSL"
    assert handed["MESHGATE_KAFKA_SSL_CHECK_HOSTNAME"] == "false"
    assert "MESHGATE_KAFKA_SECURITY" not in handed
    assert PASSWORD not in "".join(handed.values())


# -- aiokafka keyword arguments ------------------------------------------------------------

def test_plaintext_adds_nothing_but_the_protocol() -> None:
    assert aiokafka_kwargs("h:9092", KafkaSecurity()) == {
        "bootstrap_servers": "h:9092", "security_protocol": "PLAINTEXT"}


def test_scram_over_tls_gets_a_verifying_context_and_the_credentials(
        pki: dict[str, Path | str]) -> None:
    security = scram(sasl_password=SecretStr(PASSWORD),
                             ssl_cafile=str(pki["ca"]))
    kwargs = aiokafka_kwargs("h:9094", security)
    context = kwargs.pop("ssl_context")
    assert kwargs == {"bootstrap_servers": "h:9094", "security_protocol": "SASL_SSL",
                      "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "orders",
                      "sasl_plain_password": PASSWORD}
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test-ca"),),)]


def test_the_ca_as_pem_text_and_hostname_checking_off(pki: dict[str, Path | str]) -> None:
    security = KafkaSecurity(protocol="SSL", ssl_ca_pem=str(pki["ca_pem"]),
                             ssl_check_hostname=False)
    context = aiokafka_kwargs("h:9094", security)["ssl_context"]
    assert not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1


def test_mtls_loads_the_client_certificate(pki: dict[str, Path | str]) -> None:
    good = KafkaSecurity(protocol="SSL", ssl_cafile=str(pki["ca"]),
                         ssl_certfile=str(pki["cert"]), ssl_keyfile=str(pki["key"]))
    assert isinstance(aiokafka_kwargs("h:9095", good)["ssl_context"], ssl.SSLContext)
    wrong = good.model_copy(update={"ssl_keyfile": str(pki["ca"])})  # not a key
    with pytest.raises(KafkaConfigError, match=r"client certificate .* cannot be read"):
        aiokafka_kwargs("h:9095", wrong)


def test_a_missing_ca_file_is_one_line() -> None:
    with pytest.raises(KafkaConfigError, match=r"CA certificate /nope/ca.pem cannot be read"):
        aiokafka_kwargs("h:9094", KafkaSecurity(protocol="SSL", ssl_cafile="/nope/ca.pem"))


def test_an_unread_secret_is_refused_not_sent_empty() -> None:
    security = scram(sasl_password_secret="/s/orders")
    with pytest.raises(KafkaConfigError, match="not read yet"):
        aiokafka_kwargs("h:9094", security)
    with pytest.raises(KafkaConfigError, match="not read yet"):
        aiokafka_kwargs("h:9095", KafkaSecurity(protocol="SSL", ssl_key_secret="/s/key"))


def test_msk_iam_gets_an_oauth_token_provider_for_its_region() -> None:
    security = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER",
                             oauth_provider="msk-iam", aws_region="eu-west-1")
    kwargs = aiokafka_kwargs("b-1.msk:9098", security)
    provider = kwargs["sasl_oauth_token_provider"]
    assert isinstance(provider, MskIamTokenProvider)
    assert provider.region == "eu-west-1"
    assert kwargs["sasl_mechanism"] == "OAUTHBEARER"
    assert "sasl_plain_password" not in kwargs
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED  # the system's CAs


# -- secrets ----------------------------------------------------------------------------------

class Secrets:
    def __init__(self, stored: dict[str, bytes]) -> None:
        self.stored = stored
        self.asked: list[str] = []

    def get(self, name: str) -> bytes:
        self.asked.append(name)
        if name not in self.stored:
            raise InvalidKey(f"cannot read secret {name}")
        return self.stored[name]


async def test_the_password_is_read_from_its_secret() -> None:
    secrets = Secrets({"/s/orders": PASSWORD.encode() + b"\n"})
    resolved = await resolve_kafka_secrets(
        scram(sasl_password_secret="/s/orders"), secrets)
    assert resolved.sasl_password is not None
    assert resolved.sasl_password.get_secret_value() == PASSWORD
    assert aiokafka_kwargs("h:9094", resolved)["sasl_plain_password"] == PASSWORD
    assert PASSWORD not in repr(resolved)


async def test_an_msk_scram_secret_in_json_names_its_user() -> None:
    secrets = Secrets({"AmazonMSK_orders": b'{"username": "orders-msk", "password": "pw"}'})
    security = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                             sasl_username="orders", sasl_password_secret="AmazonMSK_orders")
    resolved = await resolve_kafka_secrets(security, secrets)
    assert resolved.sasl_password is not None
    assert resolved.sasl_password.get_secret_value() == "pw"
    assert resolved.sasl_username == "orders"  # the configured name wins


async def test_the_client_key_is_written_to_a_private_file(pki: dict[str, Path | str]) -> None:
    bundle = (str(pki["key_pem"]) + str(pki["cert_pem"])).encode()
    security = KafkaSecurity(protocol="SSL", ssl_cafile=str(pki["ca"]), ssl_key_secret="/s/key")
    resolved = await resolve_kafka_secrets(security, Secrets({"/s/key": bundle}))
    assert resolved.ssl_keyfile is not None
    assert resolved.ssl_certfile == resolved.ssl_keyfile
    try:
        assert stat.S_IMODE(os.stat(resolved.ssl_keyfile).st_mode) == 0o600
        assert isinstance(aiokafka_kwargs("h:9095", resolved)["ssl_context"], ssl.SSLContext)
    finally:
        os.unlink(resolved.ssl_keyfile)


async def test_a_key_secret_without_a_certificate_needs_ssl_certfile(
        pki: dict[str, Path | str]) -> None:
    security = KafkaSecurity(protocol="SSL", ssl_key_secret="/s/key")
    with pytest.raises(KafkaConfigError, match="ssl_keyfile needs ssl_certfile"):
        await resolve_kafka_secrets(security, Secrets({"/s/key": str(pki["key_pem"]).encode()}))


async def test_nothing_secret_reads_nothing_and_a_missing_source_is_said() -> None:
    secrets = Secrets({})
    plain = scram(sasl_password=SecretStr("x"))
    assert await resolve_kafka_secrets(plain, secrets) is plain
    assert secrets.asked == []
    assert await resolve_kafka_secrets(plain, None) is plain
    named = scram(sasl_password_secret="/s/orders")
    with pytest.raises(KafkaConfigError, match="no secret source"):
        await resolve_kafka_secrets(named, None)
    with pytest.raises(InvalidKey, match="cannot read secret /s/orders"):
        await resolve_kafka_secrets(named, secrets)


# -- MSK IAM tokens ----------------------------------------------------------------------------

async def test_an_msk_token_is_reused_until_it_nears_expiry() -> None:
    signed: list[str] = []
    expiry = {"ms": 0}

    def signer(region: str) -> tuple[str, int]:
        signed.append(region)
        return f"token-{len(signed)}", expiry["ms"]

    import time
    expiry["ms"] = int(time.time() * 1000) + 15 * 60_000
    provider = MskIamTokenProvider("eu-west-1", signer=signer)
    assert [await provider.token() for _ in range(3)] == ["token-1"] * 3
    expiry["ms"] = int(time.time() * 1000) + 30_000  # the next one is nearly expired
    provider._expires_ms = 0
    assert await provider.token() == "token-2"
    assert await provider.token() == "token-3"  # within a minute of expiry: signed again
    assert signed == ["eu-west-1"] * 3


async def test_no_aws_credentials_is_an_auth_failure_in_one_line() -> None:
    def signer(region: str) -> tuple[str, int]:
        raise ValueError("AWS Credentials can not be empty")

    with pytest.raises(KafkaAuthFailed, match="cannot sign an MSK IAM token in eu-west-1: AWS "
                                              "Credentials can not be empty") as failed:
        await MskIamTokenProvider("eu-west-1", signer=signer).token()
    assert failed.value.code == "kafka_auth_failed"
    assert not failed.value.retriable
