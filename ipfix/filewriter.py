"""RFC 5655 IPFIX files: a stream of IPFIX messages, written as they are made.

A file is a collector that never goes away, so it takes the same messages as a
UDP collector; tshark and Wireshark open it with `-r`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from .message import IPFIX_VERSION

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
