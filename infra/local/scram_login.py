"""One SCRAM-SHA-512 login on a broker's SASL_SSL listener: accepted, refused, or unreachable.

Also a command for the broker's script, which checks the super user's credential after every
start instead of trusting that what was set once is still there (a KRaft broker can come back
without its SCRAM credentials; see ``infra.kafka.scram_users.retire_user``):

    python -m infra.local.scram_login HOST:PORT CAFILE USER < password
    exit 0: logged in; 3: the broker refused the credential; 2: the listener did not answer
    (1, Python's own for an uncaught error such as a missing module, is never "refused")
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed
from aiokafka.helpers import create_ssl_context

from infra.errors import NotReachable
from infra.local.kafka_env import MECHANISM

LOGIN_TIMEOUT_MS = 10_000
REFUSED = 3  # the exit code for a refused credential


async def login_accepted(bootstrap: str, cafile: Path, user: str, password: str) -> bool:
    """True when ``user`` logs in; False when the broker refuses the credential."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        conn = await create_conn(host, int(port), ssl_context=create_ssl_context(
                                     cafile=str(cafile)),
                                 security_protocol="SASL_SSL", sasl_mechanism=MECHANISM,
                                 sasl_plain_username=user, sasl_plain_password=password,
                                 request_timeout_ms=LOGIN_TIMEOUT_MS)
    except SaslAuthenticationFailed:
        return False
    except (KafkaError, OSError) as exc:
        raise NotReachable(f"the broker's SASL_SSL listener {bootstrap} does not answer ({exc})",
                           "start the broker (localstack/kafka/kafka.sh start)") from exc
    conn.close()
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m infra.local.scram_login HOST:PORT CAFILE USER < password",
              file=sys.stderr)
        return 64
    bootstrap, cafile, user = argv
    password = sys.stdin.readline().strip()
    try:
        return 0 if asyncio.run(asyncio.wait_for(
            login_accepted(bootstrap, Path(cafile), user, password),
            LOGIN_TIMEOUT_MS / 1000 * 2)) else REFUSED
    except (NotReachable, TimeoutError) as exc:
        print(f"scram_login: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
