"""Wireshark's decoder (tshark), which nobody here wrote, reads our IPFIX and v9 as we meant.

tshark drops a set with a wrong length without a word, so each test also
checks that tshark found exactly as many flow records as we sent.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ipfix.filewriter import FILE_MAX_MESSAGE_SIZE, IpfixFileWriter
from ipfix.http_record import DEFAULT_MAX_LENGTHS, DEFAULT_V9_WIDTHS, HttpFlowRecord
from ipfix.session import ExportFormat
from ipfix.template import utf8_prefix
from tests.conftest import NOW_MS, run_session, sample_record
from tests.pcap import write_pcap
from tests.tshark import flows, http_flows, tshark_json, tshark_problems, tshark_time

pytestmark = [pytest.mark.slow, pytest.mark.interop,
              pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")]

RECORDS = [
    sample_record(0),
    sample_record(1, client_address="2001:db8::10", proxy_address="2001:db8::1",
                  upstream_address="2001:db8::7", host="b\u00fccher.example",
                  user_agent="Mozilla/5.0 " + "x" * 300, status_code=404, reason="Not Found"),
    sample_record(2, upstream_address="2001:db8::7", method="POST", target="/api/orders",
                  referrer="", x_forwarded_for=""),
    sample_record(3, client_address="2001:db8::10", proxy_address="2001:db8::1",
                  upstream_address="", status_code=0, reason="", termination_state=2,
                  flow_end_reason=4),
]


def paired(got: list[dict[str, Any]], records: list[HttpFlowRecord]
           ) -> list[tuple[dict[str, Any], HttpFlowRecord]]:
    """Flows matched to records by flowId: a message groups records by template."""
    by_id = {int(flow["cflow.flow_id"]): flow for flow in got}
    assert len(by_id) == len(got) == len(records)
    return [(by_id[record.flow_id], record) for record in records]


def check_common(flow: dict[str, Any], record: HttpFlowRecord) -> None:
    v6 = ":" in record.client_address
    assert flow["cflow.srcaddrv6" if v6 else "cflow.srcaddr"] == record.client_address
    assert flow["cflow.dstaddrv6" if v6 else "cflow.dstaddr"] == record.proxy_address
    assert flow["cflow.srcport"] == str(record.client_port)
    assert flow["cflow.dstport"] == str(record.proxy_port)
    assert flow["cflow.protocol"] == str(record.protocol)
    assert flow["cflow.octets"] == str(record.octets)
    assert flow["cflow.initiator_octets"] == str(record.initiator_octets)
    assert flow["cflow.responder_octets"] == str(record.responder_octets)
    assert flow["cflow.flow_id"] == str(record.flow_id)
    assert flow["cflow.flow_end_reason"] == str(record.flow_end_reason)
    assert flow["cflow.post_naptdestination_transport_port"] == str(record.upstream_port)
    upstream = record.upstream_address
    if (upstream and ":" in upstream) or (not upstream and v6):
        assert flow["cflow.post_nat_destination_ipv6_address"] == (upstream or "::")
    else:
        assert flow["cflow.post_natdestination_ipv4_address"] == (upstream or "0.0.0.0")


def check_http(flow: dict[str, Any], record: HttpFlowRecord, limits: Mapping[str, int]) -> None:
    def cut(value: str, name: str) -> str:
        return utf8_prefix(value.encode(), limits[name]).decode()

    assert flow["cflow.http_statuscode"] == str(record.status_code)
    for key, attribute, name in [
        ("cflow.http_request_method", "method", "httpRequestMethod"),
        ("cflow.http_request_host", "host", "httpRequestHost"),
        ("cflow.http_request_target", "target", "httpRequestTarget"),
        ("cflow.http_message_version", "version", "httpMessageVersion"),
        ("cflow.http_user_agent", "user_agent", "httpUserAgent"),
        ("cflow.http_content_type", "content_type", "httpContentType"),
        ("cflow.http_reason_phrase", "reason", "httpReasonPhrase"),
    ]:
        value = cut(getattr(record, attribute), name)
        if value:  # tshark leaves zero-length strings out
            assert flow[key] == value, key
        else:
            assert key not in flow or flow[key] == ""


def test_tshark_decodes_ipfix_datagrams(tmp_path: Path) -> None:
    _, datagrams = run_session(RECORDS, max_message_size=900)
    capture = tmp_path / "ipfix.pcap"
    write_pcap(capture, [d.payload for d in datagrams])
    args = ("-r", str(capture), "-d", "udp.port==4739,cflow")
    assert tshark_problems(*args) == ""
    packets = tshark_json(*args)
    assert len(packets) == len(datagrams)
    got = http_flows(packets)
    assert len(got) == len(RECORDS)
    for flow, record in paired(got, RECORDS):
        check_common(flow, record)
        check_http(flow, record, DEFAULT_MAX_LENGTHS)
        assert flow["cflow.timedelta_tree"]["cflow.abstimestart"] == tshark_time(record.start_ms)
    # RFC 5610 type records, decoded by tshark's own knowledge of elements 339-346
    types = [f for f in flows(packets) if "cflow.information_element_name" in f]
    assert {t["cflow.information_element_name"] for t in types} >= {"httpRequestQuery",
                                                                     "uploadedBytes"}
    # our enterprise fields are there, as raw bytes (tshark knows no names for PEN 57011)
    assert "70:61:67:65:3d:32" in json.dumps(got[0])  # "page=2" of httpRequestQuery
    statistics = [f for f in flows(packets) if "cflow.octetsexp" in f]
    assert statistics and "cflow.notsent_flows" in flows(packets)[-1]


def test_tshark_sees_sequence_numbers_without_gaps(tmp_path: Path) -> None:
    _, datagrams = run_session([sample_record(i) for i in range(40)])
    capture = tmp_path / "many.pcap"
    write_pcap(capture, [d.payload for d in datagrams])
    args = ("-r", str(capture), "-d", "udp.port==4739,cflow")
    assert tshark_problems(*args) == ""  # tshark flags sequence gaps as expert infos
    assert len(http_flows(tshark_json(*args))) == 40


def test_tshark_decodes_netflow9_datagrams(tmp_path: Path) -> None:
    later = [msgspec.structs.replace(r, start_ms=NOW_MS + 10, end_ms=NOW_MS + 50) for r in RECORDS]
    _, datagrams = run_session(later, ExportFormat.NETFLOW9)
    capture = tmp_path / "v9.pcap"
    write_pcap(capture, [d.payload for d in datagrams])
    args = ("-r", str(capture), "-d", "udp.port==4739,cflow")
    assert tshark_problems(*args) == ""
    got = http_flows(tshark_json(*args))
    assert len(got) == len(RECORDS)
    widths = {name: width - 1 for name, width in DEFAULT_V9_WIDTHS.items()}
    for flow, record in paired(got, later):
        check_common(flow, record)
        check_http(flow, record, widths)
        # FIRST/LAST_SWITCHED, relative to sysUpTime, are what v9-only collectors read
        assert flow["cflow.timedelta"][0] == "0.040000000"


def test_tshark_opens_our_ipfix_file(tmp_path: Path) -> None:
    path = tmp_path / "flows.ipfix"
    many = [msgspec.structs.replace(r, flow_id=n * 100 + r.flow_id) for n in range(10)
            for r in RECORDS]
    _, datagrams = run_session(many, max_message_size=FILE_MAX_MESSAGE_SIZE)
    with IpfixFileWriter(path) as writer:
        for datagram in datagrams:
            writer.write(datagram.payload)
    assert tshark_problems("-r", str(path)) == ""
    got = http_flows(tshark_json("-r", str(path)))
    assert len(got) == len(many)
    for flow, record in paired(got, many):
        check_common(flow, record)
        check_http(flow, record, DEFAULT_MAX_LENGTHS)


def test_wrong_set_length_is_caught_by_our_decoder_even_if_tshark_is_silent() -> None:
    """The set arithmetic check that tshark does not make, on a deliberately broken message."""
    from ipfix.decoder import Decoder
    from ipfix.errors import DecodeError

    _, datagrams = run_session([sample_record()])
    payload = bytearray(datagrams[-1].payload)
    payload[18:20] = (int.from_bytes(payload[18:20], "big") + 4).to_bytes(2, "big")
    decoder = Decoder()
    for datagram in datagrams[:-1]:
        decoder.decode(datagram.payload)
    with pytest.raises(DecodeError):
        decoder.decode(bytes(payload))




@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_tshark_reads_the_sampling_options(tmp_path: Path, fmt: ExportFormat) -> None:
    _, datagrams = run_session(RECORDS, fmt, sampling_interval=10)
    capture = tmp_path / "sampled.pcap"
    write_pcap(capture, [d.payload for d in datagrams])
    args = ("-r", str(capture), "-d", "udp.port==4739,cflow")
    assert tshark_problems(*args) == ""
    found = [f for f in flows(tshark_json(*args)) if "cflow.sampling_interval" in f]
    assert found and found[0]["cflow.sampling_interval"] == "10"
    assert len(http_flows(tshark_json(*args))) == len(RECORDS)
