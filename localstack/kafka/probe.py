"""Is a Kafka broker ready? Sends one Metadata (v4) request; stdlib only, so it runs before any
project environment exists. Exit 0 when the broker lists itself and a controller, else 1."""

from __future__ import annotations

import socket
import struct
import sys


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def broker_ready(host: str, port: int, timeout_s: float = 2.0) -> bool:
    client_id = b"meshgate-probe"
    header = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id
    body = struct.pack(">ib", -1, 0)  # all topics, no auto-creation
    request = header + body
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _read_exact(sock, 4))
            response = _read_exact(sock, size)
    except OSError:
        return False
    offset = 4 + 4  # correlation id, throttle time
    (brokers,) = struct.unpack_from(">i", response, offset)
    offset += 4
    for _ in range(brokers):
        offset += 4  # node id
        (host_len,) = struct.unpack_from(">h", response, offset)
        offset += 2 + host_len + 4
        (rack_len,) = struct.unpack_from(">h", response, offset)
        offset += 2 + max(rack_len, 0)
    (cluster_len,) = struct.unpack_from(">h", response, offset)
    offset += 2 + max(cluster_len, 0)
    (controller,) = struct.unpack_from(">i", response, offset)
    return bool(brokers >= 1 and controller >= 0)


if __name__ == "__main__":
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"
    host, _, port = address.rpartition(":")
    sys.exit(0 if broker_ready(host, int(port)) else 1)
