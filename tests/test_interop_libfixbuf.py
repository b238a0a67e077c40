"""libfixbuf (ipfixDump), which nobody here wrote, applies our RFC 5610 type records: every
enterprise element named and typed, every value as sent, and not one warning."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
from pathlib import Path

import msgspec
import pytest

from ipfix.connection_record import CONNECTION_RECORDS, ConnectionRecord, FlowKind
from ipfix.datatypes import DataType
from ipfix.destinations import parse_collector
from ipfix.dns_record import DNS_RECORDS, DnsRecord
from ipfix.exporter import Exporter
from ipfix.http_record import HTTP_RECORDS, HttpFlowRecord
from ipfix.ie import DEFAULT_REGISTRY
from ipfix.layout import RecordLayout
from ipfix.records import ALL_LAYOUTS, DEFAULT_MAX_LENGTHS
from ipfix.session import SessionConfig
from ipfix.template import utf8_prefix
from tests.libfixbuf import DumpedRecord, dump_time, ipfix_dump
from tests.test_interop_tshark import RECORDS  # IPv4 and IPv6, UTF-8, cut, no upstream

pytestmark = [pytest.mark.slow, pytest.mark.interop,
              pytest.mark.skipif(shutil.which("ipfixDump") is None,
                                 reason="libfixbuf-tools (ipfixDump) not installed")]



AnyRecord = HttpFlowRecord | ConnectionRecord | DnsRecord

# one of each other kind, with values past 32 bits and text that needs UTF-8
OTHER_RECORDS: list[AnyRecord] = [
    ConnectionRecord(
        flow_id=7001, start_ms=1_700_000_000_123, end_ms=1_700_000_090_456,
        client_address="192.0.2.10", proxy_address="192.0.2.1", upstream_address="2001:db8::7",
        client_port=50123, proxy_port=5432, upstream_port=5432, octets=5_000_000_123,
        initiator_octets=5_000_000_000, responder_octets=123, initiator_messages=70_000,
        responder_messages=3, flow_end_reason=2, termination_state=0,
        kind=FlowKind.TCP_STREAM, tls_server_name="db.example", tls_version="TLSv1.3",
        tls_alpn="postgresql", tls_offered_alpn="postgresql", tls_offered_version="TLSv1.3"),
    ConnectionRecord(
        flow_id=7002, start_ms=1_700_000_000_000, end_ms=1_700_000_000_040,
        client_address="2001:db8::10", proxy_address="2001:db8::1", client_port=40000,
        proxy_port=8080, flow_end_reason=4, termination_state=8, kind=FlowKind.TLS_FAILURE,
        tls_server_name="pinned.example", tls_offered_alpn="h2, http/1.1",
        tls_offered_version="TLSv1.3", error="client rejected the certificate: ünknown ca"),
    DnsRecord(
        flow_id=7003, start_ms=1_700_000_000_500, end_ms=1_700_000_000_502,
        client_address="127.0.0.1", proxy_address="127.0.0.1", upstream_address="127.0.0.53",
        client_port=53000, proxy_port=53, upstream_port=53, octets=120, initiator_octets=40,
        responder_octets=80, transaction_id=0xBEEF, query_name="www.exämple.test",
        query_type=1, query_class=1, response_code=0, flags=0x8180, answer_count=2,
        answers="www.xn--exmple-cua.test CNAME a.test; a.test A 192.0.2.5", minimum_ttl=60),
]


def layout_of(record: AnyRecord) -> RecordLayout:
    return next(layout for layout in ALL_LAYOUTS if isinstance(record, layout.record_type))


def expected_fields(record: AnyRecord) -> dict[str, str]:
    """What ipfixDump must print for each element of `record`'s template."""
    out: dict[str, str] = {}
    client_v6 = ":" in record.client_address
    for attribute, names in layout_of(record).fields:
        value = getattr(record, attribute)
        if isinstance(names, tuple):
            v6 = (":" in value) if value else client_v6
            name = names[1 if v6 else 0]
            out[name] = value or ("::" if v6 else "0.0.0.0")
            continue
        element = DEFAULT_REGISTRY[names]
        if element.data_type is DataType.STRING:
            out[names] = utf8_prefix(value.encode(), DEFAULT_MAX_LENGTHS[names]).decode()
        elif element.data_type is DataType.DATE_TIME_MILLISECONDS:
            out[names] = dump_time(value)
        else:
            out[names] = str(value)
    return out


def check_records(dumped: list[DumpedRecord], output: str, sent: list[AnyRecord]) -> None:
    assert "_alienInformationElement" not in output  # every enterprise element named
    data_ids = {i for layout in ALL_LAYOUTS for i in layout.template_ids}
    flows = [r for r in dumped if r.template_id in data_ids]
    assert len(flows) == len(sent)
    by_id = {int(r.fields["flowId"]): r for r in flows}
    for record in sent:
        layout = layout_of(record)
        got = by_id[record.flow_id]
        assert got.template_id in layout.template_ids
        # addresses compared as addresses: ipfixDump writes IPv6 groups with leading zeros
        shown = {name: str(ipaddress.ip_address(value)) if "Address" in name else value
                 for name, value in got.fields.items()}
        assert shown == expected_fields(record)
        enterprise = {name for name, (pen, _) in got.keys.items() if pen}
        assert enterprise == {e.name for e in layout.all_elements(DEFAULT_REGISTRY)
                              if e.is_enterprise}
    types = [r for r in dumped if r.template_id == 260]
    assert {r.fields["informationElementName"] for r in types} == {
        e.name for e in DEFAULT_REGISTRY.enterprise_elements()}


def test_ipfixdump_names_and_types_every_field_of_our_file(tmp_path: Path) -> None:
    """The exporter's own file: collector, written as a proxy would write it."""
    path = tmp_path / "flows.ipfix"
    sent: list[AnyRecord] = [msgspec.structs.replace(r, flow_id=r.flow_id + 100 * n)
                             for n in range(3) for r in RECORDS]
    sent += OTHER_RECORDS

    async def export() -> None:
        exporter = Exporter([parse_collector(f"file:{path}")], SessionConfig(),
                            [HTTP_RECORDS, CONNECTION_RECORDS, DNS_RECORDS])
        exporter.start()
        for record in sent:
            exporter.submit(record)
        await exporter.wait_sent()
        exporter.close()

    asyncio.run(export())
    dumped, output, complaints = ipfix_dump(path)
    assert complaints == ""  # no warning, no sequence error
    check_records(dumped, output, sent)


def test_without_the_range_elements_ipfixdump_ignores_the_type_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What this guards: libfixbuf needs RFC 5610's range elements in the type-record
    template; without them every enterprise element is 'alien' (raw bytes)."""
    from ipfix import options

    monkeypatch.setattr(options, "TYPE_INFO_ELEMENTS", tuple(
        n for n in options.TYPE_INFO_ELEMENTS if "Range" not in n))
    monkeypatch.setattr(options, "NO_RANGE", ())
    path = tmp_path / "flows.ipfix"

    async def export() -> None:
        exporter = Exporter([parse_collector(f"file:{path}")], SessionConfig(), [HTTP_RECORDS])
        exporter.start()
        exporter.submit(RECORDS[0])
        await exporter.wait_sent()
        exporter.close()

    asyncio.run(export())
    _, output, _ = ipfix_dump(path)
    assert "_alienInformationElement" in output
