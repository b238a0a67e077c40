"""Files generated from the element registry must not drift from it."""

from __future__ import annotations

from pathlib import Path

from ipfix.configs import markdown_table, pmacct_primitives
from ipfix.ie import DEFAULT_REGISTRY

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
