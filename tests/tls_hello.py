"""A TLS ClientHello built byte by byte (RFC 8446 4.1.2), for hellos no real client
sends: a 10,000-byte server name, 200 ALPN values."""

from __future__ import annotations

import os
import struct

SERVER_NAME, ALPN, SUPPORTED_VERSIONS = 0, 16, 43
TLS13_SUITES = (0x1301, 0x1302, 0x1303)


def _vector(data: bytes, length_bytes: int) -> bytes:
    return len(data).to_bytes(length_bytes, "big") + data


def _extension(kind: int, body: bytes) -> bytes:
    return struct.pack("!H", kind) + _vector(body, 2)


def client_hello(server_name: bytes | None, alpn: list[bytes], versions: list[int]) -> bytes:
    """One TLS record holding a ClientHello offering `versions` (supported_versions)."""
    extensions = b""
    if server_name is not None:
        extensions += _extension(SERVER_NAME, _vector(b"\x00" + _vector(server_name, 2), 2))
    if alpn:
        extensions += _extension(ALPN, _vector(b"".join(_vector(p, 1) for p in alpn), 2))
    if versions:
        extensions += _extension(SUPPORTED_VERSIONS,
                                 _vector(b"".join(struct.pack("!H", v) for v in versions), 1))
    body = (b"\x03\x03" + os.urandom(32) + _vector(os.urandom(32), 1)
            + _vector(b"".join(struct.pack("!H", s) for s in TLS13_SUITES), 2)
            + b"\x01\x00" + _vector(extensions, 2))
    handshake = b"\x01" + _vector(body, 3)
    if len(handshake) > 1 << 14:
        raise ValueError("more than one TLS record")
    return b"\x16\x03\x01" + _vector(handshake, 2)
