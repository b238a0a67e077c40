"""TCP and UDP streams through a real mitmdump (reverse:tcp://, reverse:udp://) become
connection records: bytes and messages each way exact, interim records of a long stream
adding up to its total, connect failures and idle ends told apart; every record read the
same by tshark and by nfacctd with the primitives we ship."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipfix.connection_record import FlowKind
from ipfix.session import ExportFormat
from ipfix.termination import FlowEndReason, Termination
from tests.conftest import free_udp_port
from tests.e2e import free_port, wait_until
from tests.servers import TcpEcho, UdpEcho
from tests.three_decoders import ObservedProxy

pytestmark = pytest.mark.slow


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.tcp_echo = TcpEcho()
        self.udp_echo = UdpEcho()
        self.tcp_port = free_port()
        self.long_port = free_port()
        self.udp_port = free_udp_port()
        self.dead_port = free_port()
        self.refused_port = free_port()  # nothing listens behind this one
        self.proxy = ObservedProxy(
            tmp_path,
            "--mode", f"reverse:tcp://127.0.0.1:{self.tcp_echo.port}@127.0.0.1:{self.tcp_port}",
            "--mode", f"reverse:tcp://127.0.0.1:{self.tcp_echo.port}@127.0.0.1:{self.long_port}",
            "--mode", f"reverse:udp://127.0.0.1:{self.udp_echo.port}@127.0.0.1:{self.udp_port}",
            "--mode", f"reverse:tcp://127.0.0.1:{self.refused_port}@127.0.0.1:{self.dead_port}",
            "--set", "flowexport_active_timeout_s=1")
        self.proxy.wait_listening(self.tcp_port, self.long_port, self.udp_port, self.dead_port)
        self.started = time.monotonic()

    def close(self) -> None:
        self.proxy.close()
        self.tcp_echo.close()
        self.udp_echo.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    running = Setup(tmp_path_factory.mktemp("streams"))
    yield running
    running.close()


def connection_records(setup: Setup, port: int) -> list[dict[str, Any]]:
    return [r for r in setup.proxy.records() if r.get("sourceTransportPort") == port
            and "proxyFlowKind" in r]


def echo_exchange(port: int, payloads: list[bytes]) -> tuple[int, int]:
    """Sends each payload and reads its echo; (local port, bytes each way)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        local = sock.getsockname()[1]
        for payload in payloads:
            sock.sendall(payload)
            got = 0
            while got < len(payload):
                got += len(sock.recv(1 << 16))
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(10) == b""
    return local, sum(map(len, payloads))


def test_a_tcp_stream_is_one_record_with_exact_bytes(setup: Setup) -> None:
    payloads = [os.urandom(n) for n in (1, 1000, 65536, 300_001)]
    local, total = echo_exchange(setup.tcp_port, payloads)
    records = setup.proxy.wait_for(lambda r: r.get("sourceTransportPort") == local)
    assert len(records) == 1
    record = records[0]
    assert record["initiatorOctets"] == record["responderOctets"] == total
    assert record["octetDeltaCount"] == 2 * total
    assert record["initiatorMessages"] >= len(payloads)  # reads, not sends: TCP has no edges
    assert record["responderMessages"] >= 1
    assert record["proxyFlowKind"] == FlowKind.TCP_STREAM
    assert record["protocolIdentifier"] == 6
    assert record["flowTerminationStateCode"] == Termination.COMPLETED
    assert record["flowEndReason"] == FlowEndReason.END_OF_FLOW
    assert record["sourceIPv4Address"] == "127.0.0.1"
    assert record["destinationTransportPort"] == setup.tcp_port
    assert record["postNATDestinationIPv4Address"] == "127.0.0.1"
    assert record["postNAPTDestinationTransportPort"] == setup.tcp_echo.port
    assert 0 < record["flowEndMilliseconds"] - record["flowStartMilliseconds"] < 10_000
    assert record["proxyErrorMessage"] == ""


def test_interim_records_of_a_long_stream_add_up_to_its_total(setup: Setup) -> None:
    sent = 0
    with socket.create_connection(("127.0.0.1", setup.long_port), timeout=10) as sock:
        local = sock.getsockname()[1]
        deadline = time.monotonic() + 3.5  # three active timeouts of 1 s, and a half
        while time.monotonic() < deadline:
            chunk = os.urandom(200_000)
            sock.sendall(chunk)
            got = 0
            while got < len(chunk):
                got += len(sock.recv(1 << 16))
            sent += len(chunk)
            time.sleep(0.05)
    records = setup.proxy.wait_for(
        lambda r: r.get("sourceTransportPort") == local
        and r["flowEndReason"] == FlowEndReason.END_OF_FLOW)
    records = connection_records(setup, local)
    interim = [r for r in records if r["flowEndReason"] == FlowEndReason.ACTIVE_TIMEOUT]
    final = [r for r in records if r["flowEndReason"] == FlowEndReason.END_OF_FLOW]
    assert len(final) == 1 and len(interim) >= 2
    assert len({r["flowId"] for r in records}) == 1
    assert sum(r["initiatorOctets"] for r in records) == sent
    assert sum(r["responderOctets"] for r in records) == sent
    assert all(r["initiatorOctets"] > 0 for r in interim)  # each its own interval
    ends = [r["flowEndMilliseconds"] for r in records]
    assert ends == sorted(ends)


def test_a_udp_stream_counts_datagrams_and_ends_when_idle(setup: Setup) -> None:
    """mitmproxy closes a UDP stream 20 s after its last datagram, without saying why: the
    record says idle timeout (RFC 5102's flowEndReason 1 and our code 12), and ends at the
    last datagram."""
    sizes = [1, 100, 1200, 33, 8000]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for size in sizes:
            payload = os.urandom(size)
            sock.sendto(payload, ("127.0.0.1", setup.udp_port))
            assert sock.recvfrom(1 << 16)[0] == payload
        local = sock.getsockname()[1]
        last_sent = time.time()
        records = setup.proxy.wait_for(
            lambda r: r.get("sourceTransportPort") == local
            and r["flowEndReason"] == FlowEndReason.IDLE_TIMEOUT, timeout=30)
    records = connection_records(setup, local)
    final = records[-1]
    assert sum(r["initiatorMessages"] for r in records) == len(sizes)
    assert sum(r["responderMessages"] for r in records) == len(sizes)
    assert sum(r["initiatorOctets"] for r in records) == sum(sizes)
    assert sum(r["responderOctets"] for r in records) == sum(sizes)
    assert final["protocolIdentifier"] == 17
    assert final["proxyFlowKind"] == FlowKind.UDP_STREAM
    assert final["flowTerminationStateCode"] == Termination.IDLE_TIMEOUT
    assert final["flowEndReason"] == FlowEndReason.IDLE_TIMEOUT
    assert abs(final["flowEndMilliseconds"] - last_sent * 1000) < 1000


def test_a_refused_upstream_is_a_connect_failure(setup: Setup) -> None:
    with socket.create_connection(("127.0.0.1", setup.dead_port), timeout=10) as sock:
        local = sock.getsockname()[1]
        assert sock.recv(10) == b""  # mitmproxy closes the client
    record = setup.proxy.wait_for(lambda r: r.get("sourceTransportPort") == local)[0]
    assert record["proxyFlowKind"] == FlowKind.TCP_STREAM
    assert record["flowTerminationStateCode"] == Termination.UPSTREAM_CONNECT_FAILED
    assert record["flowEndReason"] == FlowEndReason.FORCED_END
    assert str(setup.refused_port) in record["proxyErrorMessage"]
    assert record["postNATDestinationIPv4Address"] == "0.0.0.0"
    assert record["octetDeltaCount"] == 0


def test_no_http_record_and_every_record_decodes_alike_elsewhere(
        setup: Setup, tmp_path: Path) -> None:
    """Last in the module: stops mitmdump, then tshark and nfacctd read what it sent."""
    assert wait_until(lambda: len([r for r in setup.proxy.records()
                                   if "proxyFlowKind" in r]) >= 4)
    setup.proxy.stop()
    ipfix = setup.proxy.records()
    netflow9 = setup.proxy.records(ExportFormat.NETFLOW9)
    assert not [r for r in ipfix if "httpRequestMethod" in r]
    streams = [r for r in ipfix if "proxyFlowKind" in r]
    # the same records in NetFlow v9, whose strings are cut at their widths
    key = ("flowEndMilliseconds", "initiatorOctets", "responderOctets", "initiatorMessages",
           "responderMessages", "flowTerminationStateCode", "flowEndReason")
    by_id = {(r["flowId"], r["flowEndMilliseconds"]): r for r in streams}
    v9_streams = [r for r in netflow9 if "proxyFlowKind" in r]
    assert len(v9_streams) == len(streams)
    for record in v9_streams:
        same = by_id[(record["flowId"], record["flowEndMilliseconds"])]
        assert [record[k] for k in key] == [same[k] for k in key]
        assert same["proxyErrorMessage"].startswith(record["proxyErrorMessage"])
    chosen = lambda r: "proxyFlowKind" in r  # noqa: E731
    assert setup.proxy.check_with_tshark(ExportFormat.IPFIX, chosen) == len(streams)
    assert setup.proxy.check_with_tshark(ExportFormat.NETFLOW9, chosen) == len(streams)
    assert setup.proxy.check_with_pmacct(free_udp_port(), chosen) == len(streams)
