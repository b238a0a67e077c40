"""Where records go: collector addresses as operators write them, parsed and checked.

    127.0.0.1:4739  ipfix://[2001:db8::1]:4739  netflow9://collector:2055  file:flows.ipfix
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from .session import ExportFormat

DEFAULT_COLLECTOR = "127.0.0.1:4739"  # 4739: IANA's IPFIX port


class CollectorKind(StrEnum):
    IPFIX = "ipfix"
    NETFLOW9 = "netflow9"
    FILE = "file"


class CollectorSpec(msgspec.Struct, frozen=True):
    """Where one stream goes: `[ipfix://]HOST:PORT`, `netflow9://HOST:PORT` or `file:PATH`."""

    kind: CollectorKind
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def format(self) -> ExportFormat:
        return ExportFormat.NETFLOW9 if self.kind is CollectorKind.NETFLOW9 else ExportFormat.IPFIX

    def __str__(self) -> str:
        if self.kind is CollectorKind.FILE:
            return f"file:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind}://{host}:{self.port}"


def parse_collector(text: str) -> CollectorSpec:
    """Parse one collector entry; ValueError says what is wrong with it."""
    entry = text.strip()
    if entry.startswith("file:"):
        path = entry[len("file:"):]
        if not path:
            raise ValueError(f"{text!r}: file: needs a path")
        return CollectorSpec(CollectorKind.FILE, path=path)
    kind = CollectorKind.IPFIX
    scheme, sep, rest = entry.partition("://")
    if sep:
        try:
            kind = CollectorKind(scheme.lower())
        except ValueError:
            raise ValueError(f"{text!r}: unknown scheme {scheme!r} "
                             "(use ipfix://, netflow9:// or file:)") from None
        if kind is CollectorKind.FILE:
            raise ValueError(f"{text!r}: write files as file:PATH")
        entry = rest
    host, sep, port = entry.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r}: expected HOST:PORT")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"{text!r}: unclosed [ in IPv6 address")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: put an IPv6 address in brackets, e.g. [::1]:4739")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: port must be 1-65535")
    return CollectorSpec(kind, host, int(port))
