"""TLS below HTTP through a real mitmdump in forward mode: a client that refuses the
proxy's certificate, an upstream whose certificate the proxy refuses, connections passed
through untouched (`ignore_hosts`), and hostile ClientHellos. Each becomes one connection
record with what the handshake offered, and no HTTP record; every record read the same
by tshark and by nfacctd with the primitives we ship."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipfix.connection_record import FlowKind
from ipfix.session import ExportFormat
from ipfix.termination import FlowEndReason, Termination
from tests.conftest import free_udp_port
from tests.servers import TlsServer, self_signed
from tests.three_decoders import ObservedProxy
from tests.tls_hello import client_hello

pytestmark = pytest.mark.slow

TLS13, TLS12, GREASE = 0x0304, 0x0303, 0x0A0A
# text that reaches both collectors: the NetFlow v9 widths (less their NUL) are smaller
SERVER_NAME_LIMIT, ALPN_OFFERS_LIMIT = 63, 47


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        # trusted by the proxy (as its own trust anchor), untrusted, and passed through
        self.good = TlsServer(*self_signed(tmp_path, "good.test"))
        self.bad = TlsServer(*self_signed(tmp_path, "bad.test"))
        self.passed = TlsServer(*self_signed(tmp_path, "pass.test"))
        self.proxy = ObservedProxy(
            tmp_path, "--set", f"ssl_verify_upstream_trusted_ca={tmp_path / 'good.test.crt'}",
            "--set", r"ignore_hosts=^pass\.test:",
            # by address too: mitmproxy takes a server name over 255 bytes for none
            "--set", rf"ignore_hosts=^127\.0\.0\.1:{self.passed.port}$")
        self.port = int(self.proxy.proxy.url.rsplit(":", 1)[1])

    def close(self) -> None:
        self.proxy.close()
        for server in (self.good, self.bad, self.passed):
            server.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    running = Setup(tmp_path_factory.mktemp("tls"))
    yield running
    running.close()


def tunnel(proxy_port: int, target_port: int) -> socket.socket:
    """A connection through the proxy's CONNECT to 127.0.0.1:`target_port`."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    sock.sendall(f"CONNECT 127.0.0.1:{target_port} HTTP/1.1\r\n"
                 f"Host: 127.0.0.1:{target_port}\r\n\r\n".encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(4096)
        assert chunk, reply
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply
    return sock


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connection_records(setup: Setup, port: int) -> list[dict[str, Any]]:
    return [r for r in setup.proxy.records() if r.get("sourceTransportPort") == port]


def test_a_client_that_refuses_the_proxys_certificate(setup: Setup) -> None:
    """A pinning app, or a client without mitmproxy's CA: it never sends a request."""
    sock = tunnel(setup.port, setup.good.port)
    local = sock.getsockname()[1]
    strict = ssl.create_default_context()  # trusts the system's CAs only
    strict.set_alpn_protocols(["h2", "http/1.1"])
    with pytest.raises(ssl.SSLCertVerificationError):
        strict.wrap_socket(sock, server_hostname="good.test")
    sock.close()
    record = setup.proxy.wait_for(lambda r: r.get("sourceTransportPort") == local
                                  and "proxyFlowKind" in r)[0]
    assert record["proxyFlowKind"] == FlowKind.TLS_FAILURE
    assert record["flowTerminationStateCode"] == Termination.CLIENT_REJECTED_CERTIFICATE
    assert record["flowEndReason"] == FlowEndReason.FORCED_END
    assert record["tlsServerName"] == "good.test"
    assert record["tlsOfferedApplicationProtocols"] == "h2,http/1.1"
    assert record["tlsOfferedVersion"] == "TLSv1.3"
    assert "does not trust the proxy's certificate" in record["proxyErrorMessage"]
    assert record["sourceIPv4Address"] == "127.0.0.1"
    assert record["destinationTransportPort"] == setup.port
    assert record["octetDeltaCount"] == 0
    assert not [r for r in connection_records(setup, local) if "httpRequestMethod" in r]


def test_an_upstream_certificate_the_proxy_refuses(setup: Setup) -> None:
    sock = tunnel(setup.port, setup.bad.port)
    local = sock.getsockname()[1]
    lenient = unverified()
    lenient.set_alpn_protocols(["http/1.1"])
    try:
        with lenient.wrap_socket(sock, server_hostname="bad.test") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: bad.test\r\n\r\n")
            tls.recv(4096)
    except (OSError, ssl.SSLError):
        pass  # mitmproxy may close the tunnel instead of answering
    records = setup.proxy.wait_for(lambda r: r.get("sourceTransportPort") == local
                                   and r.get("proxyFlowKind") == FlowKind.TLS_FAILURE)
    assert len(records) == 1
    record = records[0]
    assert record["flowTerminationStateCode"] == Termination.UPSTREAM_CERTIFICATE_INVALID
    assert record["proxyErrorMessage"].startswith("Certificate verify failed")
    assert record["tlsServerName"] == "bad.test"  # what the proxy asked the upstream for
    assert record["postNATDestinationIPv4Address"] == "127.0.0.1"
    assert record["postNAPTDestinationTransportPort"] == setup.bad.port
    assert setup.bad.handshakes == 0


def test_each_passthrough_connection_is_one_record_without_http(setup: Setup) -> None:
    locals_: list[int] = []
    for _ in range(3):
        sock = tunnel(setup.port, setup.passed.port)
        locals_.append(sock.getsockname()[1])
        context = unverified()
        context.set_alpn_protocols(["http/1.1"])
        with context.wrap_socket(sock, server_hostname="pass.test") as tls:
            certificate = tls.getpeercert(binary_form=True)
            assert certificate is not None and b"pass.test" in certificate  # not mitmproxy's
            tls.sendall(b"GET / HTTP/1.1\r\nHost: pass.test\r\n\r\n")
            assert tls.recv(4096).startswith(b"HTTP/1.1 200")
    records = setup.proxy.wait_for(lambda r: r.get("sourceTransportPort") in locals_,
                                   count=3)
    assert sorted(r["sourceTransportPort"] for r in records) == sorted(locals_)
    assert len({r["flowId"] for r in records}) == 3
    for record in records:
        assert record["proxyFlowKind"] == FlowKind.PASSTHROUGH
        assert record["flowTerminationStateCode"] == Termination.COMPLETED
        assert record["flowEndReason"] == FlowEndReason.END_OF_FLOW
        assert record["tlsServerName"] == "pass.test"
        assert record["tlsOfferedApplicationProtocols"] == "http/1.1"
        assert record["tlsOfferedVersion"] == "TLSv1.3"
        assert record["postNAPTDestinationTransportPort"] == setup.passed.port
        assert record["octetDeltaCount"] == 0  # mitmproxy relays these bytes unseen
        assert record["flowEndMilliseconds"] >= record["flowStartMilliseconds"]
    assert setup.passed.handshakes >= 3


@pytest.mark.parametrize("target", ["intercepted", "passed"])
def test_a_hostile_client_hello_gives_bounded_counted_fields(
        setup: Setup, target: str) -> None:
    """A 10,000-byte server name and 200 ALPN values: cut to what every collector takes,
    the list between items, and both cuts counted."""
    # the passed one still matches ignore_hosts
    name = b"pass.test." + b"x" * 9_990 if target == "passed" else b"h" * 10_000
    alpn = [f"proto-{i:03d}".encode() for i in range(200)]
    hello = client_hello(name, alpn, [GREASE, TLS12, TLS13])
    port = setup.passed.port if target == "passed" else setup.good.port
    sock = tunnel(setup.port, port)
    local = sock.getsockname()[1]
    sock.sendall(hello)
    with contextlib.suppress(OSError):
        sock.recv(4096)  # mitmproxy or the upstream gives up on this hello
    sock.close()
    record = setup.proxy.wait_for(lambda r: r.get("sourceTransportPort") == local
                                  and "proxyFlowKind" in r)[0]
    assert record["proxyFlowKind"] == (FlowKind.PASSTHROUGH if target == "passed"
                                       else FlowKind.TLS_FAILURE)
    assert record["tlsServerName"] == name[:SERVER_NAME_LIMIT].decode()
    offers = record["tlsOfferedApplicationProtocols"].split(",")
    assert offers == [p.decode() for p in alpn[:len(offers)]]  # whole values, in order
    assert len(record["tlsOfferedApplicationProtocols"]) <= ALPN_OFFERS_LIMIT
    assert len(offers) == (ALPN_OFFERS_LIMIT + 1) // len("proto-000,")
    assert record["tlsOfferedVersion"] == "TLSv1.3"  # GREASE is no version


def truncated_fields(setup: Setup) -> int:
    found = re.findall(r"(\d+) truncated fields", setup.proxy.proxy.log())
    return int(found[-1]) if found else 0


def test_every_connection_record_decodes_alike_elsewhere(setup: Setup) -> None:
    """Last in the module: stops mitmdump, then tshark and nfacctd read what it sent."""
    setup.proxy.stop()
    ipfix = [r for r in setup.proxy.records() if "proxyFlowKind" in r]
    netflow9 = [r for r in setup.proxy.records(ExportFormat.NETFLOW9) if "proxyFlowKind" in r]
    assert len(ipfix) == 7  # one refusal each side, three passed through, two hostile
    key = ("flowId", "proxyFlowKind", "flowTerminationStateCode", "flowEndReason",
           "tlsServerName", "tlsOfferedApplicationProtocols", "tlsOfferedVersion")
    assert sorted(tuple(r[k] for k in key) for r in ipfix) == sorted(
        tuple(r[k] for k in key) for r in netflow9)
    by_id = {r["flowId"]: r for r in ipfix}
    errors_cut = 0
    for record in netflow9:  # mitmproxy's sentences may be longer than the v9 width
        error = by_id[record["flowId"]]["proxyErrorMessage"]
        assert error.startswith(record["proxyErrorMessage"])
        errors_cut += error != record["proxyErrorMessage"]
    # both hostile hellos: server name and ALPN; and the sentences cut for v9
    assert truncated_fields(setup) == 4 + errors_cut
    chosen = lambda r: "proxyFlowKind" in r  # noqa: E731
    assert setup.proxy.check_with_tshark(ExportFormat.IPFIX, chosen) == len(ipfix)
    assert setup.proxy.check_with_tshark(ExportFormat.NETFLOW9, chosen) == len(ipfix)
    assert setup.proxy.check_with_pmacct(free_udp_port(), chosen) == len(ipfix)
