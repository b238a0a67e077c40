"""RFC 5655 IPFIX files: a stream of IPFIX messages, written as they are made.

A file is a collector that never goes away, so it takes the same messages as a
UDP collector; tshark and Wireshark open it with `-r`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import DecodeError
from .message import IPFIX_HEADER, IPFIX_VERSION

FILE_MAX_MESSAGE_SIZE = 0xFFFF  # no datagram limit in a file: use the largest message


class IpfixFileWriter:
    """Appends IPFIX messages to a file; one writer per file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: BinaryIO | None = self.path.open("ab")

    def write(self, message: bytes) -> None:
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        if message[:2] != IPFIX_VERSION.to_bytes(2, "big"):
            raise ValueError("only IPFIX messages belong in an IPFIX file")
        self._file.write(message)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> IpfixFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
