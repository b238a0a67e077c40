"""Files generated from the element registry must not drift from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ipfix.configs import markdown_table, pmacct_primitives
from ipfix.datatypes import NATURAL_SIZE, DataType
from ipfix.ie import DEFAULT_REGISTRY, InformationElement

ROOT = Path(__file__).resolve().parent.parent


def test_readme_field_table_matches_the_registry() -> None:
    readme = (ROOT / "README.md").read_text()
    begin = readme.index("<!-- fields:begin")
    start = readme.index("\n", begin) + 1
    end = readme.index("<!-- fields:end -->")
    assert readme[start:end] == markdown_table(DEFAULT_REGISTRY)


def test_pmacct_primitives_match_the_registry() -> None:
    deploy = ROOT / "deploy" / "pmacct"
    assert (deploy / "primitives-ipfix.lst").read_text() == pmacct_primitives(DEFAULT_REGISTRY)
    assert (deploy / "primitives-netflow9.lst").read_text() == pmacct_primitives(
        DEFAULT_REGISTRY, netflow9=True)


def test_nfacctd_configs_match_the_registry() -> None:
    from ipfix.configs import nfacctd_config

    deploy = ROOT / "deploy" / "pmacct"
    assert (deploy / "nfacctd-ipfix.conf").read_text() == nfacctd_config(DEFAULT_REGISTRY)
    assert (deploy / "nfacctd-netflow9.conf").read_text() == nfacctd_config(
        DEFAULT_REGISTRY, netflow9=True)


def test_goflow2_and_clickhouse_files_match_the_registry() -> None:
    from ipfix import goflow2

    assert (ROOT / "deploy" / "goflow2" / "mapping.yaml").read_text() == goflow2.mapping(
        DEFAULT_REGISTRY)
    clickhouse = ROOT / "deploy" / "clickhouse"
    assert (clickhouse / "flowexport.proto").read_text() == goflow2.proto_schema(
        DEFAULT_REGISTRY)
    assert (clickhouse / "schema.sql").read_text() == goflow2.clickhouse_schema(DEFAULT_REGISTRY)
    numbers = [number for _, number, _ in goflow2.proto_fields(DEFAULT_REGISTRY)]
    assert len(set(numbers)) == len(numbers)
    query = next(f for f in goflow2.custom_fields(DEFAULT_REGISTRY)
                 if f.name == "http_request_query")
    assert (query.index, query.kind) == (1003, "string")  # 1000 + our element id


def test_libfds_elements_match_the_registry_and_parse() -> None:
    import xml.etree.ElementTree as ET

    from ipfix.configs import libfds_elements

    path = ROOT / "deploy" / "ipfixcol2" / "flowexport-elements.xml"
    assert path.read_text() == libfds_elements(DEFAULT_REGISTRY)
    root = ET.fromstring(path.read_text())
    assert root.findtext("scope/pen") == "57011"
    names = {e.findtext("name"): (e.findtext("id"), e.findtext("dataType"))
             for e in root.findall("element")}
    assert names["httpRequestQuery"] == ("3", "string")
    assert names["uploadedBytes"] == ("1", "unsigned64")
    assert len(names) == len(DEFAULT_REGISTRY.enterprise_elements())
    # NetFlow v9: ipfixcol2 reads field type 32768 + id as enterprise 4294967295, id
    v9_path = ROOT / "deploy" / "ipfixcol2" / "flowexport-elements-netflow9.xml"
    assert v9_path.read_text() == libfds_elements(DEFAULT_REGISTRY, netflow9=True)
    v9_root = ET.fromstring(v9_path.read_text())
    assert v9_root.findtext("scope/pen") == "4294967295"
    v9_names = {e.findtext("name"): e.findtext("id") for e in v9_root.findall("element")}
    assert {n: i for n, (i, _) in names.items()} == v9_names
    startup = ET.parse(ROOT / "deploy" / "ipfixcol2" / "startup.xml")
    # control characters dropped: v9 strings are NUL-padded (true prints the padding)
    assert startup.findtext(".//nonPrintableChar") == "false"
    assert sorted(p.text or "" for p in startup.iterfind(".//localPort")) == ["2055", "4739"]


def test_registry_json_matches_and_covers_every_element() -> None:
    import json

    from ipfix.configs import registry_json

    path = ROOT / "deploy" / "elements.json"
    assert path.read_text() == registry_json(DEFAULT_REGISTRY)
    rows = json.loads(path.read_text())
    assert len(rows) == len(DEFAULT_REGISTRY)
    query = next(r for r in rows if r["name"] == "httpRequestQuery")
    assert (query["elementId"], query["enterpriseNumber"], query["netflow9FieldType"]) == (
        3, 57011, 32771)
    assert query["records"] == ["http"] and query["dataType"] == "string"
    sni = next(r for r in rows if r["name"] == "tlsServerName")
    assert sni["records"] == ["http", "connection"]
    assert next(r for r in rows if r["name"] == "dnsAnswers")["records"] == ["dns"]


# -- every kind's elements, read from the files as their collectors read them -------------
# Expectations come from the registry and the record kinds (ipfix.records), not from the
# generators: the files are parsed as YAML, XML, SQL and key=value text.

V9_ENTERPRISE_BASE = 32768  # NetFlow v9 field type of enterprise element id (the default)
# libfds (src/iemgr/iemgr_common.cpp) reads any other spelling as unassigned
LIBFDS_TYPES = frozenset((
    "octetArray", "unsigned8", "unsigned16", "unsigned32", "unsigned64", "signed8",
    "signed16", "signed32", "signed64", "float32", "float64", "boolean", "macAddress",
    "string", "dateTimeSeconds", "dateTimeMilliseconds", "dateTimeMicroseconds",
    "dateTimeNanoseconds", "ipv4Address", "ipv6Address"))
LIBFDS_SEMANTICS = frozenset((
    "default", "quantity", "totalCounter", "deltaCounter", "identifier", "flags", "list",
    "snmpCounter", "snmpGauge"))
LIBFDS_UNITS = frozenset((
    "none", "bits", "octets", "packets", "flows", "seconds", "milliseconds", "microseconds",
    "nanoseconds", "4-octet words", "messages", "hops", "entries", "frames"))


def _iana_spelling(enum_name: str) -> str:
    """DELTA_COUNTER -> deltaCounter, IPV4_ADDRESS -> ipv4Address: RFC 7012's names."""
    first, *rest = enum_name.lower().split("_")
    return first + "".join(word.capitalize() for word in rest)


def _enterprise_record_elements() -> list[InformationElement]:
    """Our elements that some kind of record carries (HTTP, connection, DNS)."""
    from ipfix.records import record_elements

    elements = [e for e in record_elements(DEFAULT_REGISTRY) if e.is_enterprise]
    # the connection and DNS kinds' elements are among them
    assert {e.element_id for e in elements} >= set(range(12, 29))
    return elements


def _is_unsigned(element: InformationElement) -> bool:
    return element.data_type in (DataType.UNSIGNED8, DataType.UNSIGNED16,
                                 DataType.UNSIGNED32, DataType.UNSIGNED64)


def test_libfds_files_describe_every_kinds_elements() -> None:
    import xml.etree.ElementTree as ET

    spot = {"proxyFlowKind": ("unsigned8", "identifier", "none"),
            "initiatorMessages": ("unsigned64", "deltaCounter", "messages"),
            "dnsFlags": ("unsigned16", "flags", "none"),
            "dnsMinimumTtl": ("unsigned32", "quantity", "seconds"),
            "dnsAnswers": ("string", "default", "none")}
    for name, pen in (("flowexport-elements.xml", "57011"),
                      ("flowexport-elements-netflow9.xml", "4294967295")):
        root = ET.fromstring((ROOT / "deploy" / "ipfixcol2" / name).read_text())
        assert root.findtext("scope/pen") == pen
        ids = [int(e.findtext("id") or "-1") for e in root.findall("element")]
        assert len(ids) == len(set(ids)), f"{name}: an id twice (libfds refuses the file)"
        read = {int(e.findtext("id") or "-1"): (
            e.findtext("name"), e.findtext("dataType"),
            e.findtext("dataSemantics", "default"), e.findtext("units", "none"),
            e.findtext("status")) for e in root.findall("element")}
        for element in _enterprise_record_elements():
            assert element.element_id in read, f"{name}: no {element.name}"
            got = read[element.element_id]
            wanted = (element.name, _iana_spelling(element.data_type.name),
                      _iana_spelling(element.semantics.name),
                      _iana_spelling(element.units.name), "current")
            assert got == wanted, name
            assert got[1] in LIBFDS_TYPES and got[2] in LIBFDS_SEMANTICS
            assert got[3] in LIBFDS_UNITS
            if element.name in spot:
                assert got[1:4] == spot[element.name]


def _goflow2_mapping() -> dict[str, Any]:
    import ruamel.yaml

    path = ROOT / "deploy" / "goflow2" / "mapping.yaml"
    return ruamel.yaml.YAML(typ="safe").load(path.read_text())  # type: ignore[no-any-return]


def _goflow2_destination(mapping: dict[str, Any], element: InformationElement) -> str:
    """Where goflow2 puts `element`, IPFIX (PEN and id) and NetFlow v9 (32768 + id) alike."""
    ipfix = [e["destination"] for e in mapping["ipfix"]["mapping"]
             if e["field"] == element.element_id and e.get("penprovided") is True
             and e.get("pen") == element.enterprise_number]
    v9 = [e["destination"] for e in mapping["netflowv9"]["mapping"]
          if e["field"] == V9_ENTERPRISE_BASE + element.element_id]
    assert len(ipfix) == 1, f"ipfix: {element.name} mapped {len(ipfix)} times"
    assert v9 == ipfix, f"netflowv9: {element.name} goes to {v9}, not {ipfix}"
    return str(ipfix[0])


def test_goflow2_mapping_carries_every_kinds_elements() -> None:
    mapping = _goflow2_mapping()
    formatter = mapping["formatter"]
    declared = {e["name"]: e for e in formatter["protobuf"]}
    seen: dict[str, str] = {}
    for element in _enterprise_record_elements():
        destination = _goflow2_destination(mapping, element)
        assert seen.setdefault(destination, element.name) == element.name, destination
        assert destination in formatter["fields"], destination
        is_string = element.data_type is DataType.STRING
        assert is_string or _is_unsigned(element), element.name
        assert declared[destination]["type"] == ("string" if is_string else "varint")
        # strings rendered as text; numbers as numbers
        assert formatter["render"].get(destination) == ("string" if is_string else None)
    assert _goflow2_destination(mapping, DEFAULT_REGISTRY["dnsFlags"]) == "dns_flags"


def _sql_columns(sql: str, table: str) -> dict[str, str]:
    """Column -> type of `CREATE TABLE ... table ( ... )` in `sql`."""
    import re

    found = re.search(rf"CREATE TABLE IF NOT EXISTS {table}\n\((.*?)\n\)\n", sql, re.S)
    assert found, table
    columns = [line.strip().rstrip(",").partition(" ") for line in found[1].strip().splitlines()]
    assert len({name for name, _, _ in columns}) == len(columns), f"{table}: a column twice"
    return {name: kind for name, _, kind in columns}


def test_clickhouse_schema_has_a_column_of_the_right_type_for_every_kinds_elements() -> None:
    import re

    mapping = _goflow2_mapping()
    declared = {e["name"]: e for e in mapping["formatter"]["protobuf"]}
    clickhouse = ROOT / "deploy" / "clickhouse"
    sql = (clickhouse / "schema.sql").read_text()
    queue, flows = _sql_columns(sql, "flowexport_queue"), _sql_columns(sql, "flowexport_flows")
    view = sql[sql.index("CREATE MATERIALIZED VIEW"):]
    proto = {name: (kind, int(number)) for kind, name, number in re.findall(
        r"^\s*(\w+) (\w+) = (\d+);", (clickhouse / "flowexport.proto").read_text(), re.M)}
    for element in _enterprise_record_elements():
        column = _goflow2_destination(mapping, element)
        is_string = element.data_type is DataType.STRING
        # goflow2 writes the field at the mapping's index; ClickHouse reads it by the proto
        assert proto[column] == ("bytes" if is_string else "uint64",
                                 declared[column]["index"]), column
        assert queue[column] == ("String" if is_string else "UInt64"), column
        size = NATURAL_SIZE[element.data_type]
        assert flows[column] == ("String" if is_string else f"UInt{8 * (size or 0)}"), column
        assert re.search(rf" AS {column},?\n", view), f"the view fills no {column}"
    assert (flows["proxy_flow_kind"], flows["dns_flags"], flows["dns_minimum_ttl"]) == (
        "UInt8", "UInt16", "UInt32")


def test_pmacct_primitives_carry_every_kinds_elements() -> None:
    from ipfix.records import DEFAULT_V9_WIDTHS

    def primitives(name: str) -> dict[str, dict[str, str]]:
        rows = [dict(pair.split("=", 1) for pair in line.split())
                for line in (ROOT / "deploy" / "pmacct" / name).read_text().splitlines()
                if line and not line.startswith("#")]
        return {row["field_type"]: row for row in rows}

    ipfix, v9 = primitives("primitives-ipfix.lst"), primitives("primitives-netflow9.lst")
    for element in _enterprise_record_elements():
        is_string = element.data_type is DataType.STRING
        semantics = "str" if is_string else "u_int"
        one = ipfix[f"{element.enterprise_number}:{element.element_id}"]
        assert (one["len"], one["semantics"]) == (
            "vlen" if is_string else str(NATURAL_SIZE[element.data_type]), semantics)
        other = v9[str(V9_ENTERPRISE_BASE + element.element_id)]
        assert (other["len"], other["semantics"]) == (
            str(DEFAULT_V9_WIDTHS[element.name] if is_string
                else NATURAL_SIZE[element.data_type]), semantics)
        assert one["name"] == other["name"], element.name
