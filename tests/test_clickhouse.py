"""goflow2 -> Kafka -> ClickHouse with goflow2's real encodings, not our idea of them.

goflow2 (v2.2.3, read from its source) writes each flow as a protobuf FlowMessage
prefixed by its length (-format=bin): its own fields by their pb/flow.proto numbers, and
every field our mapping declares as an extra field of that number (varint: the value as
a big-endian unsigned number; string and bytes: the bytes as sent, NetFlow v9's NUL
padding included). Here the protobuf library builds such messages from what our
exporter sends, and embedded ClickHouse (chdb) reads them with the generated schema,
through the generated tables and view. goflow2 itself is not in the package registries
this project uses; the same files were checked against a goflow2 built from source.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import ruamel.yaml

from ipfix.decoder import Decoder
from ipfix.goflow2 import BUILTIN_ELEMENTS, FLOW_TYPES, custom_fields, proto_fields
from ipfix.http_record import DEFAULT_V9_WIDTHS, HttpFlowRecord
from ipfix.ie import DEFAULT_REGISTRY
from ipfix.session import ExportFormat
from tests.conftest import NOW_MS, run_session, sample_record

pytestmark = pytest.mark.slow  # embedded ClickHouse: run by .ci/run, not by -m 'not slow'

chdb = pytest.importorskip("chdb")
descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
from google.protobuf import descriptor_pool, message_factory  # noqa: E402
from google.protobuf.internal import encoder as protobuf_encoder  # noqa: E402

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROTO = DEPLOY / "clickhouse" / "flowexport.proto"
SCHEMA = DEPLOY / "clickhouse" / "schema.sql"
MAPPING = DEPLOY / "goflow2" / "mapping.yaml"

# goflow2's FlowMessage field names (pb/flow.proto, v2.2.3): what `formatter.fields` may
# name without declaring it
GOFLOW2_MESSAGE_FIELDS = frozenset((
    "type", "time_received_ns", "sequence_num", "sampling_rate", "sampler_address",
    "time_flow_start_ns", "time_flow_end_ns", "bytes", "packets", "src_addr", "dst_addr",
    "etype", "proto", "src_port", "dst_port", "in_if", "out_if", "src_mac", "dst_mac",
    "src_vlan", "dst_vlan", "vlan_id", "ip_tos", "forwarding_status", "ip_ttl", "ip_flags",
    "tcp_flags", "icmp_type", "icmp_code", "ipv6_flow_label", "fragment_id", "fragment_offset",
    "src_as", "dst_as", "next_hop", "next_hop_as", "src_net", "dst_net", "bgp_next_hop",
    "bgp_communities", "as_path", "mpls_ttl", "mpls_label", "mpls_ip", "observation_domain_id",
    "observation_point_id", "layer_stack", "layer_size", "ipv6_routing_header_addresses",
    "ipv6_routing_header_seg_left"))
GOFLOW2_RENDERERS = frozenset(("none", "ip", "mac", "etype", "proto", "datetime",
                               "datetimenano", "string"))
GOFLOW2_TYPES = frozenset(("varint", "string", "bytes"))


def goflow2_config_problems(mapping: dict[str, Any]) -> list[str]:
    """What goflow2 (producer/proto/config_impl.go) would refuse, or silently ignore."""
    problems = []
    formatter = mapping["formatter"]
    declared = {entry["name"]: entry for entry in formatter.get("protobuf", [])}
    render = formatter.get("render", {})
    for name in formatter["fields"]:
        if name not in GOFLOW2_MESSAGE_FIELDS and name not in declared and name not in render:
            problems.append(f"field {name} in config not found in protobuf")
    for name, entry in declared.items():
        if entry.get("type") not in GOFLOW2_TYPES:
            problems.append(f"could not map {name} to a ProtoType")
    indexes = [entry["index"] for entry in declared.values()]
    if len(set(indexes)) != len(indexes):
        problems.append("two declared fields share an index")
    problems += [f"{name} is not a renderer" for name, value in render.items()
                 if value not in GOFLOW2_RENDERERS]
    for section in ("ipfix", "netflowv9"):
        for entry in mapping.get(section, {}).get("mapping", []):
            # a destination must be a declared field (goflow2's own ones are matched by
            # their Go names; snake_case ones are silently ignored)
            if entry["destination"] not in declared:
                problems.append(f"{section}: destination {entry['destination']} is ignored")
            if set(entry) - {"field", "penprovided", "pen", "destination", "endianness"}:
                problems.append(f"{section}: unknown key in {entry}")
    return problems


def load_mapping() -> dict[str, Any]:
    return ruamel.yaml.YAML(typ="safe").load(MAPPING.read_text())  # type: ignore[no-any-return]


def test_goflow2_accepts_the_mapping_and_it_carries_every_field() -> None:
    mapping = load_mapping()
    assert goflow2_config_problems(mapping) == []
    # every element of the record: goflow2's own field, or one of ours, in both formats
    mapped = {(s, e["field"], e.get("pen")) for s in ("ipfix", "netflowv9")
              for e in mapping[s]["mapping"]}
    for attribute, names in _record_elements():
        for name in names:
            element = DEFAULT_REGISTRY[name]
            if name in BUILTIN_ELEMENTS:
                continue
            pen = element.enterprise_number if element.is_enterprise else None
            assert ("ipfix", element.element_id, pen) in mapped, attribute
            v9_type = element.element_id + (32768 if element.is_enterprise else 0)
            assert ("netflowv9", v9_type, None) in mapped, attribute
    upstream = [e for e in mapping["ipfix"]["mapping"] if e["field"] in (226, 282, 228)]
    assert {e["destination"] for e in upstream} == {"post_nat_dst_addr", "post_napt_dst_port"}
    assert mapping["formatter"]["render"]["post_nat_dst_addr"] == "ip"
    assert mapping["formatter"]["render"]["proto"] == "none"  # a number, not "TCP"


def test_the_check_catches_what_goflow2_refuses() -> None:
    """The rule check above can fail: the mapping shipped before this one did."""
    broken = load_mapping()
    broken["formatter"]["fields"].append("post_nat_dst_port_typo")
    broken["ipfix"]["mapping"].append({"field": 225, "destination": "next_hop_as"})
    problems = goflow2_config_problems(broken)
    assert "field post_nat_dst_port_typo in config not found in protobuf" in problems
    assert "ipfix: destination next_hop_as is ignored" in problems


def _record_elements() -> list[tuple[str, tuple[str, ...]]]:
    from ipfix.http_record import HTTP_FIELDS

    return [(a, n if isinstance(n, tuple) else (n,)) for a, n in HTTP_FIELDS]


def message_class() -> Any:
    """A FlowMessage class with every field of deploy/clickhouse/flowexport.proto."""
    file = descriptor_pb2.FileDescriptorProto(name="flowexport.proto", syntax="proto3")
    message = file.message_type.add(name="FlowMessage")
    flow_type = message.enum_type.add(name="FlowType")
    for number, name in enumerate(FLOW_TYPES):
        flow_type.value.add(name=name, number=number)
    kinds = {"uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
             "uint32": descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
             "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
             "FlowType": descriptor_pb2.FieldDescriptorProto.TYPE_ENUM}
    for name, number, kind in proto_fields(DEFAULT_REGISTRY):
        field = message.field.add(name=name, number=number, type=kinds[kind],
                                  label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
        if kind == "FlowType":
            field.type_name = ".FlowMessage.FlowType"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("FlowMessage"))


def packed(address: object) -> bytes:
    return ipaddress.ip_address(str(address)).packed if address else b""


def goflow2_messages(fmt: ExportFormat, records: list[HttpFlowRecord]) -> bytes:
    """What goflow2 -format=bin writes for what our exporter sends: the stream decoded,
    then every field filled the way goflow2's producer fills it."""
    flow_message = message_class()
    _, datagrams = run_session(records, fmt)
    decoder = Decoder()
    out = bytearray()
    customs = custom_fields(DEFAULT_REGISTRY)
    for datagram in datagrams:
        message = decoder.decode(datagram.payload)
        for record in (r for r in message.records if not r.is_options):
            fields = record.fields
            values: dict[str, Any] = {
                "type": "IPFIX" if fmt is ExportFormat.IPFIX else "NETFLOW_V9",
                "time_received_ns": NOW_MS * 1_000_000,
                "sequence_num": message.sequence_number,
                "sampler_address": socket.inet_aton("127.0.0.1"),
                "observation_domain_id": message.observation_domain_id}
            if fmt is ExportFormat.IPFIX:  # flowStart/EndMilliseconds
                values["time_flow_start_ns"] = int(fields["flowStartMilliseconds"]) * 10**6
                values["time_flow_end_ns"] = int(fields["flowEndMilliseconds"]) * 10**6
            else:  # unix_secs * 1e9 - (sysUpTime - FIRST_SWITCHED) * 1e6, as goflow2 does
                base = message.export_time * 10**9 - message.sys_uptime_ms * 10**6
                values["time_flow_start_ns"] = base + int(fields["flowStartSysUpTime"]) * 10**6
                values["time_flow_end_ns"] = base + int(fields["flowEndSysUpTime"]) * 10**6
            for name, value in fields.items():
                target = BUILTIN_ELEMENTS.get(name)
                if target in ("src_addr", "dst_addr"):
                    values[target] = packed(value)
                elif target in ("src_port", "dst_port", "proto", "bytes"):
                    values[target] = value
            for field in customs:
                present = [e.name for e in field.elements if e.name in fields]
                if not present:
                    continue
                value = fields[present[0]]
                if field.is_address:
                    values[field.name] = packed(value)
                elif field.kind == "string":
                    raw = str(value).encode()
                    if fmt is ExportFormat.NETFLOW9:  # the field as sent: NUL-padded
                        raw = raw.ljust(DEFAULT_V9_WIDTHS[present[0]], b"\0")
                    values[field.name] = raw
                else:
                    values[field.name] = value
            body = flow_message(**values).SerializeToString()
            out += protobuf_encoder._VarintBytes(len(body)) + body  # protodelim
    return bytes(out)


HOSTILE = [
    sample_record(0, host="quote\".example", user_agent='ua "quoted" back\\slash',
                  query='q="x"&b=\\'),
    sample_record(1, user_agent="tab\tand \u00fcn\u00efc\u00f6de \u2603",
                  referrer="https://app.example/\u00e4"),
    sample_record(2, client_address="2001:db8::10", proxy_address="2001:db8::1",
                  upstream_address="2001:db8::7", status_code=503, reason="Unavailable"),
    sample_record(3, upstream_address="", status_code=0, reason="", termination_state=2,
                  flow_end_reason=4),
]


def load_schema(session: Any) -> None:
    """The generated DDL, the Kafka table as a Null table (chdb has no Kafka): inserts into
    it go through the same materialized view."""
    ddl = SCHEMA.read_text()
    kafka = ddl.index("ENGINE = Kafka")
    ddl = ddl[:kafka] + "ENGINE = Null;" + ddl[ddl.index(";", kafka) + 1:]
    code = "\n".join(line for line in ddl.splitlines() if not line.startswith("--"))
    for statement in (s.strip() for s in code.split(";")):
        if statement:
            session.query(statement)


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_every_record_reaches_clickhouse_whatever_its_strings_hold(
        tmp_path: Path, fmt: ExportFormat) -> None:
    stream = tmp_path / "goflow2.bin"
    stream.write_bytes(goflow2_messages(fmt, HOSTILE))
    from chdb import session as chdb_session

    session = chdb_session.Session(str(tmp_path / "chdb"))
    try:
        load_schema(session)
        session.query(f"INSERT INTO flowexport_queue SELECT * FROM file('{stream}', 'Protobuf')"
                      f" SETTINGS format_schema = '{PROTO}:FlowMessage'")
        result = session.query(
            "SELECT flow_id, toString(src_addr) AS src, toString(post_nat_dst_addr) AS up,"
            " toString(flow_start) AS start, toString(flow_end) AS end, proto, src_port,"
            " http_request_host, http_user_agent, http_request_query, http_referrer,"
            " http_status_code, http_termination_state_code, type"
            " FROM flowexport_flows ORDER BY flow_id", "JSONEachRow")
        rows = [json.loads(line) for line in str(result).splitlines() if line.strip()]
    finally:
        session.close()
    assert [row["flow_id"] for row in rows] == [r.flow_id for r in HOSTILE]  # every one
    for row, record in zip(rows, HOSTILE, strict=True):
        mapped = "::ffff:" if "." in record.client_address else ""
        assert row["src"] == mapped + record.client_address
        upstream = record.upstream_address or ("::" if ":" in record.client_address
                                               else "0.0.0.0")
        assert row["up"] == ("::ffff:" + upstream if "." in upstream else upstream)
        assert row["start"] == _clickhouse_time(record.start_ms)
        assert row["end"] == _clickhouse_time(record.end_ms)
        assert (row["proto"], row["src_port"]) == (6, record.client_port)
        assert row["http_request_host"] == record.host  # no NUL padding left
        assert row["http_user_agent"] == record.user_agent
        assert row["http_request_query"] == record.query
        assert row["http_referrer"] == record.referrer
        assert row["http_status_code"] == record.status_code
        assert row["http_termination_state_code"] == record.termination_state
        assert row["type"] == ("IPFIX" if fmt is ExportFormat.IPFIX else "NETFLOW_V9")


def _clickhouse_time(ms: int) -> str:
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{ms % 1000:03d}"
