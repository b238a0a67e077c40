"""mitmproxy's values as records carry them: float seconds as epoch milliseconds, flow
UUIDs as 64-bit flow ids, peer tuples as (host, port), sentences as one printable line."""

from __future__ import annotations

import functools
import time
from typing import Any

from ipfix.text import hex64, safe_text


def ms(timestamp: float | None) -> int:
    """Milliseconds from a proxy's float seconds; 0 (not exported as a time) for none."""
    return int(timestamp * 1000) if timestamp else 0


def clean(text: str | None) -> str:
    """A sentence of mitmproxy's (an error, often with OpenSSL's text inside) as a record
    carries it: one line, printable."""
    return safe_text(text.encode("utf-8", "replace")) if text else ""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def flow_id_of(uuid: str) -> int:
    """flowId from a proxy's UUID: its first 64 bits, so every record of one flow (interim,
    final) and of one connection carries the same id."""
    return hex64(uuid)


@functools.lru_cache(maxsize=4096)
def endpoint(address: Any) -> tuple[str, int]:
    """(host, port) with IPv4-mapped IPv6 unwrapped and any zone id dropped. Cached: every
    exchange on a connection has the same addresses."""
    if not address:
        return "", 0
    host, port = address[0], address[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host.partition("%")[0], port


@functools.lru_cache(maxsize=4096)
def endpoints(client: Any, proxy: Any) -> tuple[str, int, str, int]:
    """Client and proxy (host, port): a missing address is the zero address of the other
    side's family, so a record always has a template. Cached, as `endpoint`."""
    client_host, client_port = endpoint(client)
    proxy_host, proxy_port = endpoint(proxy)
    return (client_host or "0.0.0.0", client_port,
            proxy_host or ("::" if ":" in client_host else "0.0.0.0"), proxy_port)
