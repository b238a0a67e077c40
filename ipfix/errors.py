"""Typed errors of the wire library.

Decoders of hostile input must fail with these, never with IndexError or
struct.error, so a collector can report the datagram and carry on.
"""

from __future__ import annotations


class IpfixError(Exception):
    """Base of every error raised by the wire library."""


class EncodeError(IpfixError, ValueError):
    """A value cannot be represented by the template field it is meant for."""


class DecodeError(IpfixError, ValueError):
    """A datagram or file is malformed; says where, so the cause can be found."""

    def __init__(
        self,
        reason: str,
        *,
        offset: int | None = None,
        set_id: int | None = None,
        template_id: int | None = None,
    ) -> None:
        where = []
        if offset is not None:
            where.append(f"offset {offset}")
        if set_id is not None:
            where.append(f"set {set_id}")
        if template_id is not None:
            where.append(f"template {template_id}")
        super().__init__(f"{reason} ({', '.join(where)})" if where else reason)
        self.reason = reason
        self.offset = offset
        self.set_id = set_id
        self.template_id = template_id
