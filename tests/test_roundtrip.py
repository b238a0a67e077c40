"""Property-based round trips: what the session encodes, the decoder gives back."""

from __future__ import annotations

import struct
from ipaddress import ip_address

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipfix.decoder import Decoder
from ipfix.errors import DecodeError
from ipfix.http_record import DEFAULT_MAX_LENGTHS, DEFAULT_V9_WIDTHS, HTTP_FIELDS, HttpFlowRecord
from ipfix.ie import DEFAULT_REGISTRY as REG
from ipfix.session import ExportFormat
from ipfix.template import utf8_prefix
from tests.conftest import decode_all, flow_records, run_session

pytestmark = pytest.mark.usefixtures("encoder_impl")

U64 = st.integers(0, 2**64 - 1)
text = st.text(max_size=300) | st.sampled_from(
    ["", "a" * 254, "b" * 255, "c" * 256, "\u00e9" * 200])
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)

STRING_ATTRS = [a for a, n in HTTP_FIELDS if isinstance(n, str) and REG[n].data_type == 13]


@st.composite
def records(draw: st.DrawFn, strings: st.SearchStrategy[str] = text) -> HttpFlowRecord:
    client_family = draw(st.sampled_from([ipv4, ipv6]))
    upstream = draw(st.sampled_from([ipv4, ipv6, st.just("")]))
    return HttpFlowRecord(
        flow_id=draw(U64), start_ms=draw(U64), end_ms=draw(U64),
        client_address=draw(client_family), proxy_address=draw(client_family),
        upstream_address=draw(upstream), client_port=draw(st.integers(0, 65535)),
        proxy_port=draw(st.integers(0, 65535)), upstream_port=draw(st.integers(0, 65535)),
        protocol=draw(st.sampled_from([6, 17])), octets=draw(U64),
        initiator_octets=draw(U64), responder_octets=draw(U64), uploaded_bytes=draw(U64),
        downloaded_bytes=draw(U64), status_code=draw(st.integers(0, 65535)),
        flow_end_reason=draw(st.integers(0, 255)), termination_state=draw(st.integers(0, 255)),
        upstream_ttfb_ms=draw(st.integers(0, 2**32 - 1)),
        **{attr: draw(strings) for attr in STRING_ATTRS},
    )


ADDRESS_NAMES = {n for _, names in HTTP_FIELDS if isinstance(names, tuple) for n in names}


def normalised(fields: list[dict[str, object]]) -> list[dict[str, object]]:
    """Addresses as objects: text forms of IPv4-mapped IPv6 differ between Pythons."""
    return [{k: ip_address(v) if k in ADDRESS_NAMES else v for k, v in f.items()}  # type: ignore[arg-type]
            for f in fields]


def numbered(batch: list[HttpFlowRecord]) -> list[HttpFlowRecord]:
    """Flow ids 0..n-1: a message groups records by template, so match them by id."""
    return [msgspec.structs.replace(r, flow_id=i) for i, r in enumerate(batch)]


def by_flow_id(fields: list[dict[str, object]]) -> list[dict[str, object]]:
    return sorted(fields, key=lambda f: f["flowId"])  # type: ignore[arg-type,return-value]


def expected_fields(record: HttpFlowRecord, *, limits: dict[str, int], strip_nul: bool
                    ) -> dict[str, object]:
    """What a decoder should report for `record`, after documented truncation."""
    client_v6 = ":" in record.client_address
    upstream_v6 = ":" in record.upstream_address if record.upstream_address else client_v6
    out: dict[str, object] = {}
    for attribute, names in HTTP_FIELDS:
        value = getattr(record, attribute)
        if isinstance(names, tuple):
            v6 = upstream_v6 if attribute == "upstream_address" else client_v6
            name = names[v6]
            value = ip_address(value or ("::" if v6 else "0.0.0.0"))
        else:
            name = names
        if isinstance(value, str) and REG[name].data_type == 13:
            data = utf8_prefix(value.encode(), limits[name])
            if strip_nul:
                data = data.rstrip(b"\x00")
            value = data.decode()
        out[name] = value
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), min_size=1, max_size=6))
def test_ipfix_round_trip(batch: list[HttpFlowRecord]) -> None:
    batch = numbered(batch)
    _, datagrams = run_session(batch, max_message_size=65535)
    decoded = by_flow_id(normalised(flow_records(decode_all(datagrams))))
    assert decoded == [expected_fields(r, limits=dict(DEFAULT_MAX_LENGTHS), strip_nul=False)
                       for r in batch]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(st.text(max_size=120)), min_size=1, max_size=4))
def test_netflow9_round_trip(batch: list[HttpFlowRecord]) -> None:
    batch = numbered(batch)
    boot = 1_795_000_000_000  # the session's clock, NOW_MS, to its whole second
    # v9 strings are fixed-width and NUL-padded: trailing NULs cannot survive (documented)
    # times from before the exporter started to past the 32-bit wrap of sysUpTime
    masked = [HttpFlowRecord(**{**{a: getattr(r, a) for a in HttpFlowRecord.__struct_fields__},
                                "start_ms": boot - 10_000 + r.start_ms % 2**33,
                                "end_ms": boot - 10_000 + r.end_ms % 2**33})
              for r in batch]
    _, datagrams = run_session(masked, ExportFormat.NETFLOW9, max_message_size=65535)
    got = by_flow_id(normalised(flow_records(decode_all(datagrams))))
    for record, fields in zip(masked, got, strict=True):
        assert fields.pop("flowStartSysUpTime") == max(record.start_ms - boot, 0) % 2**32
        assert fields.pop("flowEndSysUpTime") == max(record.end_ms - boot, 0) % 2**32
        room = {name: width - 1 for name, width in DEFAULT_V9_WIDTHS.items()}  # NUL-terminated
        assert fields == expected_fields(record, limits=room, strip_nul=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(st.text(min_size=0, max_size=3000)), min_size=1, max_size=5),
       st.integers(600, 1500))
def test_small_messages_truncate_to_fit_never_drop(batch: list[HttpFlowRecord], cap: int) -> None:
    batch = numbered(batch)
    limits = {name: 4000 for name in DEFAULT_MAX_LENGTHS}
    session, datagrams = run_session(batch, max_message_size=cap, max_lengths=limits)
    assert all(len(d.payload) <= cap for d in datagrams)
    got = by_flow_id(normalised(flow_records(decode_all(datagrams))))
    assert len(got) == len(batch)
    cuts = 0
    for record, fields in zip(batch, got, strict=True):
        full = expected_fields(record, limits=limits, strip_nul=False)
        for name, value in full.items():
            if isinstance(value, str) and REG[name].data_type == 13:
                assert value.startswith(str(fields[name]))  # a prefix, on a character boundary
                cuts += fields[name] != value
            else:
                assert fields[name] == value
    assert session.truncations.count >= cuts


@settings(max_examples=10, deadline=None)  # each example decodes every prefix
@given(st.lists(records(st.text(max_size=40)), min_size=1, max_size=5))
def test_every_prefix_decodes_fewer_records_or_raises(batch: list[HttpFlowRecord]) -> None:
    for fmt in ExportFormat:
        _, datagrams = run_session(batch, fmt)
        decoder = Decoder()
        for datagram in datagrams:
            full = decoder.decode(datagram.payload, "x")
            payload = datagram.payload
            for cut in range(len(payload)):
                prefix = bytearray(payload[:cut])
                if fmt is ExportFormat.IPFIX and cut >= 4:
                    prefix[2:4] = struct.pack("!H", cut)  # make the header agree: walk the sets
                try:
                    part = decoder.decode(bytes(prefix), "x")
                except DecodeError:
                    continue
                # a cut message lost records, or templates (they may end a message)
                assert (len(part.records) < len(full.records) or not full.records
                        or len(part.template_ids) < len(full.template_ids))
