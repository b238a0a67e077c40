"""Reading RFC 5655 IPFIX files: a stream of IPFIX messages, split by their headers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from .errors import DecodeError
from .message import IPFIX_HEADER, IPFIX_VERSION


def read_messages(stream: BinaryIO) -> Iterator[bytes]:
    """The messages of an IPFIX file, split by their header's length field."""
    offset = 0
    while True:
        header = stream.read(IPFIX_HEADER.size)
        if not header:
            return
        if len(header) < IPFIX_HEADER.size:
            raise DecodeError("truncated message header at end of file", offset=offset)
        version, length = int.from_bytes(header[:2], "big"), int.from_bytes(header[2:4], "big")
        if version != IPFIX_VERSION or length < IPFIX_HEADER.size:
            raise DecodeError(f"not an IPFIX message (version {version}, length {length})",
                              offset=offset)
        body = stream.read(length - IPFIX_HEADER.size)
        if len(body) < length - IPFIX_HEADER.size:
            raise DecodeError("truncated message at end of file", offset=offset)
        offset += length
        yield header + body
