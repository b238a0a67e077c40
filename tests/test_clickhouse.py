"""The ClickHouse schema for goflow2 -> Kafka -> ClickHouse, checked in embedded ClickHouse
(chdb): the tables and the view are created, and real decoded records go in and come out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ipfix.configs import clickhouse_columns, clickhouse_schema, snake_case
from ipfix.ie import DEFAULT_REGISTRY
from tests.conftest import decode_all, run_session, sample_record

pytestmark = pytest.mark.slow  # embedded ClickHouse: run by .ci/run, not by -m 'not slow'

chdb_session = pytest.importorskip("chdb.session")

SCHEMA = Path(__file__).resolve().parent.parent / "deploy" / "clickhouse" / "schema.sql"
GOFLOW2_NAMES = {"octetDeltaCount": "bytes", "protocolIdentifier": "proto",
                 "sourceTransportPort": "src_port", "destinationTransportPort": "dst_port",
                 "postNAPTDestinationTransportPort": "post_napt_dst_port"}


def test_schema_file_matches_the_registry() -> None:
    assert SCHEMA.read_text() == clickhouse_schema(DEFAULT_REGISTRY)


def as_goflow2_json(fields: dict[str, Any], sequence: int) -> dict[str, Any]:
    """A decoded record the way goflow2 writes it with deploy/goflow2/mapping.yaml."""
    row: dict[str, Any] = {"type": "IPFIX", "time_received_ns": 1_800_000_000_000_000_000,
                           "sequence_num": sequence, "sampler_address": "127.0.0.1"}
    for name, value in fields.items():
        if name in GOFLOW2_NAMES:
            row[GOFLOW2_NAMES[name]] = value
        elif name.startswith("source") and "Address" in name:
            row["src_addr"] = value
        elif name.startswith("destination") and "Address" in name:
            row["dst_addr"] = value
        elif name.startswith("postNATDestination"):
            row["post_nat_dst_addr"] = value
        elif name == "flowStartMilliseconds":
            row["time_flow_start_ns"] = value * 1_000_000
        elif name == "flowEndMilliseconds":
            row["time_flow_end_ns"] = value * 1_000_000
        else:
            row[snake_case(name)] = value
    return row


def test_records_through_the_schema(tmp_path: Path) -> None:
    records = [sample_record(i, host=f"h{i % 2}.example", status_code=200 + (i % 2) * 204)
               for i in range(6)]
    records[3] = sample_record(3, host="h1.example", status_code=404,
                               client_address="2001:db8::5", proxy_address="2001:db8::1")
    _, datagrams = run_session(records)
    messages = decode_all(datagrams)
    rows = [as_goflow2_json(r.fields, m.sequence_number)
            for m in messages for r in m.records if not r.is_options]
    assert {k for row in rows for k in row} == {name for name, _ in
                                                clickhouse_columns(DEFAULT_REGISTRY)}
    # chdb has no Kafka: the queue table becomes a Null table feeding the same view
    ddl = SCHEMA.read_text()
    kafka = ddl.index("ENGINE = Kafka")
    ddl = ddl[:kafka] + "ENGINE = Null;" + ddl[ddl.index(";", kafka) + 1:]
    session = chdb_session.Session(str(tmp_path / "chdb"))
    try:
        code = "\n".join(line for line in ddl.splitlines() if not line.startswith("--"))
        for statement in (s.strip() for s in code.split(";")):
            if statement:
                session.query(statement)
        payload = "\n".join(json.dumps(row) for row in rows)
        session.query(f"INSERT INTO flowexport_queue FORMAT JSONEachRow {payload}")
        result = session.query(
            "SELECT http_request_host, http_status_code, count() AS n, sum(uploaded_bytes) AS up,"
            " any(http_request_query) AS q FROM flowexport_flows"
            " GROUP BY http_request_host, http_status_code ORDER BY http_request_host",
            "JSONEachRow")
        got = [json.loads(line) for line in str(result).splitlines() if line.strip()]
        v6 = session.query("SELECT src_addr FROM flowexport_flows WHERE flow_id = 1003", "CSV")
    finally:
        session.close()
    assert got == [
        {"http_request_host": "h0.example", "http_status_code": 200, "n": 3, "up": 102,
         "q": "page=2&sort=asc"},
        {"http_request_host": "h1.example", "http_status_code": 404, "n": 3, "up": 102,
         "q": "page=2&sort=asc"},
    ]
    assert str(v6).strip() == '"2001:db8::5"'
