"""The optional C record builder (ipfix/_facts.c) gives the record the Python code gives,
or no answer at all; generated facts include the odd ones it must leave to Python."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfix import facts as facts_module
from ipfix.facts import (
    FlowFacts,
    RecordRules,
    python_record_from_facts,
    record_from_facts,
)
from ipfix.http_record import HttpFlowRecord
from ipfix.privacy import COOKIE_MODES, DEFAULT_REDACTED, Redactor

pytestmark = pytest.mark.skipif(facts_module.native_build_record is None,
                                reason="C record builder not built")

HEADER_NAMES = [b"Host", b"host", b"HOST", b"User-Agent", b"user-agent", b"Content-Type",
                b"content-type", b"Referer", b"X-Forwarded-For", b"Cookie", b"cookie",
                b"Accept", b"X-Host", b"Hos", b"Content-Typ", b"content-type\x00"]

printable = st.binary(max_size=40).map(lambda b: bytes(c % 95 + 32 for c in b))
# text the C code takes on itself: printable ASCII, tabs, UTF-8, and invalid UTF-8 (replaced)
usual_bytes = (printable | st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]),
                                   max_size=20).map(lambda t: t.replace("\x7f", "").encode())
               | st.sampled_from([b"", b"GET", b"HTTP/1.1", b"HTTP/3", b"a\tb", b"\xff\xfeok",
                                  b"caf\xc3", b"\xe2\x82"]))
# and what it leaves to Python: control characters anywhere
odd_bytes = st.binary(max_size=40) | st.sampled_from([b"x\x7f", b"\x00", b"a\r\nb"])
usual_header = st.tuples(st.sampled_from(HEADER_NAMES) | printable, usual_bytes)
usual_headers = st.lists(usual_header, max_size=8).map(tuple)
odd_headers = (st.lists(st.tuples(st.sampled_from(HEADER_NAMES), odd_bytes), max_size=4).map(tuple)
               | st.lists(usual_header, max_size=3)  # a list, not mitmproxy's tuple
               | st.just(((b"Host",),)))
usual_timestamps = (st.none() | st.floats(1e9, 2e9) | st.just(0.0) | st.just(1e-7)
                    | st.integers(0, 2 * 10**9))  # scripts and tests make int timestamps
odd_timestamps = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(-2**70, 2**70)
                  | st.just(1e300) | st.just(True))
usual_hosts = st.sampled_from(["127.0.0.1", "::1", "::ffff:10.0.0.1", "::ffff:abcd",
                               "fe80::1%eth0", "", "%", "::ffff:1.2.3.4%lo"]) | st.text(max_size=12)
usual_addresses = (st.none() | st.just(()) | st.tuples(usual_hosts, st.integers(0, 65535))
                   | st.tuples(usual_hosts, st.integers(0, 65535), st.just(0), st.just(0)))
odd_addresses = (st.tuples(usual_hosts) | st.lists(st.integers(), max_size=2)
                 | st.tuples(usual_hosts, st.just(True)) | st.tuples(st.just(b"h"), st.just(1)))
usual_ids = st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper())
odd_ids = st.text(max_size=40) | st.sampled_from(["0x12345678-1234-1234", "+1_2", "abc"])
usual_text = st.none() | st.just("") | st.text(max_size=12)
usual_counts = st.integers(0, 10**9)
odd_counts = st.integers(-2**70, 2**70) | st.just(1.5)
usual_codes = st.integers(0, 7)
odd_codes = st.integers(-2**64, 2**64) | st.just("3")


@st.composite
def flow_facts(draw: st.DrawFn) -> FlowFacts:
    """Facts as a proxy gives them; more than half carry one odd field."""
    odd_field = draw(st.integers(0, 40))

    def pick(index: int, usual: st.SearchStrategy[object],
             odd: st.SearchStrategy[object]) -> object:
        return draw(odd if index == odd_field else usual)

    answered = draw(st.booleans())
    values = [
        pick(0, usual_ids, odd_ids), draw(st.integers(0, 2**45)),
        pick(1, usual_timestamps, odd_timestamps), pick(2, usual_timestamps, odd_timestamps),
        pick(3, usual_bytes, odd_bytes),
        pick(4, usual_bytes | st.sampled_from([b"/a?b=c", b"/?", b"?x", b"/p?q?r"]), odd_bytes),
        pick(5, usual_bytes, odd_bytes), pick(6, usual_bytes, odd_bytes),
        pick(7, st.text(max_size=12), st.just(b"h")),
        pick(8, usual_headers, odd_headers), pick(9, usual_counts, odd_counts),
        pick(10, usual_addresses, odd_addresses), pick(11, usual_addresses, odd_addresses),
        pick(12, usual_addresses, odd_addresses), pick(13, usual_text, st.just(b"x")),
        pick(14, usual_text, st.just(b"x")),
        pick(15, st.integers(100, 599), st.just("200")) if answered else None,
        pick(16, usual_bytes, odd_bytes), pick(17, usual_bytes, odd_bytes),
        pick(18, usual_headers, odd_headers), pick(19, usual_counts, odd_counts),
        pick(20, usual_timestamps, odd_timestamps), pick(21, usual_timestamps, odd_timestamps),
        pick(22, usual_codes, odd_codes), pick(23, usual_codes, odd_codes)]
    return FlowFacts(*values)  # type: ignore[arg-type]


rules = st.builds(RecordRules, cookies=st.sampled_from(COOKIE_MODES),
                  hash_key=st.binary(max_size=8),
                  redactor=st.sets(st.sampled_from([*DEFAULT_REDACTED, "b", "x"])).map(Redactor),
                  reverse_without_host=st.booleans())


def outcome(build: Callable[[FlowFacts, RecordRules], HttpFlowRecord], facts: FlowFacts,
            rule: RecordRules) -> object:
    try:
        return build(facts, rule)
    except Exception as exc:  # the kind of failure must match too
        return type(exc).__name__


@settings(max_examples=1500, deadline=None)
@given(flow_facts(), rules)
def test_c_and_python_give_the_same_record(facts: FlowFacts, rule: RecordRules) -> None:
    native = outcome(record_from_facts, facts, rule)
    python = outcome(python_record_from_facts, facts, rule)
    assert native == python


def typical(**changes: object) -> FlowFacts:
    fields: dict[str, object] = dict(
        flow_id="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", now_ms=1_764_600_000_500,
        request_start=1_764_600_000.1, request_end=1_764_600_000.2, method=b"GET",
        path=b"/items?page=2&token=abc", http_version=b"HTTP/1.1", authority=b"",
        host="upstream.local",
        request_headers=((b"Host", b"shop.example"), (b"User-Agent", b"curl/8.5"),
                         (b"Cookie", b"sid=1; theme=dark")),
        uploaded=0, client=("::ffff:192.0.2.7", 50_000), proxy=("192.0.2.1", 8080),
        upstream=("2001:db8::1%eth0", 443, 0, 0), sni="shop.example", tls_version="TLSv1.3",
        status_code=200, reason=b"OK", response_version=b"HTTP/1.1",
        response_headers=((b"content-type", b""), (b"Content-Type", b"text/html")),
        downloaded=5, response_start=1_764_600_000.3, response_end=1_764_600_000.4)
    fields.update(changes)
    return FlowFacts(**fields)  # type: ignore[arg-type]


def test_c_answers_the_common_case_itself() -> None:
    """Not a fallback to Python in disguise: the C code builds typical records itself."""
    build = facts_module.native_build_record
    assert build is not None
    for facts in (typical(), typical(status_code=None), typical(client=None, upstream=None),
                  typical(path=b"/caf\xc3\xa9", request_headers=())):
        record = build(HttpFlowRecord, facts, True, True)
        assert isinstance(record, HttpFlowRecord)
        assert record == python_record_from_facts(facts, RecordRules(  # raw: no names
            cookies="full", reverse_without_host=True, redactor=Redactor([])))
    record = build(HttpFlowRecord, typical(), False, False)
    assert record is not None
    assert record.cookie == ""  # not exporting cookies: the C code does not even copy them
    assert (record.client_address, record.upstream_address) == ("192.0.2.7", "2001:db8::1")
    assert record.query == "page=2&token=abc"  # raw: redaction is Python's, see below
    assert record.response_content_type == "text/html"  # the first one that is not empty
    assert record.flow_id == 0x0F1E2D3C4B5A6978


def test_privacy_rules_apply_on_the_c_path() -> None:
    record = record_from_facts(typical(), RecordRules(cookies="names",
                                                      redactor=Redactor(["token"])))
    assert record.query == "page=2&token=REDACTED"
    assert record.cookie == "sid; theme"
    assert record_from_facts(typical(), RecordRules()).cookie == ""


def test_c_leaves_the_unusual_to_python() -> None:
    build = facts_module.native_build_record
    assert build is not None
    for odd in (typical(method=b"GE\nT"), typical(request_start=math.nan),
                typical(flow_id="not-a-uuid"), typical(uploaded=2**70),
                typical(request_headers=[(b"Host", b"x")]), typical(client=["127.0.0.1", 1]),
                typical(status_code="200"), typical(request_start=True)):
        assert build(HttpFlowRecord, odd, False, False) is None


def test_c_fills_the_record_fields_in_their_order() -> None:
    from ipfix import _facts

    assert _facts.record_fields() == HttpFlowRecord.__struct_fields__
