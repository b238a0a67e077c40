"""What may leave the proxy: query redaction and cookie export modes.

Pure functions on text, so the rules can be tested alone and reused by any producer
of HTTP records.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re

COOKIE_MODES = ("off", "names", "hashed", "full")
DEFAULT_REDACTED = ("token", "password", "passwd", "secret", "key", "auth", "session",
                    "signature", "sig", "code")
REDACTED = "REDACTED"


def redact_query(query: str, names: frozenset[str]) -> str:
    """Replace values of sensitive parameters; a name matches whole or as a _ - . part."""
    if not names or not query or _mentions(names, query) is None:
        return query
    return _redact_parts(query, names)


def _redact_parts(query: str, names: frozenset[str]) -> str:
    parts = query.split("&")
    changed = False
    for index, part in enumerate(parts):
        name, sep, _ = part.partition("=")
        lowered = name.lower()
        if lowered in names or (sep and any(
                word in names for word in lowered.replace("-", "_").replace(".", "_").split("_"))):
            parts[index] = f"{name}={REDACTED}"
            changed = True
    return "&".join(parts) if changed else query


@functools.cache
def _mention_pattern(names: frozenset[str]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(n.lower()) for n in sorted(names)))


def _mentions(names: frozenset[str], text: str) -> re.Match[str] | None:
    """A cheap first look: most queries name no sensitive parameter at all. On lower-cased
    text: an IGNORECASE pattern took 4.5 µs for a 50-character query, this 0.5 µs."""
    return _mention_pattern(names).search(text.lower())


def cookie_value(header: str, mode: str, key: bytes) -> str:
    """The Cookie header as the privacy mode allows: nothing, names, keyed hashes, or all."""
    if mode == "off" or not header:
        return ""
    if mode == "full":
        return header
    out = []
    for pair in header.split(";"):
        name, _, value = pair.strip().partition("=")
        if mode == "names":
            out.append(name)
        else:
            digest = hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:16]
            out.append(f"{name}={digest}")
    return "; ".join(out)
