"""libfixbuf (ipfixDump), which nobody here wrote, applies our RFC 5610 type records: every
enterprise element named and typed, every value as sent, and not one warning."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
from pathlib import Path

import msgspec
import pytest

from ipfix.datatypes import DataType
from ipfix.destinations import parse_collector
from ipfix.exporter import Exporter
from ipfix.http_record import DEFAULT_MAX_LENGTHS, HTTP_FIELDS, HTTP_RECORDS, HttpFlowRecord
from ipfix.ie import DEFAULT_REGISTRY
from ipfix.session import SessionConfig
from ipfix.template import utf8_prefix
from tests.libfixbuf import DumpedRecord, dump_time, ipfix_dump
from tests.test_interop_tshark import RECORDS  # IPv4 and IPv6, UTF-8, cut, no upstream

pytestmark = [pytest.mark.slow, pytest.mark.interop,
              pytest.mark.skipif(shutil.which("ipfixDump") is None,
                                 reason="libfixbuf-tools (ipfixDump) not installed")]



def expected_fields(record: HttpFlowRecord) -> dict[str, str]:
    """What ipfixDump must print for each element of `record`'s template."""
    out: dict[str, str] = {}
    client_v6 = ":" in record.client_address
    for attribute, names in HTTP_FIELDS:
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


def check_records(dumped: list[DumpedRecord], output: str, sent: list[HttpFlowRecord]) -> None:
    assert "_alienInformationElement" not in output  # every enterprise element named
    flows = [r for r in dumped if 256 <= r.template_id <= 259]
    assert len(flows) == len(sent)
    by_id = {int(r.fields["flowId"]): r for r in flows}
    for record in sent:
        got = by_id[record.flow_id]
        # addresses compared as addresses: ipfixDump writes IPv6 groups with leading zeros
        shown = {name: str(ipaddress.ip_address(value)) if "Address" in name else value
                 for name, value in got.fields.items()}
        assert shown == expected_fields(record)
        enterprise = {name for name, (pen, _) in got.keys.items() if pen}
        assert enterprise == {e.name for e in DEFAULT_REGISTRY.enterprise_elements()}
    types = [r for r in dumped if r.template_id == 260]
    assert {r.fields["informationElementName"] for r in types} == {
        e.name for e in DEFAULT_REGISTRY.enterprise_elements()}


def test_ipfixdump_names_and_types_every_field_of_our_file(tmp_path: Path) -> None:
    """The exporter's own file: collector, written as a proxy would write it."""
    path = tmp_path / "flows.ipfix"
    sent = [msgspec.structs.replace(r, flow_id=r.flow_id + 100 * n) for n in range(3)
            for r in RECORDS]

    async def export() -> None:
        exporter = Exporter([parse_collector(f"file:{path}")], SessionConfig(), [HTTP_RECORDS])
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
