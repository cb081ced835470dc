"""How a Kafka client connects: protocol, TLS and SASL settings (``KafkaSecurity``), and the
keyword arguments every aiokafka producer, consumer and admin client is made with
(``aiokafka_kwargs``).

Secrets (a SCRAM/PLAIN password, a client private key) are named, not written, in the
settings (``sasl_password_secret``, ``ssl_key_secret``: Secrets Manager names or ARNs) and
read once at start by ``resolve_kafka_secrets`` through the project's ``SecretSource``. They
are ``SecretStr`` once read, so they never show in a repr, a log line or an error.

Environment: ``MESH_KAFKA_<FIELD>`` for the mesh (``BusSettings.kafka``),
``MESHGATE_KAFKA_<FIELD>`` for the operator's tools (``infra.settings.Settings``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import ssl
import tempfile
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, model_validator

from bus.errors import KafkaConfigError
from bus.security.keys import SecretSource

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
PASSWORD_MECHANISMS = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})
_TLS_FIELDS = ("ssl_cafile", "ssl_ca_pem", "ssl_certfile", "ssl_keyfile", "ssl_key_secret")
SECRET_TIMEOUT_S = 15.0


class KafkaSecurity(BaseModel):
    """The connection security of one Kafka client (default: plaintext, unauthenticated)."""

    # An error never repeats the input: it may hold a password.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # A Secrets Manager name or ARN: the password itself, or MSK's JSON form
    # {"username": ..., "password": ...}.
    sasl_password_secret: str | None = None
    ssl_cafile: str | None = None
    ssl_ca_pem: str | None = None  # the CA certificate's PEM text (Lambdas: no file to ship)
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # A Secrets Manager name or ARN holding the PEM private key (optionally followed by the
    # client certificate chain); written to a private file at start (ssl needs a file).
    ssl_key_secret: str | None = None
    ssl_check_hostname: bool = True
    oauth_provider: Literal["msk-iam"] | None = None
    aws_region: str | None = None

    @property
    def tls(self) -> bool:
        return self.protocol in TLS_PROTOCOLS

    @property
    def sasl(self) -> bool:
        return self.protocol in SASL_PROTOCOLS

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        for problem in security_problems(self):
            raise ValueError(problem)
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str) -> KafkaSecurity:
        """The settings from ``<prefix><FIELD upper>`` variables (empty ones are unset); an
        MSK IAM provider's region defaults to ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.
        Unusable ones raise ``KafkaConfigError``: one line naming the variables' prefix."""
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(prefix + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        if values.get("oauth_provider") and "aws_region" not in values:
            region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
            if region:
                values["aws_region"] = region
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise KafkaConfigError(validation_text(exc, prefix)) from None

    def describe(self) -> str:
        """One line for messages: protocol, mechanism and user, never a secret."""
        parts: list[str] = [self.protocol]
        if self.sasl_mechanism:
            parts.append(self.sasl_mechanism)
        if self.sasl_username:
            parts.append(f"user '{self.sasl_username}'")
        if self.oauth_provider:
            parts.append(self.oauth_provider)
        return " ".join(parts)


def validation_text(error: ValidationError, prefix: str) -> str:
    """A validation error as one line: each problem's variable (``<prefix><FIELD>``, or
    ``<prefix>*`` when several fields disagree) and sentence, never the input."""
    parts = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]).upper() or "*"
        message = str(problem["msg"]).removeprefix("Value error, ")
        parts.append(f"{prefix}{where}: {message}")
    return "; ".join(parts)


def security_problems(security: KafkaSecurity) -> list[str]:
    """What makes ``security`` unusable, one sentence each (pure; empty when it is fine)."""
    s = security
    problems: list[str] = []
    if s.sasl and s.sasl_mechanism is None:
        problems.append(f"protocol {s.protocol} needs sasl_mechanism (PLAIN, SCRAM-SHA-256, "
                        "SCRAM-SHA-512 or OAUTHBEARER)")
    if not s.sasl:
        sasl_set = [name for name in ("sasl_mechanism", "sasl_username", "sasl_password",
                                      "sasl_password_secret", "oauth_provider")
                    if getattr(s, name) is not None]
        if sasl_set:
            problems.append(f"{', '.join(sasl_set)}: only with protocol SASL_PLAINTEXT or "
                            f"SASL_SSL (protocol is {s.protocol})")
    if s.sasl_mechanism in PASSWORD_MECHANISMS:
        if not s.sasl_username:
            problems.append(f"sasl_mechanism {s.sasl_mechanism} needs sasl_username")
        if (s.sasl_password is None) == (s.sasl_password_secret is None):
            problems.append(f"sasl_mechanism {s.sasl_mechanism} needs exactly one of "
                            "sasl_password and sasl_password_secret")
        if s.oauth_provider is not None:
            problems.append(f"oauth_provider needs sasl_mechanism OAUTHBEARER, "
                            f"not {s.sasl_mechanism}")
    if s.sasl_mechanism == "OAUTHBEARER":
        if s.oauth_provider is None:
            problems.append("sasl_mechanism OAUTHBEARER needs oauth_provider (msk-iam)")
        elif s.aws_region is None:
            problems.append("oauth_provider msk-iam needs aws_region (or AWS_REGION)")
        if s.sasl_password is not None or s.sasl_password_secret is not None:
            problems.append("sasl_mechanism OAUTHBEARER takes no password")
    if not s.tls:
        tls_set = [name for name in _TLS_FIELDS if getattr(s, name) is not None]
        if "ssl_check_hostname" in s.model_fields_set:
            tls_set.append("ssl_check_hostname")
        if tls_set:
            problems.append(f"{', '.join(tls_set)}: only with protocol SSL or SASL_SSL "
                            f"(protocol is {s.protocol})")
    if s.ssl_cafile is not None and s.ssl_ca_pem is not None:
        problems.append("give the CA as ssl_cafile or ssl_ca_pem, not both")
    if s.ssl_keyfile is not None and s.ssl_key_secret is not None:
        problems.append("give the client key as ssl_keyfile or ssl_key_secret, not both")
    if s.ssl_keyfile is not None and s.ssl_certfile is None:
        problems.append("ssl_keyfile needs ssl_certfile (the client certificate)")
    return problems


def _password(security: KafkaSecurity) -> str:
    if security.sasl_password is None:
        raise KafkaConfigError(f"the SASL password of user '{security.sasl_username}' is in "
                               f"the secret {security.sasl_password_secret}, not read yet: "
                               "resolve it first (resolve_kafka_secrets)")
    return security.sasl_password.get_secret_value()


@functools.lru_cache(maxsize=16)
def ssl_context(security: KafkaSecurity) -> ssl.SSLContext:
    """The client TLS context: the CA (file or PEM text; the system's CAs when neither),
    hostname checking, and the client certificate and key for mTLS. One per settings."""
    if security.ssl_key_secret is not None and security.ssl_keyfile is None:
        raise KafkaConfigError(f"the client key is in the secret {security.ssl_key_secret}, "
                               "not read yet: resolve it first (resolve_kafka_secrets)")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=security.ssl_cafile,
                                             cadata=security.ssl_ca_pem)
    except (OSError, ssl.SSLError) as exc:
        where = security.ssl_cafile or "ssl_ca_pem"
        raise KafkaConfigError(f"the Kafka CA certificate {where} cannot be read: "
                               f"{exc.strerror or exc}") from None
    context.check_hostname = security.ssl_check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    if security.ssl_certfile is not None:
        try:
            context.load_cert_chain(security.ssl_certfile, security.ssl_keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise KafkaConfigError(f"the Kafka client certificate {security.ssl_certfile} "
                                   f"or its key cannot be read: {exc.strerror or exc}"
                                   ) from None
    return context


def aiokafka_kwargs(bootstrap: str, security: KafkaSecurity) -> dict[str, Any]:
    """The connection keyword arguments of an AIOKafkaProducer, AIOKafkaConsumer or
    AIOKafkaAdminClient for ``bootstrap`` with ``security`` (its secrets already resolved)."""
    kwargs: dict[str, Any] = {"bootstrap_servers": bootstrap,
                              "security_protocol": security.protocol}
    if security.tls:
        kwargs["ssl_context"] = ssl_context(security)
    if security.sasl:
        kwargs["sasl_mechanism"] = security.sasl_mechanism
        if security.sasl_mechanism in PASSWORD_MECHANISMS:
            kwargs["sasl_plain_username"] = security.sasl_username
            kwargs["sasl_plain_password"] = _password(security)
        elif security.oauth_provider == "msk-iam" and security.aws_region is not None:
            try:
                from bus.transport.msk_iam import msk_iam_token_provider  # botocore, lazily
            except ImportError as exc:
                raise KafkaConfigError(f"oauth_provider msk-iam needs the package "
                                       f"aws-msk-iam-sasl-signer-python ({exc})") from None
            kwargs["sasl_oauth_token_provider"] = msk_iam_token_provider(security.aws_region)
    return kwargs


def _password_from(stored: bytes, username: str | None) -> tuple[str, str | None]:
    """The password (and the username, when the secret names one) from a password secret:
    the password itself, or a JSON object {"username", "password"} (MSK's form)."""
    text = stored.decode("utf-8").strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("password"), str):
            named = document.get("username")
            return document["password"], named if isinstance(named, str) else username
    return text, username


def _private_file(content: bytes) -> str:
    """Write ``content`` to a new file only this user can read; its path."""
    fd, path = tempfile.mkstemp(prefix="meshgate-kafka-", suffix=".pem")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, content)
    finally:
        os.close(fd)
    return path


async def resolve_kafka_secrets(security: KafkaSecurity,
                                secrets: SecretSource | None) -> KafkaSecurity:
    """``security`` with its secrets read: the SASL password from ``sasl_password_secret``,
    the client key from ``ssl_key_secret`` (into a private file). Reads run off the loop,
    bounded in time. Unchanged when nothing is secret."""
    update: dict[str, Any] = {}
    names = [n for n in (security.sasl_password_secret, security.ssl_key_secret) if n]
    if not names:
        return security
    if secrets is None:
        raise KafkaConfigError(f"the Kafka settings name the secret {names[0]} but this "
                               "process has no secret source to read it")
    async with asyncio.timeout(SECRET_TIMEOUT_S):
        if security.sasl_password_secret and security.sasl_password is None:
            stored = await asyncio.to_thread(secrets.get, security.sasl_password_secret)
            password, username = _password_from(stored, security.sasl_username)
            update.update(sasl_password=SecretStr(password), sasl_password_secret=None,
                          sasl_username=security.sasl_username or username)
        if security.ssl_key_secret and security.ssl_keyfile is None:
            pem = await asyncio.to_thread(secrets.get, security.ssl_key_secret)
            path = await asyncio.to_thread(_private_file, pem)
            update.update(ssl_keyfile=path, ssl_key_secret=None)
            if security.ssl_certfile is None and b"CERTIFICATE-----" in pem:
                update["ssl_certfile"] = path
    resolved = security.model_copy(update=update)
    problems = security_problems(resolved)
    if problems:
        raise KafkaConfigError(f"the Kafka settings after reading their secrets: {problems[0]}")
    return resolved
