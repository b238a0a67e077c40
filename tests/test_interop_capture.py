"""A capture with nothing bound to the collector ports, the way Wireshark users debug: a
real mitmdump exports IPFIX and NetFlow v9, and every record is on the wire. Read by
tshark (expert info: not one warning) and by libfixbuf's ipfixDump, neither ours."""

from __future__ import annotations

import http.client
import itertools
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from ipfix.decoder import Decoder
from tests.e2e import Capture, Mitmdump, Upstream
from tests.libfixbuf import ipfix_dump
from tests.tshark import flows, http_flows, tshark_json, tshark_problems

pytestmark = [pytest.mark.slow, pytest.mark.interop,
              pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")]

EXCHANGES = 40


def closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def exchange(proxy: Mitmdump, index: int) -> int:
    """One request on a fresh connection (a client of its own: its own source port)."""
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    path = "/missing" if index % 5 == 0 else f"/items/{index}"
    connection.request("GET", f"{path}?page={index}", headers={"Host": "capture.test",
                                                               "User-Agent": f"agent/{index}"})
    status = connection.getresponse().status
    connection.close()
    return status


def test_every_record_is_on_the_wire_with_nothing_listening(tmp_path: Path) -> None:
    ipfix_port, v9_port = closed_udp_port(), closed_udp_port()
    capture_file = tmp_path / "capture.pcap"
    with (Capture(capture_file, f"udp port {ipfix_port} or udp port {v9_port}") as capture,
          Upstream() as upstream,
          Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}",
                   "--set", "keep_host_header=true",
                   "--set", f"flowexport_collectors=ipfix://127.0.0.1:{ipfix_port}",
                   "--set", f"flowexport_collectors=netflow9://127.0.0.1:{v9_port}") as proxy):
        statuses = {index: exchange(proxy, index) for index in range(EXCHANGES)}
        assert proxy.stop() == 0  # exports what is left, then the capture stops
        log = proxy.log()
    assert statuses[0] == 404 and statuses[1] == 200
    # both streams drew ICMP errors; they are counted apart, nothing counted as lost
    assert "collector refusals (ICMP)" in log and " 0 send errors" in log, log
    assert f"{EXCHANGES} records, {2 * EXCHANGES} sent" in log, log

    decode = ("-d", f"udp.port=={ipfix_port},cflow", "-d", f"udp.port=={v9_port},cflow")
    # Wireshark's expert info: no warning or error (sequence gaps, malformed sets)
    assert tshark_problems("-r", str(capture_file), *decode) == ""
    packets = tshark_json("-r", str(capture_file), *decode)
    by_port: dict[int, list[dict[str, Any]]] = {ipfix_port: [], v9_port: []}
    for packet in packets:
        by_port[int(packet["_source"]["layers"]["udp"]["udp.dstport"])].append(packet)
    for port in (ipfix_port, v9_port):
        got = http_flows(by_port[port])
        assert len(got) == EXCHANGES, port  # every record of every exchange
        targets = sorted(f["cflow.http_request_target"] for f in got)
        assert targets == sorted("/missing" if i % 5 == 0 else f"/items/{i}"
                                 for i in range(EXCHANGES))
        for flow in got:
            assert flow["cflow.http_request_host"] == "capture.test"
            status = 404 if flow["cflow.http_request_target"] == "/missing" else 200
            assert flow["cflow.http_statuscode"] == str(status)
    # the sequence numbers on the wire have no gap (tshark would say so too)
    decoder = Decoder(strict_text=True)
    for port in (ipfix_port, v9_port):
        messages = [decoder.decode(p, port) for p in capture.payloads(port)]
        for before, after in itertools.pairwise(messages):
            step = before.data_record_count if before.version == 10 else 1
            assert after.sequence_number == before.sequence_number + step
    # RFC 5610 type records in the stream, read by tshark itself
    names = {f["cflow.information_element_name"] for f in flows(by_port[ipfix_port])
             if "cflow.information_element_name" in f}
    assert {"httpRequestQuery", "uploadedBytes", "tlsServerName"} <= names

    if shutil.which("ipfixDump") is None:
        return
    stream = tmp_path / "captured.ipfix"
    stream.write_bytes(b"".join(capture.payloads(ipfix_port)))
    dumped, output, complaints = ipfix_dump(stream)
    assert complaints == ""  # in sequence, nothing malformed
    assert "_alienInformationElement" not in output
    records = [r for r in dumped if 256 <= r.template_id <= 259]
    assert len(records) == EXCHANGES
    for record in records:
        assert record.keys["httpRequestQuery"] == (57011, 3)
        index = int(record.fields["httpRequestQuery"].removeprefix("page="))
        assert record.fields["httpUserAgent"] == f"agent/{index}"
        assert record.fields["httpStatusCode"] == str(statuses[index])
        assert int(record.fields["downloadedBytes"]) == (8 if statuses[index] == 404 else 5)
