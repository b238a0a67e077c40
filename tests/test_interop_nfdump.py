"""nfdump's nfcapd, which nobody here wrote, accepts our IPFIX and v9 streams; nfdump shows
the L3/L4 fields, bytes and times for IPv4 and IPv6 records."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ipfix.message import Datagram
from ipfix.session import ExportFormat
from tests.conftest import run_session, sample_record, timed_stream
from tests.e2e import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.interop,
              pytest.mark.skipif(shutil.which("nfcapd") is None, reason="nfdump not installed")]

RECORDS = [
    sample_record(0),
    sample_record(1, client_address="2001:db8::10", proxy_address="2001:db8::1",
                  upstream_address="2001:db8::7"),
    sample_record(2, upstream_address="2001:db8::7", client_port=45678, octets=98765),
]


def udp_bound(port: int) -> bool:
    """Whether some process has bound this UDP port (nfcapd says nothing when it is ready)."""
    table = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(line.split()[1].endswith(f":{port:04X}") for line in table)


def nfdump_time(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}"


def through_nfcapd(tmp_path: Path, port: int, datagrams: list[Datagram]
                   ) -> tuple[str, dict[int, dict[str, Any]]]:
    """nfcapd's summary of `datagrams`, and nfdump's rows of what it stored, by client port."""
    spool = tmp_path / "spool"
    spool.mkdir()
    log = tmp_path / "nfcapd.log"
    with log.open("w") as out:
        capture = subprocess.Popen(["nfcapd", "-w", str(spool), "-p", str(port),
                                    "-b", "127.0.0.1", "-t", "3600"], stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: udp_bound(port), 15), log.read_text()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for datagram in datagrams:
                sock.sendto(datagram.payload, ("127.0.0.1", port))
                time.sleep(0.0005)  # loopback drops a burst of hundreds otherwise
        time.sleep(0.5)
    finally:
        capture.send_signal(signal.SIGTERM)  # writes the spool file
        capture.wait(timeout=20)
    result = subprocess.run(["nfdump", "-R", str(spool), "-o", "json"], capture_output=True,
                            text=True, timeout=60, check=True, env=dict(os.environ, TZ="UTC"))
    return log.read_text(), {row["src_port"]: row for row in json.loads(result.stdout)}


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_nfcapd_stores_and_nfdump_shows_our_flows(tmp_path: Path, udp_port: int,
                                                  fmt: ExportFormat) -> None:
    _, datagrams = run_session(RECORDS, fmt)
    summary, flows = through_nfcapd(tmp_path, udp_port, datagrams)
    assert f"Flows: {len(RECORDS)}" in summary, summary
    assert "Sequence Errors: 0" in summary and "Bad Packets: 0" in summary, summary
    assert set(flows) == {r.client_port for r in RECORDS}
    for record in RECORDS:
        row = flows[record.client_port]
        v6 = ":" in record.client_address
        assert row["src6_addr" if v6 else "src4_addr"] == record.client_address
        assert row["dst6_addr" if v6 else "dst4_addr"] == record.proxy_address
        assert row["dst_port"] == record.proxy_port
        assert row["proto"] == record.protocol
        assert row["first"] == nfdump_time(record.start_ms)
        assert row["last"] == nfdump_time(record.end_ms)
        # nfdump reads v9 field 231 (initiatorOctets) as the ASA/NSEL forward byte count
        expected = record.octets if fmt is ExportFormat.IPFIX else record.initiator_octets
        assert row["in_bytes"] == expected


def test_nfdump_rebuilds_netflow9_times_to_the_millisecond(tmp_path: Path, udp_port: int) -> None:
    """nfdump reads v9 times as unix_secs * 1000 - sysUpTime + FIRST_SWITCHED: over many
    records, exported at every sub-second offset, they must equal ours to the millisecond."""
    records, datagrams = timed_stream(ExportFormat.NETFLOW9, 300, seed=5, first_port=20000)
    summary, flows = through_nfcapd(tmp_path, udp_port, datagrams)
    assert f"Flows: {len(records)}" in summary, summary
    wrong = [(r.flow_id, flows[r.client_port]["first"], nfdump_time(r.start_ms),
              flows[r.client_port]["last"], nfdump_time(r.end_ms)) for r in records
             if (flows[r.client_port]["first"], flows[r.client_port]["last"])
             != (nfdump_time(r.start_ms), nfdump_time(r.end_ms))]
    assert not wrong, wrong[:5]
