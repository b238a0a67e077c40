"""What may leave the proxy: redaction of secrets in URLs, and cookie export modes.

Flow records go to collectors and data lakes that many more people read than the proxy,
and a secret that reaches them cannot be taken back. So a query parameter's value is
replaced when its name says it is a secret, in whatever form APIs write names
(`accessToken`, `api-key`, `user[password]`, `%74oken`, `AUTHTOKEN`), or when the value
is a secret by its form (a JWT), whatever its name. The same rules apply to the query
of URL-valued fields such as the Referer, which carries the query of the previous page.
Only values change: names, order and separators stay, so the record still says what
was asked. Secrets in paths (`/reset/<token>`) are not found: nothing marks them.

Pure functions on text, so the rules can be tested alone and reused by any producer of
records.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Iterable
from urllib.parse import unquote_plus

COOKIE_MODES = ("off", "names", "hashed", "full")
# Names whose values are secrets: a parameter is sensitive when its whole name or one of
# its words (split at _ - . [ ] and other punctuation, and at camelCase) is one of these.
DEFAULT_REDACTED = (
    "password", "passwd", "pwd", "pass", "secret", "token", "key", "apikey", "auth",
    "authorization", "bearer", "session", "sessionid", "sessid", "sid", "signature", "sig",
    "code", "jwt", "credential", "credentials", "otp", "private", "hmac")
# Words that, run together with a sensitive word, still name a secret: authtoken,
# clientsecret, refreshtoken, csrftoken, idtoken, apikey, privatekey, passcode ...
QUALIFIERS = frozenset((
    "access", "refresh", "id", "api", "client", "app", "user", "csrf", "xsrf", "reset",
    "magic", "login", "oauth", "consumer", "master", "signing", "encryption", "security",
    "verification", "confirm", "confirmation", "php", "js", "asp", "net", "x"))
# Values that are secrets whatever their name. JWT (RFC 7519): three base64url segments,
# the first a JSON header, so it starts with "eyJ" ('{"'); a JWE has five.
JWT_PATTERN = r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
REDACTED = "REDACTED"

_SEPARATORS = re.compile(r"([&;])")  # both separate parameters on some server: split on both
_PARTS = re.compile(r"[A-Za-z0-9]+")  # a name's parts, between _ - . [ ] and the like
# a part's camelCase words: an acronym (API in APIKey), a capitalised or lower-case word
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_ENCODED_NAME = re.compile(r"(?:^|[&;])[^=&;]*%")  # a parameter name with a %XX in it
_LONG_WORD = 5  # sensitive words this long are found inside others too (xyzPassword)
_NESTED_DEPTH = 2  # a value that is itself a URL or a query is looked into this deep


class Redactor:
    """The redaction rules, compiled once (configure time) and applied per record.

    `names`: sensitive names (replaces DEFAULT_REDACTED); `value_patterns`: regular
    expressions of values to redact whatever their name, beside the JWT one."""

    def __init__(self, names: Iterable[str] = DEFAULT_REDACTED,
                 value_patterns: Iterable[str] = ()) -> None:
        self.names = frozenset(n.casefold() for n in names if n)
        self._long = tuple(n for n in self.names if len(n) >= _LONG_WORD)
        self._prefixes = self.names | QUALIFIERS
        extra = [p for p in value_patterns if p]
        for pattern in extra:
            re.compile(pattern)  # re.error for a bad one, at configure time
        self._values = re.compile("|".join(f"(?:{p})" for p in (JWT_PATTERN, *extra)))
        self._extra_values = (re.compile("|".join(f"(?:{p})" for p in extra))
                              if extra else None)
        # The first look, on lower-cased text: every sensitive name contains one of the
        # names as written (camelCase or not), unless it is percent-encoded; a JWT
        # contains "eyj". Most queries contain none of them and cost no more than this.
        # Names that contain another (password: pass) add nothing to it; a pattern of
        # bare literals lets the regex engine skip to the characters they begin with.
        shortest = [n for n in self.names if not any(o != n and o in n for o in self.names)]
        self._first_look = _literals([*shortest, "eyj"])

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Redactor) and self.names == other.names
                and self._values.pattern == other._values.pattern)

    def __hash__(self) -> int:
        return hash((self.names, self._values.pattern))

    def mentions(self, text: str) -> bool:
        """Whether `text` may hold something to redact (False: it certainly does not)."""
        if self._first_look.search(text.lower()) is not None:
            return True
        if "%" in text and _ENCODED_NAME.search(text) is not None:
            return True
        if self._extra_values is None:
            return False
        return (self._extra_values.search(text) is not None
                or ("%" in text and self._extra_values.search(unquote_plus(text)) is not None))

    def query(self, query: str) -> str:
        """The query with the values of sensitive parameters replaced by REDACTED."""
        if not query or not self.mentions(query):
            return query
        return self._query(query, _NESTED_DEPTH)

    def url(self, url: str) -> str:
        """A URL (a Referer) with its query and fragment redacted like a query, and the
        password of a user:password@ part replaced; scheme, host and path stay."""
        if not url or ("?" not in url and "#" not in url and "@" not in url):
            return url
        return self._url(url, _NESTED_DEPTH)

    def is_sensitive_name(self, name: str) -> bool:
        """Percent-decoded and case-folded, the name is sensitive when it, one of its parts
        (split at punctuation) or words (parts split at camelCase) is a sensitive name;
        when it contains a long sensitive name; or when a part or word is a qualifier or
        sensitive name run together with a sensitive name (authtoken, clientsecret)."""
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        raw_parts = _PARTS.findall(name)
        parts = [p.casefold() for p in raw_parts]
        words = [w.casefold() for p in raw_parts for w in _WORDS.findall(p)]
        compact = "".join(parts)
        names = self.names
        if compact in names or any(p in names for p in parts) or any(w in names for w in words):
            return True
        if any(long in compact for long in self._long):
            return True
        return any(self._is_compound(w) for w in (*parts, *words))

    def _is_compound(self, word: str) -> bool:
        """authtoken, clientsecret: a qualifier or sensitive word, then a sensitive word."""
        return any(word[:i] in self._prefixes and word[i:] in self.names
                   for i in range(1, len(word)))

    def _query(self, query: str, depth: int) -> str:
        parts = _SEPARATORS.split(query)
        changed = False
        for index in range(0, len(parts), 2):  # odd indexes hold the separators
            part = parts[index]
            name, sep, value = part.partition("=")
            if not sep:  # a bare value: a secret only by its form
                if self._secret_value(name, depth):
                    parts[index] = REDACTED
                    changed = True
            elif value and (self.is_sensitive_name(name) or self._secret_value(value, depth)):
                parts[index] = f"{name}={REDACTED}"
                changed = True
        return "".join(parts) if changed else query

    def _secret_value(self, value: str, depth: int) -> bool:
        """A JWT or another configured pattern, or a URL or query holding a secret."""
        if not value:
            return False
        decoded = unquote_plus(value) if ("%" in value or "+" in value) else value
        if self._values.search(decoded) is not None:
            return True
        if depth and ("=" in decoded or "://" in decoded):  # redirect_uri=https://..?code=
            inner = self._url(decoded, depth - 1) if "://" in decoded else self._query(
                decoded, depth - 1)
            return inner != decoded
        return False

    def _url(self, url: str, depth: int) -> str:
        base, hash_mark, fragment = url.partition("#")
        base, question, query = base.partition("?")
        base = _without_password(base)
        if question:
            query = self._query(query, depth)
        if hash_mark and "=" in fragment:  # OAuth implicit flow: #access_token=...
            fragment = self._query(fragment, depth)
        return f"{base}{question}{query}{hash_mark}{fragment}"


def _literals(words: Iterable[str]) -> re.Pattern[str]:
    """A pattern finding any of `words`, grouped by first letter (k(?:ey)|p(?:ass|wd)...):
    the regex engine then tries one branch per character, not one per word."""
    by_first: dict[str, list[str]] = {}
    for word in sorted(set(words)):
        by_first.setdefault(word[0], []).append(re.escape(word[1:]))
    return re.compile("|".join(f"{re.escape(first)}(?:{'|'.join(rests)})"
                               for first, rests in by_first.items()))


def _without_password(base: str) -> str:
    """scheme://user:password@host/path -> scheme://user:REDACTED@host/path."""
    scheme, slashes, rest = base.partition("//")
    if not slashes:
        return base
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return base
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}//{user}{colon}{REDACTED if colon else ''}@{host}{slash}{path}"


@functools.lru_cache(maxsize=8)
def default_redactor() -> Redactor:
    return Redactor()


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
