"""Text as records carry it: bytes from the wire made into text every collector can show,
one pass over HTTP header fields, and the 64-bit number at the head of a UUID.

Each function has a C twin in `_speedups` (the header scan answers None for odd shapes,
which the Python one takes); these Python functions are the reference, and the only
code where the C module was not built or FLOWEXPORT_PURE_PYTHON is set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .native import speedups

_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
Fields = Sequence[tuple[bytes, bytes]]


def python_safe_text(value: bytes) -> str:
    """Text a collector can show: invalid UTF-8 and control characters (NUL cuts C strings
    short in collectors; CR/LF forge log lines) become U+FFFD; tabs stay."""
    text = value.decode("utf-8", "replace")
    return text if text.isprintable() else _CONTROL.sub("\ufffd", text)


def python_safe_texts(values: tuple[bytes | None, ...]) -> tuple[str, ...]:
    """safe_text of each value, "" for None: several in one call."""
    return tuple("" if value is None else python_safe_text(value) for value in values)


def python_hex64(text: str) -> int:
    """The number the first 16 hex digits of `text` spell, dashes skipped: a UUID's first
    64 bits (ValueError for anything else)."""
    digits = text.replace("-", "")[:16]
    if len(digits) != 16:
        raise ValueError(f"fewer than 16 hex digits in {text!r}")
    return int(digits, 16)


def python_scan_headers(fields: Fields, names: tuple[bytes, ...]
                        ) -> tuple[tuple[bytes | None, ...], int]:
    """The first value of each of `names` (lower-case) among `fields`, ASCII case ignored,
    and the fields' size as HTTP/1.1 text (name, ": ", value, CRLF each)."""
    found: list[bytes | None] = [None] * len(names)
    index = {name: i for i, name in enumerate(names)}
    size = 0
    for name, value in fields:
        size += len(name) + len(value) + 4
        i = index.get(name.lower())
        if i is not None and found[i] is None:
            found[i] = value
    return tuple(found), size


safe_text: Callable[[bytes], str] = python_safe_text
safe_texts: Callable[[tuple[bytes | None, ...]], tuple[str, ...]] = python_safe_texts
scan_headers = python_scan_headers
hex64 = python_hex64
if speedups is not None:
    safe_text = speedups.safe_text  # the twins, called directly
    safe_texts = speedups.safe_texts
    _native_scan = speedups.scan_headers

    _native_hex64 = speedups.hex64

    def scan_headers(fields: Fields, names: tuple[bytes, ...]
                     ) -> tuple[tuple[bytes | None, ...], int]:
        result = _native_scan(fields, names) if isinstance(fields, tuple) else None
        return python_scan_headers(fields, names) if result is None else result

    def hex64(text: str) -> int:
        value = _native_hex64(text)
        return python_hex64(text) if value is None else int(value)
