"""What a TLS (or QUIC, DTLS) ClientHello offers, as records carry it.

mitmproxy reads the ClientHello for its own decisions and keeps only the SNI and the
ALPN offers on the connection, and only when the SNI is a valid host name. A record also
wants the highest version offered, and a hostile or broken SNI is worth seeing too: so
these are read from the ClientHello's extensions, bounded, and made safe for collectors
here. Every list is cut between items, never inside one, and the cuts are counted.
"""

from __future__ import annotations

import msgspec
from mitmproxy.tls import ClientHello

from ipfix.text import safe_text

_SERVER_NAME, _ALPN, _SUPPORTED_VERSIONS = 0, 16, 43
VERSION_NAMES = {0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2",
                 0x0304: "TLSv1.3", 0xFEFF: "DTLSv1", 0xFEFD: "DTLSv1.2", 0xFEFC: "DTLSv1.3"}


class HelloFacts(msgspec.Struct, frozen=True, gc=False):
    """The offers of one ClientHello, as text of bounded size."""

    server_name: str = ""
    alpn_offers: str = ""  # comma-separated
    version: str = ""  # the highest offered: "TLSv1.3"
    cuts: int = 0  # fields cut (server name, offered ALPN) to stay within the limits


class Limits(msgspec.Struct, frozen=True):
    """Bytes of text a record can carry per field (the smallest of every collector's)."""

    server_name: int = 255
    alpn_offers: int = 256


def hello_facts(hello: ClientHello, limits: Limits) -> HelloFacts:
    """The facts of a ClientHello mitmproxy parsed; never raises for odd extensions."""
    cuts = 0
    server_name = hello.sni or ""
    alpn: list[bytes] = []
    versions: list[int] = []
    try:
        extensions = hello.extensions
    except Exception:  # a parser that gave up on one extension: what mitmproxy read stays
        extensions = []
    for kind, body in extensions:
        body = bytes(body)
        if kind == _SERVER_NAME and not server_name:
            server_name = _raw_server_name(body)
        elif kind == _SUPPORTED_VERSIONS and body:
            listed = body[1:1 + body[0]]
            versions = [int.from_bytes(listed[i:i + 2], "big")
                        for i in range(0, len(listed) - 1, 2)]
    try:
        alpn = list(hello.alpn_protocols)
    except Exception:
        alpn = []
    if len(server_name.encode()) > limits.server_name:
        server_name = server_name.encode()[:limits.server_name].decode("utf-8", "ignore")
        cuts += 1
    alpn_text, alpn_cuts = join_within([safe_text(a) for a in alpn], ",", limits.alpn_offers)
    return HelloFacts(server_name=server_name, alpn_offers=alpn_text,
                      version=(highest_version(versions)  # GREASE alone: none
                               or highest_version([_legacy_version(hello)])),
                      cuts=cuts + (1 if alpn_cuts else 0))


def _raw_server_name(body: bytes) -> str:
    """The first host name of a server_name extension mitmproxy did not accept (too long,
    odd characters): text as a collector can show it."""
    # server_name_list length (2), then name_type (1), name length (2), name
    if len(body) < 5 or body[2] != 0:
        return ""
    length = int.from_bytes(body[3:5], "big")
    return safe_text(body[5:5 + length])


def _legacy_version(hello: ClientHello) -> int:
    """legacy_version, the first field of the ClientHello body (RFC 8446 4.1.2)."""
    try:
        raw = hello.raw_bytes(wrap_in_record=False)
    except Exception:
        return 0
    return int.from_bytes(raw[:2], "big") if len(raw) >= 2 else 0


def highest_version(versions: list[int]) -> str:
    """The newest of the offered versions by name (GREASE values skipped; DTLS counts
    down); a version without a name as hex; "" for none."""
    real = [v for v in versions if v and (v & 0x0F0F) != 0x0A0A]
    if not real:
        return ""
    best = max(real, key=lambda v: 0x10000 - v if v >= 0xFE00 else v)
    return VERSION_NAMES.get(best, f"0x{best:04x}")


def join_within(items: list[str], separator: str, limit: int) -> tuple[str, int]:
    """The first items joined while they fit `limit` bytes of UTF-8, and how many were
    left out: a reader sees whole items or none, never half of one."""
    out: list[str] = []
    size = 0
    for index, item in enumerate(items):
        extra = len(item.encode()) + (len(separator) if out else 0)
        if size + extra > limit:
            return separator.join(out), len(items) - index
        out.append(item)
        size += extra
    return separator.join(out), 0
