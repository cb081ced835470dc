"""The one error hierarchy of the mesh client.

Every error says whether retrying the same call may succeed (``retriable``), in the spirit
of aiokafka's errors. Retry loops catch ``MeshError`` and look at ``retriable``; nothing else.
"""

from __future__ import annotations

from typing import ClassVar


class MeshError(Exception):
    """Base of every error the mesh client raises.

    ``retriable`` is a class default that an instance may override (a remote error carries
    the flag the service sent).
    """

    retriable: bool = False
    code: ClassVar[str] = "mesh_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EnvelopeError(MeshError):
    """A record is not a valid mesh envelope (missing or malformed headers or value)."""

    code = "bad_envelope"


class TransportError(MeshError):
    """The broker could not be reached or refused the operation; usually transient."""

    retriable = True
    code = "transport"


class BrokerRefused(TransportError):
    """The broker answered with an error that retrying will not fix (unknown topic, too large)."""

    retriable = False
    code = "broker_refused"


class KafkaConfigError(MeshError):
    """The Kafka connection settings cannot be used as given (a file that cannot be read, a
    secret not resolved): fixing the configuration is the only cure."""

    code = "kafka_config"


class KafkaConnectRefused(BrokerRefused):
    """A Kafka client could not connect for a reason retrying will not fix; the message
    names the broker address and what failed. Base of the connection-security failures."""

    code = "kafka_connect_refused"


class KafkaAuthFailed(KafkaConnectRefused):
    """The broker refused the client's SASL credentials (wrong password, unknown user, a
    mechanism the user has no credentials for) or its MSK IAM token could not be made."""

    code = "kafka_auth_failed"


class KafkaTlsUntrusted(KafkaConnectRefused):
    """The broker's certificate is not trusted by the client's CA (or names another host)."""

    code = "kafka_tls_untrusted"


class KafkaTlsExpected(KafkaConnectRefused):
    """A plaintext client reached a TLS listener."""

    code = "kafka_tls_expected"


class KafkaTlsUnexpected(KafkaConnectRefused):
    """A TLS client reached a plaintext listener."""

    code = "kafka_tls_unexpected"


class KafkaTlsClientRefused(KafkaConnectRefused):
    """The broker refused the TLS client: no client certificate, or one it does not trust."""

    code = "kafka_tls_client_refused"


class KafkaUnreachable(TransportError):
    """Nothing answers at the broker's address (down, restarting, wrong port): retriable,
    since a restarting broker comes back."""

    code = "kafka_unreachable"


class DeadlineExceeded(MeshError):
    """The caller's deadline passed before a reply arrived, or before work could start."""

    retriable = True
    code = "deadline_exceeded"


class RemoteError(MeshError):
    """A service handled the request and answered with an error.

    Keeps the remote error's code, message and retriable flag across the wire.
    """

    code = "remote"

    def __init__(self, code: str, message: str, retriable: bool) -> None:
        super().__init__(message)
        self.remote_code = code
        self.retriable = retriable

    @property
    def remote_retriable(self) -> bool:
        return self.retriable

    def __str__(self) -> str:
        return f"{self.remote_code}: {self.message}"


class HandlerError(MeshError):
    """Raised by a service handler to answer the caller with a typed error."""

    code = "handler_error"

    def __init__(self, code: str, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.error_code = code
        self.retriable = retriable


class NoMeshClient(MeshError):
    """A handler asked for a mesh client to make a nested call, but its worker has none."""

    code = "no_mesh_client"


class UnknownOperation(MeshError):
    """A service got a request for an operation it has no handler for."""

    code = "unknown_operation"


def is_retriable(error: BaseException) -> bool:
    """Whether retrying the call that raised ``error`` may succeed."""
    return isinstance(error, MeshError) and error.retriable
