"""HTTP/3 through a real mitmdump (`reverse:http3://`) with a real HTTP/3 client and
server (aioquic, which ships with mitmproxy): each exchange the same HTTP record as over
TCP, over UDP (protocol 17), field by field; read the same by tshark and by nfacctd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipfix.session import ExportFormat
from ipfix.termination import FlowEndReason, Termination
from tests.conftest import free_udp_port
from tests.servers import Http3Server, http3_get, self_signed
from tests.three_decoders import ObservedProxy

pytestmark = pytest.mark.slow


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.server = Http3Server(*self_signed(tmp_path, "h3.test"))
        self.port = free_udp_port()
        self.proxy = ObservedProxy(
            tmp_path, "--mode", f"reverse:http3://127.0.0.1:{self.server.port}@127.0.0.1:{self.port}",
            "--set", "ssl_insecure=true", "--set", "keep_host_header=true")
        self.proxy.wait_listening(self.port)

    def close(self) -> None:
        self.proxy.close()
        self.server.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    running = Setup(tmp_path_factory.mktemp("http3"))
    yield running
    running.close()


def http_records(setup: Setup) -> list[dict[str, Any]]:
    return [r for r in setup.proxy.records() if "httpRequestMethod" in r]


def test_an_http3_exchange_is_one_http_record_over_udp(setup: Setup) -> None:
    response = http3_get(setup.port, "h3.test", "/items?page=3", user_agent="h3-client/2.0")
    headers = dict(response["headers"])
    assert headers[b":status"] == b"200"
    assert response["body"] == b"hello over HTTP/3"
    record = setup.proxy.wait_for(lambda r: r.get("httpRequestTarget") == "/items")[0]
    assert record["protocolIdentifier"] == 17
    assert record["httpRequestMethod"] == "GET"
    assert record["httpRequestHost"] == "h3.test"
    assert record["httpRequestTarget"] == "/items"
    assert record["httpRequestQuery"] == "page=3"
    assert record["httpReasonPhrase"] == ""  # HTTP/3 has none
    assert record["httpStatusCode"] == 200
    assert record["httpUserAgent"] == "h3-client/2.0"
    assert record["httpResponseContentType"] == "text/plain"
    assert record["httpMessageVersion"] == "HTTP/3"
    assert record["tlsServerName"] == "h3.test"
    assert record["tlsProtocolVersion"] == "QUICv1"
    assert record["sourceIPv4Address"] == "127.0.0.1"
    assert record["destinationTransportPort"] == setup.port
    assert record["postNATDestinationIPv4Address"] == "127.0.0.1"
    assert record["postNAPTDestinationTransportPort"] == setup.server.port
    assert record["downloadedBytes"] == len(b"hello over HTTP/3")
    assert record["flowEndReason"] == FlowEndReason.END_OF_FLOW
    assert record["httpTerminationStateCode"] == Termination.COMPLETED
    assert 0 <= record["flowEndMilliseconds"] - record["flowStartMilliseconds"] < 10_000


def test_several_exchanges_each_get_their_record(setup: Setup) -> None:
    for n in range(3):
        assert http3_get(setup.port, "h3.test", f"/n/{n}")["body"] == b"hello over HTTP/3"
    records = setup.proxy.wait_for(lambda r: str(r.get("httpRequestTarget")).startswith("/n/"),
                                   count=3)
    assert sorted(r["httpRequestTarget"] for r in records) == ["/n/0", "/n/1", "/n/2"]
    assert len({r["flowId"] for r in records}) == 3


def test_every_http3_record_decodes_alike_elsewhere(setup: Setup) -> None:
    """Last in the module: stops mitmdump, then tshark and nfacctd read what it sent."""
    setup.proxy.stop()
    ipfix = http_records(setup)
    assert len(ipfix) == 4
    netflow9 = [r for r in setup.proxy.records(ExportFormat.NETFLOW9) if "httpRequestMethod" in r]
    assert sorted((r["flowId"], r["httpRequestTarget"]) for r in ipfix) == sorted(
        (r["flowId"], r["httpRequestTarget"]) for r in netflow9)
    chosen = lambda r: "httpRequestMethod" in r  # noqa: E731
    assert setup.proxy.check_with_tshark(ExportFormat.IPFIX, chosen) == len(ipfix)
    assert setup.proxy.check_with_tshark(ExportFormat.NETFLOW9, chosen) == len(ipfix)
    assert setup.proxy.check_with_pmacct(free_udp_port(), chosen) == len(ipfix)
