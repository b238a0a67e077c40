"""The optional C encoder gives the same bytes as the Python one, and never crashes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfix import template
from ipfix.errors import EncodeError
from ipfix.ie import DEFAULT_REGISTRY
from ipfix.layout import LayoutEncoder
from ipfix.native import speedups as _speedups
from ipfix.records import ALL_LAYOUTS, DEFAULT_MAX_LENGTHS
from ipfix.template import RecordEncoder

pytestmark = pytest.mark.skipif(_speedups is None, reason="C part not built")
NATIVE: Any = _speedups

TEMPLATES = [t for layout in ALL_LAYOUTS for t in (*layout.ipfix_templates(DEFAULT_REGISTRY),
                                                  *layout.netflow9_templates(DEFAULT_REGISTRY))]


def value_for(field: template.TemplateField) -> st.SearchStrategy[object]:
    data_type = field.element.data_type.name
    if data_type.startswith("IPV4"):
        return st.ip_addresses(v=4).map(str) | st.just("") | st.text(max_size=5)
    if data_type.startswith("IPV6"):
        return st.ip_addresses(v=6).map(str) | st.just("") | st.text(max_size=50)
    if data_type == "STRING":
        return st.text(max_size=300) | st.binary(max_size=5) | st.none()
    bits = 8 * field.length
    return st.integers(-5, 2**bits + 5) | st.integers(0, 2**bits - 1)


@st.composite
def template_and_values(draw: st.DrawFn) -> tuple[template.Template, list[object]]:
    chosen = draw(st.sampled_from(TEMPLATES))
    return chosen, [draw(value_for(f)) for f in chosen.fields]


@settings(max_examples=250, deadline=None)
@given(template_and_values())
def test_same_bytes_or_same_error(case: tuple[template.Template, list[object]]) -> None:
    chosen, values = case
    native = RecordEncoder(chosen, DEFAULT_MAX_LENGTHS, terminate_fixed_strings=True)
    assert native.native_plan is not None
    python = RecordEncoder(chosen, DEFAULT_MAX_LENGTHS, terminate_fixed_strings=True)
    python.native_plan = None
    outcomes = []
    for encoder in (native, python):
        try:
            outcomes.append(encoder.encode(values))
        except (EncodeError, ValueError, TypeError) as exc:
            outcomes.append(type(exc).__name__.encode())
    assert outcomes[0] == outcomes[1]
    assert native.truncations.count == python.truncations.count


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.lists(st.one_of(st.integers(), st.text(max_size=20),
                                                  st.none(), st.binary(max_size=4)),
                                        max_size=12))
def test_hostile_plans_and_values_never_crash(plan: bytes, values: list[object]) -> None:
    try:
        result = NATIVE.encode(values, plan)
    except (ValueError, TypeError):
        return
    assert result is None or (isinstance(result[0], bytes) and result[1] >= 0)


BOOT_MS = 1_764_600_000_000
MS = (st.integers(BOOT_MS - 10_000, BOOT_MS + 2**33) | st.integers(-5, 2**64 + 5)
      | st.sampled_from([0, BOOT_MS, BOOT_MS + 2**32, BOOT_MS + 2**32 - 1, 2**63 - 1, 2**63]))


@settings(max_examples=300, deadline=None)
@given(MS, MS, st.sampled_from(["192.0.2.1", "2001:db8::1"]), st.booleans())
def test_v9_uptimes_from_c_match_the_python_values(start: int, end: int, client: str,
                                                   private_fields: bool) -> None:
    """The C encoder computes FIRST/LAST_SWITCHED itself (max(ms - boot, 0) mod 2^32);
    out-of-range times fall back to Python, which raises or encodes the same."""
    from ipfix.http_record import HTTP_RECORDS
    from tests.conftest import sample_record

    templates = HTTP_RECORDS.netflow9_templates(DEFAULT_REGISTRY,
                                                include_enterprise=private_fields)
    native = LayoutEncoder(HTTP_RECORDS, templates, netflow9_boot_time_ms=BOOT_MS)
    python = LayoutEncoder(HTTP_RECORDS, templates, netflow9_boot_time_ms=BOOT_MS)
    python._lanes = [(template_id, encoder, None) for template_id, encoder, _ in python._lanes]
    for field_encoder in python._encoders:
        field_encoder.native_plan = None
    assert all(plan is not None for _, _, plan in native._lanes) == private_fields
    record = sample_record(3, start_ms=start, end_ms=end, client_address=client)
    outcomes: list[tuple[int, bytes]] = []
    for http_encoder in (native, python):
        try:
            outcomes.append(http_encoder.encode(record, 1376))
        except EncodeError:
            outcomes.append((0, b"error"))
    assert outcomes[0] == outcomes[1]


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=60) | st.text(max_size=30).map(str.encode)
       | st.lists(st.sampled_from([b"a", b"\t", b"\x00", b"\r\n", b"\x7f", b"\xc3\xbc", b"\xff",
                                   b"\xe2\x82", b"\x1f", b" "])).map(b"".join))
def test_safe_text_equals_the_python_reference(data: bytes) -> None:
    from ipfix import text

    assert NATIVE.safe_text(data) == text.python_safe_text(data)
    assert text.safe_text(data) == text.python_safe_text(data)


NAMES = (b"host", b"user-agent", b"content-type", b"referer", b"x-forwarded-for", b"cookie")
HEADER_NAME = st.sampled_from([b"Host", b"HOST", b"host", b"User-Agent", b"Cookie", b"cookie",
                               b"Referer", b"X-Forwarded-For", b"Accept", b"hosT", b"ho st",
                               b"\xc4\xb0host", b""]) | st.binary(max_size=16)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(HEADER_NAME, st.binary(max_size=20)), max_size=12))
def test_scan_headers_equals_the_python_reference(fields: list[tuple[bytes, bytes]]) -> None:
    from ipfix import text

    expected = text.python_scan_headers(tuple(fields), NAMES)
    assert NATIVE.scan_headers(tuple(fields), NAMES) == expected
    assert text.scan_headers(tuple(fields), NAMES) == expected


def test_scan_headers_leaves_odd_shapes_to_python() -> None:
    from ipfix import text

    odd: tuple[tuple[bytes, bytes], ...] = ((b"Host", "not bytes"),)  # type: ignore[assignment]
    assert NATIVE.scan_headers(odd, NAMES) is None
    assert text.scan_headers(odd, NAMES) == text.python_scan_headers(odd, NAMES)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.none() | st.binary(max_size=20), max_size=8).map(tuple))
def test_safe_texts_equals_the_python_reference(values: tuple[bytes | None, ...]) -> None:
    from ipfix import text

    assert NATIVE.safe_texts(values) == text.python_safe_texts(values)


@settings(max_examples=500, deadline=None)
@given(st.uuids().map(str) | st.text("0123456789abcdefABCDEF-xg\u00e9", max_size=40))
def test_hex64_equals_the_python_reference(text_value: str) -> None:
    from ipfix import text

    try:
        expected: object = text.python_hex64(text_value)
    except ValueError:
        expected = ValueError
    native = NATIVE.hex64(text_value)
    assert native is None or native == expected
    try:
        assert text.hex64(text_value) == expected
    except ValueError:
        assert expected is ValueError
