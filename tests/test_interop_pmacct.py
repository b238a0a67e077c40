"""pmacct's nfacctd, with the primitives files we ship, decodes our IPFIX and v9 records."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from ipfix.ie import snake_case
from ipfix.session import ExportFormat
from tests.conftest import run_session, sample_record, timed_stream
from tests.pmacct import PRIMITIVES, primitive_names, shipped_config, start_nfacctd

pytestmark = [pytest.mark.slow, pytest.mark.interop,
              pytest.mark.skipif(shutil.which("nfacctd") is None, reason="pmacct not installed")]

RECORDS = [
    sample_record(0),
    sample_record(1, host="b\u00fccher.example", target="/search", query="q=%C3%BC&page=1",
                  status_code=404, uploaded_bytes=0, downloaded_bytes=512, method="HEAD"),
    sample_record(2, client_address="2001:db8::10", proxy_address="2001:db8::1",
                  upstream_address="2001:db8::7", query="", status_code=503),
]


def run_nfacctd(tmp_path: Path, port: int, fmt: ExportFormat) -> list[dict[str, object]]:
    output = tmp_path / "flows.json"
    names = primitive_names(PRIMITIVES[fmt])
    config = tmp_path / "nfacctd.conf"
    config.write_text("\n".join([
        "daemonize: false",
        "nfacctd_ip: 127.0.0.1",
        f"nfacctd_port: {port}",
        f"aggregate_primitives: {PRIMITIVES[fmt]}",
        "plugins: print",
        "aggregate: src_host, dst_host, src_port, dst_port, proto, " + ", ".join(names),
        "print_output: json",
        f"print_output_file: {output}",
        "print_refresh_time: 1",
        "",
    ]))
    log = tmp_path / "nfacctd.log"
    process = start_nfacctd(config, log)
    try:
        _, datagrams = run_session(RECORDS, fmt)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for datagram in datagrams:
                sock.sendto(datagram.payload, ("127.0.0.1", port))
        time.sleep(2.5)  # one print refresh
    finally:
        process.send_signal(signal.SIGINT)  # flushes the cache to the file
        process.wait(timeout=15)
    text = output.read_text() if output.exists() else ""
    assert text, log.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_nfacctd_decodes_standard_and_enterprise_fields(tmp_path: Path, udp_port: int,
                                                        fmt: ExportFormat) -> None:
    rows = run_nfacctd(tmp_path, udp_port, fmt)
    by_port = {row["port_src"]: row for row in rows}
    assert set(by_port) == {r.client_port for r in RECORDS}
    for record in RECORDS:
        row = by_port[record.client_port]
        assert row["ip_src"] == record.client_address
        assert row["ip_dst"] == record.proxy_address
        assert row["port_dst"] == record.proxy_port
        assert row["bytes"] == record.octets
        assert row[snake_case("httpRequestHost")] == record.host
        assert row[snake_case("httpRequestTarget")] == record.target
        assert row[snake_case("httpRequestMethod")] == record.method
        assert row[snake_case("httpMessageVersion")] == record.version
        assert row[snake_case("httpReasonPhrase")] == record.reason
        assert row[snake_case("httpRequestQuery")] == record.query
        assert row[snake_case("httpUserAgent")] == record.user_agent
        assert row[snake_case("httpResponseContentType")] == record.response_content_type
        assert str(row[snake_case("httpStatusCode")]) == str(record.status_code)
        assert str(row[snake_case("uploadedBytes")]) == str(record.uploaded_bytes)
        assert str(row[snake_case("downloadedBytes")]) == str(record.downloaded_bytes)
        assert str(row[snake_case("flowId")]) == str(record.flow_id)
        assert str(row[snake_case("initiatorOctets")]) == str(record.initiator_octets)


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_nfacctd_behind_a_real_mitmdump(tmp_path: Path, udp_port: int, fmt: ExportFormat) -> None:
    """The main job with a collector teams run: mitmdump -> addon -> nfacctd -> JSON."""
    import shutil as shell

    from tests.e2e import Mitmdump, Upstream, curl

    if shell.which("curl") is None:
        pytest.skip("curl not installed")
    config, output = shipped_config(tmp_path, fmt, udp_port)
    log = tmp_path / "nfacctd.log"
    collector = start_nfacctd(config, log)
    try:
        scheme = "ipfix" if fmt is ExportFormat.IPFIX else "netflow9"
        with Upstream() as upstream, Mitmdump(
                tmp_path, "--mode", f"reverse:{upstream.url}", "--set", "keep_host_header=true",
                "--set", f"flowexport_collectors={scheme}://127.0.0.1:{udp_port}") as proxy:
            for path in ("/shop/cart?item=7", "/missing?q=x"):
                curl("-H", "Host: pmacct.test", f"{proxy.url}{path}")
        time.sleep(2.5)  # mitmdump flushed at exit; one print refresh
    finally:
        collector.send_signal(signal.SIGINT)
        collector.wait(timeout=15)
    rows = [json.loads(line) for line in output.read_text().splitlines() if line.strip()]
    by_target = {row[snake_case("httpRequestTarget")]: row for row in rows}
    assert set(by_target) == {"/shop/cart", "/missing"}, log.read_text()
    cart, missing = by_target["/shop/cart"], by_target["/missing"]
    assert cart[snake_case("httpRequestHost")] == "pmacct.test"
    assert cart[snake_case("httpRequestQuery")] == "item=7"
    assert str(cart[snake_case("httpStatusCode")]) == "200"
    assert str(missing[snake_case("httpStatusCode")]) == "404"
    assert str(cart[snake_case("downloadedBytes")]) == "5"  # "hello"
    assert cart["bytes"] > 0 and int(cart[snake_case("initiatorOctets")]) > 0


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_nfacctd_times_over_many_records(tmp_path: Path, udp_port: int, fmt: ExportFormat) -> None:
    """pmacct reads IPFIX times from flowStart/EndMilliseconds, to the millisecond. For v9 it
    computes unix_secs - (sysUpTime - FIRST_SWITCHED) / 1000 in whole seconds and unsigned:
    the flow's second rounded up (v9 headers round the export time up so that no flow ends
    after sysUpTime; with the export second rounded down this underflowed by 49 days)."""
    import math
    from datetime import UTC, datetime

    records, datagrams = timed_stream(fmt, 60, seed=11, first_port=30000)
    output = tmp_path / "flows.json"
    config = tmp_path / "nfacctd.conf"
    config.write_text("\n".join([
        "daemonize: false", "nfacctd_ip: 127.0.0.1", f"nfacctd_port: {udp_port}",
        "plugins: print",
        "aggregate: src_host, dst_host, src_port, dst_port, proto, timestamp_start, "
        "timestamp_end",
        "timestamps_utc: true", "print_output: json", f"print_output_file: {output}",
        "print_refresh_time: 1", ""]))
    log = tmp_path / "nfacctd.log"
    process = start_nfacctd(config, log)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for datagram in datagrams:
                sock.sendto(datagram.payload, ("127.0.0.1", udp_port))
                time.sleep(0.0005)
        time.sleep(2.5)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
    rows = {row["port_src"]: row for row in map(json.loads, output.read_text().splitlines())}

    def shown(ms: int) -> str:
        if fmt is ExportFormat.NETFLOW9:
            ms = math.ceil(ms / 1000) * 1000
        moment = datetime.fromtimestamp(ms // 1000, UTC)
        return f"{moment:%Y-%m-%d %H:%M:%S}.{ms % 1000 * 1000:06d}"

    assert len(rows) == len(records), log.read_text()
    for record in records:
        row = rows[record.client_port]
        assert (row["timestamp_start"], row["timestamp_end"]) == (
            shown(record.start_ms), shown(record.end_ms)), record.flow_id
