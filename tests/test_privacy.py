"""The privacy rules alone: which parameters are secrets, what becomes of them, and that
the cheap first look never lets a secret through."""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mitmflows.privacy import (
    DEFAULT_REDACTED,
    REDACTED,
    Redactor,
    cookie_value,
    default_redactor,
)

JWT = ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"
       ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")


@pytest.mark.parametrize(("query", "expected"), [
    # the forms real APIs use
    ("accessToken=abc&apiKey=def&sessionId=x",
     "accessToken=REDACTED&apiKey=REDACTED&sessionId=REDACTED"),
    (f"apikey=1&authtoken=2&jwt={JWT}", "apikey=REDACTED&authtoken=REDACTED&jwt=REDACTED"),
    ("pass=3&pwd=4", "pass=REDACTED&pwd=REDACTED"),
    ("%74oken=abc", "%74oken=REDACTED"),  # percent-encoded name
    ("token[]=a&user[password]=b", "token[]=REDACTED&user[password]=REDACTED"),
    ("a=1&access_token=x&api-key=y&Session=z",
     "a=1&access_token=REDACTED&api-key=REDACTED&Session=REDACTED"),
    ("X-Amz-Signature=abc&X-Amz-Credential=k&X-Amz-Date=20261202",
     "X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&X-Amz-Date=20261202"),
    ("client_secret=s&refresh_token=r&id_token=i&code=c&state=xyz",
     "client_secret=REDACTED&refresh_token=REDACTED&id_token=REDACTED&code=REDACTED"
     "&state=xyz"),
    ("CLIENTSECRET=1&AUTHKEY=2&PHPSESSID=3&csrfToken=4&otp=5&bearer=6",
     "CLIENTSECRET=REDACTED&AUTHKEY=REDACTED&PHPSESSID=REDACTED&csrfToken=REDACTED"
     "&otp=REDACTED&bearer=REDACTED"),
    ("MY_pWd=1&x.PaSsWoRd=2&userPassword=3",
     "MY_pWd=REDACTED&x.PaSsWoRd=REDACTED&userPassword=REDACTED"),
    ("private_key=k&credentials=c&authorization=a",
     "private_key=REDACTED&credentials=REDACTED&authorization=REDACTED"),
    # a JWT is a secret whatever its name, also as a bare value
    (f"next=1&data={JWT}&{JWT}", "next=1&data=REDACTED&REDACTED"),
    # a URL in a value, holding a secret of its own
    ("redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Fcode%3DSECRET&page=2",
     "redirect_uri=REDACTED&page=2"),
    ("redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Fpage%3D2",
     "redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Fpage%3D2"),
    # ; separates parameters on some servers
    ("a=1;token=x;b=2", "a=1;token=REDACTED;b=2"),
    # the shape stays: names without a value, empty values, repeated separators
    ("flag&token&token=&&page=2", "flag&token&token=&&page=2"),
    # not secrets: words that merely contain a short sensitive word
    ("monkey=1&keyboard=2&passenger=3&design=4&zipcode=5&author=6&bypass=7",
     "monkey=1&keyboard=2&passenger=3&design=4&zipcode=5&author=6&bypass=7"),
    ("q=token&page=2", "q=token&page=2"),  # a sensitive word as a value is not a secret
    ("", ""),
])
def test_query_redaction(query: str, expected: str) -> None:
    assert default_redactor().query(query) == expected


@pytest.mark.parametrize(("referer", "expected"), [
    ("https://app.example/callback?code=SECRET&state=x",
     "https://app.example/callback?code=REDACTED&state=x"),
    ("https://app.example/reset?token=abc#section", "https://app.example/reset?token=REDACTED"
                                                    "#section"),
    ("https://app.example/cb#access_token=abc&expires_in=3600",
     "https://app.example/cb#access_token=REDACTED&expires_in=3600"),
    ("https://user:hunter2@app.example/x?page=1", "https://user:REDACTED@app.example/x?page=1"),
    ("https://app.example/a/b?page=2", "https://app.example/a/b?page=2"),
    ("https://app.example/", "https://app.example/"),
    (f"https://app.example/s?x={JWT}", "https://app.example/s?x=REDACTED"),
    ("/relative/path?sessionId=9", "/relative/path?sessionId=REDACTED"),
])
def test_referer_redaction_keeps_host_and_path(referer: str, expected: str) -> None:
    assert default_redactor().url(referer) == expected


def test_the_default_list_holds_what_real_apis_send() -> None:
    assert set(DEFAULT_REDACTED) >= {
        "password", "passwd", "pwd", "pass", "secret", "token", "key", "apikey", "auth",
        "authorization", "bearer", "session", "sessionid", "sid", "signature", "sig", "code",
        "jwt", "credential", "credentials", "otp", "private"}


def test_names_can_be_replaced_and_value_patterns_added() -> None:
    only_ticket = Redactor(["ticket"])
    assert only_ticket.query("ticket=1&token=2") == "ticket=REDACTED&token=2"
    more = Redactor([*DEFAULT_REDACTED, "ticket"], [r"\bAKIA[0-9A-Z]{16}\b"])
    assert more.query("ticket=1&token=2&id=AKIAABCDEFGHIJKLMNOP&n=3") == (
        "ticket=REDACTED&token=REDACTED&id=REDACTED&n=3")
    assert more.query(f"x={JWT}") == "x=REDACTED"  # JWTs always
    with pytest.raises(re.error):
        Redactor(value_patterns=["(unclosed"])


SECRET_WORDS = st.sampled_from(DEFAULT_REDACTED)
QUALIFIER = st.sampled_from(["user", "access", "client", "x", "my", "new", "old", "api"])


@st.composite
def sensitive_name(draw: st.DrawFn) -> str:
    """A sensitive word in any casing, alone or joined to another word by a separator,
    camelCase or brackets, with any of its characters percent-encoded."""
    word = draw(SECRET_WORDS)
    cased = "".join(c.upper() if up else c for c, up in zip(
        word, draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word))),
        strict=True))
    other = draw(QUALIFIER)
    form = draw(st.sampled_from(["alone", "before", "after", "camel", "bracket", "array"]))
    separator = draw(st.sampled_from("_-."))
    name = {"alone": cased, "before": f"{other}{separator}{cased}",
            "after": f"{cased}{separator}{other}", "camel": other + word.capitalize(),
            "bracket": f"{other}[{cased}]", "array": f"{cased}[]"}[form]
    encoded = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(f"%{ord(c):02X}" if enc else quote(c, safe="[]")
                   for c, enc in zip(name, encoded, strict=True))


@settings(max_examples=500, deadline=None)
@given(name=sensitive_name(), value=st.text("abcXYZ0189-_.~", min_size=1, max_size=20),
       before=st.sampled_from(["", "page=2&", "q=x;"]),
       after=st.sampled_from(["", "&sort=asc", ";n=1"]))
def test_every_form_of_a_sensitive_name_is_redacted(name: str, value: str, before: str,
                                                    after: str) -> None:
    query = f"{before}{name}={value}{after}"
    assert default_redactor().query(query) == f"{before}{name}={REDACTED}{after}"


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["Token", "API-KEY", "x.Secret", "page", "İd", "sig_V", "ßession", "%70wd",
                     "a+b", ""]) | st.text(max_size=8),
    st.sampled_from(["", "=", "=v", "=İ", f"={JWT}", "=%65yJ"])), max_size=5),
    st.sampled_from("&;"))
def test_the_first_look_misses_nothing(pairs: list[tuple[str, str]], separator: str) -> None:
    """The cheap first look (one pattern on case-folded text) never skips a query that the
    full rules would change."""
    redactor = default_redactor()
    query = separator.join(name + value for name, value in pairs)
    if not redactor.mentions(query):
        assert redactor._query(query, 2) == query


def test_cookie_modes() -> None:
    header = "a=1; b=2"
    assert cookie_value(header, "off", b"k") == ""
    assert cookie_value(header, "names", b"k") == "a; b"
    assert cookie_value(header, "full", b"k") == header
    digest = hmac.new(b"k", b"1", hashlib.sha256).hexdigest()[:16]
    other = hmac.new(b"k", b"2", hashlib.sha256).hexdigest()[:16]
    assert cookie_value(header, "hashed", b"k") == f"a={digest}; b={other}"
    assert cookie_value(header, "hashed", b"other") != cookie_value(header, "hashed", b"k")
