"""The bundled collector as a real process: UDP in, JSON lines out, losses reported."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipfix.filewriter import FILE_MAX_MESSAGE_SIZE, IpfixFileWriter
from ipfix.session import ExportFormat
from tests.conftest import decode_all, run_session, sample_record

pytestmark = pytest.mark.slow  # real processes: run by .ci/run, not by -m 'not slow'


def start_collector(*args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-m", "ipfix.collector", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    line = process.stderr.readline()  # "listening on ..." once the socket is bound
    assert "listening on" in line, line
    return process


def test_collector_prints_ipfix_and_v9_records_and_counts_loss(udp_port: int) -> None:
    process = start_collector("--listen", f"127.0.0.1:{udp_port}", "--count", "7")
    _, ipfix = run_session([sample_record(i, host="h\u00f6st.example") for i in range(5)],
                           max_message_size=600)
    _, v9 = run_session([sample_record(10 + i) for i in range(4)], ExportFormat.NETFLOW9)
    lost = ipfix[-2]  # a message of flow records, followed by one that reveals the gap
    assert lost.flow_records > 0
    # IPFIX sequence numbers count every data record: flows and options records alike
    lost_records = decode_all(ipfix)[-2].data_record_count
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ipfix_sock, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as v9_sock:
        for datagram in ipfix:
            if datagram is not lost:
                ipfix_sock.sendto(datagram.payload, ("127.0.0.1", udp_port))
        for datagram in v9:
            v9_sock.sendto(datagram.payload, ("127.0.0.1", udp_port))
        time.sleep(0.5)
        process.send_signal(2)  # SIGINT: print the summary and exit
        out, err = process.communicate(timeout=10)
    lines = [json.loads(line) for line in out.splitlines()]
    hosts = sorted(line["httpRequestHost"] for line in lines)
    assert hosts == ["h\u00f6st.example"] * (5 - lost.flow_records) + ["shop.example"] * 4
    first = next(line for line in lines if line["_version"] == 10)
    assert first["_template"] == 256 and first["_domain"] == 1
    assert first["httpRequestQuery"] == "page=2&sort=asc"
    assert first["sourceIPv4Address"] == "192.0.2.10"
    v9_line = next(line for line in lines if line["_version"] == 9)
    assert v9_line["uploadedBytes"] == 34 and v9_line["httpStatusCode"] == 200
    assert f"{lost_records} records lost" in err
    assert f"{lost_records} lost by sequence numbers" in err


def test_collector_reports_malformed_and_unknown_and_carries_on(udp_port: int) -> None:
    process = start_collector("--listen", f"127.0.0.1:{udp_port}", "--count", "1")
    _, stream = run_session([sample_record()])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x00\x0a\x00\x05garbage", ("127.0.0.1", udp_port))
        sock.sendto(stream[-1].payload, ("127.0.0.1", udp_port))  # data before its templates
        for datagram in stream:
            sock.sendto(datagram.payload, ("127.0.0.1", udp_port))
        out, err = process.communicate(timeout=10)
    assert len(out.splitlines()) == 1
    assert "malformed message" in err
    assert "no template" in err


def test_file_writer_output_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "flows.ipfix"
    _, stream = run_session([sample_record(i) for i in range(30)],
                            max_message_size=FILE_MAX_MESSAGE_SIZE)
    with IpfixFileWriter(path) as writer:
        for datagram in stream:
            writer.write(datagram.payload)
    result = subprocess.run([sys.executable, "-m", "ipfix.collector", "--read", str(path),
                             "--format", "pretty"], capture_output=True, text=True, timeout=30,
                            check=True)
    assert result.stdout.count("flow record from") == 30
    assert "httpRequestTarget" in result.stdout and "/items/29" in result.stdout
    assert "0 lost" in result.stderr


def test_collector_listens_on_loopback_by_default() -> None:
    from ipfix.collector import DEFAULT_LISTEN, build_parser, parse_endpoint

    assert build_parser().parse_args([]).listen is None  # falls back to DEFAULT_LISTEN
    assert parse_endpoint(DEFAULT_LISTEN) == ("127.0.0.1", 4739)
    assert parse_endpoint("[::1]:9995") == ("::1", 9995)
