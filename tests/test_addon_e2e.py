"""A real mitmdump with the addon, a real upstream, real clients, the bundled collector."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import (
    ADDON,
    Collector,
    Mitmdump,
    Upstream,
    curl,
    wait_until,
    websocket_session,
)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture(scope="module")
def upstream6() -> Iterator[Upstream]:
    with Upstream("::1") as server:
        yield server


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


def one_per_flow(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Final records by target; fails on a duplicate (exactly one final record each)."""
    finals = [r for r in records if r["flowEndReason"] != 2]
    ids = [r["flowId"] for r in finals]
    assert len(ids) == len(set(ids)), "duplicate final records"
    return {r["httpRequestTarget"]: r for r in finals}


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(line for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")).split(b":")[1])
        while len(body) < length:
            body += sock.recv(65536)
        return data


def test_reverse_mode_http1_keepalive_records(tmp_path: Path, upstream: Upstream,
                                              collector: Collector) -> None:
    with Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}", "--set", "keep_host_header=true",
                  "--set", f"flowexport_collectors={collector.address}",
                  "--set", "flowexport_cookies=names") as proxy:
        connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        for index in range(3):
            connection.request("POST", f"/echo?n={index}&password=hunter2",
                               body=b"x" * (10 + index),
                               headers={"Host": "shop.example", "User-Agent": "e2e/1.0",
                                        "Content-Type": "text/plain", "Referer": "https://ref/",
                                        "X-Forwarded-For": "203.0.113.7",
                                        "Cookie": "sid=secret; theme=dark",
                                        "Authorization": "Bearer topsecret"})
            response = connection.getresponse()
            assert response.read() == b"x" * (10 + index)
        client_port = connection.sock.getsockname()[1]
        connection.close()
        records = collector.wait_for(3)
    assert len(records) == 3
    for index, record in enumerate(sorted(records, key=lambda r: r["httpRequestQuery"])):
        assert record["httpRequestMethod"] == "POST"
        assert record["httpRequestHost"] == "shop.example"
        assert record["httpRequestTarget"] == "/echo"
        assert record["httpRequestQuery"] == f"n={index}&password=REDACTED"
        assert record["httpMessageVersion"] == "HTTP/1.1"
        assert record["httpStatusCode"] == 200 and record["httpReasonPhrase"] == "OK"
        assert record["httpUserAgent"] == "e2e/1.0"
        assert record["httpContentType"] == "text/plain"
        assert record["httpReferrer"] == "https://ref/"
        assert record["httpXForwardedFor"] == "203.0.113.7"
        assert record["httpCookie"] == "sid; theme"  # names only: no values
        assert "topsecret" not in str(record)
        assert record["uploadedBytes"] == record["downloadedBytes"] == 10 + index
        assert record["sourceIPv4Address"] == "127.0.0.1"
        assert record["sourceTransportPort"] == client_port  # one keep-alive connection
        assert record["destinationTransportPort"] == proxy.port
        assert record["postNATDestinationIPv4Address"] == "127.0.0.1"
        assert record["postNAPTDestinationTransportPort"] == upstream.port
        assert record["protocolIdentifier"] == 6
        assert record["httpTerminationStateCode"] == 0 and record["flowEndReason"] == 3
        assert record["octetDeltaCount"] == record["initiatorOctets"] + record["responderOctets"]
        assert record["flowEndMilliseconds"] >= record["flowStartMilliseconds"] > 1.7e12
    assert len({r["flowId"] for r in records}) == 3


def test_request_size_counts_the_bytes_on_the_wire(tmp_path: Path, upstream: Upstream,
                                                   collector: Collector) -> None:
    request = (b"PUT /echo?a=1 HTTP/1.1\r\nHost: sizes.test\r\nX-Padding: " + b"p" * 300 +
               b"\r\nContent-Length: 5\r\n\r\nhello")
    with Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}", "--set", "keep_host_header=true",
                  "--set", f"flowexport_collectors={collector.address}") as proxy:
        reply = raw_exchange(proxy.port, request)
        (record,) = collector.wait_for(1)
    assert record["initiatorOctets"] == len(request)
    assert record["uploadedBytes"] == 5
    assert record["downloadedBytes"] == 5
    assert record["responderOctets"] <= len(reply) + 64  # mitmproxy may add/alter headers


def test_regular_proxy_mode_and_ipv6(tmp_path: Path, upstream: Upstream, upstream6: Upstream,
                                     collector: Collector) -> None:
    with Mitmdump(tmp_path, "--set", f"flowexport_collectors={collector.address}",
                  listen_host="::1") as proxy:
        assert curl("-x", proxy.url, f"{upstream.url}/v4?q=1").stdout == "hello"
        assert curl("-x", proxy.url, f"{upstream6.url}/v6").stdout == "hello"
        records = one_per_flow(collector.wait_for(2))
    v4, v6 = records["/v4"], records["/v6"]
    assert v4["_template"] == 259  # IPv6 client, IPv4 upstream
    assert v4["sourceIPv6Address"] == "::1" and v4["destinationIPv6Address"] == "::1"
    assert v4["postNATDestinationIPv4Address"] == "127.0.0.1"
    assert v4["httpRequestHost"] == f"127.0.0.1:{upstream.port}"
    assert v4["httpRequestQuery"] == "q=1"
    assert v6["_template"] == 257
    assert v6["postNATDestinationIPv6Address"] == "::1"
    assert v6["postNAPTDestinationTransportPort"] == upstream6.port


def test_http2_over_tls_reverse_mode(tmp_path: Path, upstream: Upstream,
                                     collector: Collector) -> None:
    with Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}", "--set", "keep_host_header=true",
                  "--set", f"flowexport_collectors={collector.address}") as proxy:
        for path in ("/h2/a", "/h2/b"):
            result = curl("-k", "--http2", "--resolve", f"shop.test:{proxy.port}:127.0.0.1",
                          f"https://shop.test:{proxy.port}{path}")
            assert result.stdout == "hello", result.stderr
        records = one_per_flow(collector.wait_for(2))
    record = records["/h2/a"]
    assert record["httpMessageVersion"] == "HTTP/2.0"
    assert record["httpRequestHost"] == f"shop.test:{proxy.port}"
    assert record["tlsServerName"] == "shop.test"
    assert record["tlsProtocolVersion"] == "TLSv1.3"
    assert record["httpStatusCode"] == 200


def test_websocket_interim_and_final_records(tmp_path: Path, upstream: Upstream,
                                             collector: Collector) -> None:
    with Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}",
                  "--set", f"flowexport_collectors={collector.address}",
                  "--set", "flowexport_active_timeout_s=1") as proxy:
        messages = [b"a" * 100, b"b" * 200, b"c" * 300]
        echoes = websocket_session("127.0.0.1", proxy.port, "/ws", messages, pause=1.2)
        assert echoes == messages
        records = collector.wait_for(1, where=lambda r: r["flowEndReason"] != 2)
        time.sleep(0.5)
        records = [r for r in collector.records if r["httpRequestTarget"] == "/ws"]
    interim = [r for r in records if r["flowEndReason"] == 2]
    final = [r for r in records if r["flowEndReason"] != 2]
    assert len(final) == 1 and final[0]["httpStatusCode"] == 101
    assert len(interim) >= 1
    assert len({r["flowId"] for r in records}) == 1  # one exchange, one id
    assert sum(r["uploadedBytes"] for r in records) == 600
    assert sum(r["downloadedBytes"] for r in records) == 600


def test_streamed_bodies_are_counted(tmp_path: Path, upstream: Upstream,
                                     collector: Collector) -> None:
    with Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}",
                  "--set", f"flowexport_collectors={collector.address}",
                  "--set", "stream_large_bodies=10k") as proxy:
        body = curl(f"{proxy.url}/big?n=300000").stdout
        assert len(body) == 300000
        upload = curl("-X", "POST", "--data-binary", "@-", f"{proxy.url}/echo")
        records = one_per_flow(collector.wait_for(2))
    assert records["/big"]["downloadedBytes"] == 300000
    assert records["/big"]["httpTerminationStateCode"] == 0
    del upload


LATE_STREAMER = """
from mitmproxy import http

def requestheaders(flow: http.HTTPFlow) -> None:
    if flow.request.path.startswith("/echo"):
        flow.request.stream = True

def responseheaders(flow: http.HTTPFlow) -> None:
    if flow.request.path.startswith(("/big", "/drip")):
        flow.response.stream = True
"""


def test_bodies_streamed_past_our_counter_are_sized_and_said(tmp_path: Path, upstream: Upstream,
                                                             collector: Collector) -> None:
    """Another addon, loaded after ours, streams bodies our hooks saw as ordinary: their
    sizes come from Content-Length, and the log says they were not counted."""
    streamer = tmp_path / "late_streamer.py"
    streamer.write_text(LATE_STREAMER)
    with Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}",
                  "--set", f"flowexport_collectors={collector.address}",
                  scripts=(streamer,)) as proxy:
        assert len(curl(f"{proxy.url}/big?n=250000").stdout) == 250000
        curl("-X", "POST", "--data-binary", "x" * 5000, f"{proxy.url}/echo")
        records = one_per_flow(collector.wait_for(2))
        log = proxy.log()
    assert records["/big"]["downloadedBytes"] == 250000
    assert records["/echo"]["uploadedBytes"] == 5000
    assert records["/big"]["responderOctets"] > 250000  # the head counts too
    assert "streamed where flowexport was not counting" in log


def test_count_streams_counts_what_another_addon_streams(
        tmp_path: Path, upstream: Upstream, collector: Collector) -> None:
    """Without stream_large_bodies the stream counter is not registered (mitmproxy would
    call its hooks for every request): a response another addon streams is sized from
    Content-Length, in one record. With flowexport_count_streams it is counted as it
    passes, which shows as interim records while it lasts."""
    streamer = tmp_path / "early_streamer.py"
    streamer.write_text(LATE_STREAMER)
    for count_streams in (False, True):
        with Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}",
                      "--set", f"flowexport_collectors={collector.address}",
                      "--set", "flowexport_active_timeout_s=1",
                      "--set", f"flowexport_count_streams={str(count_streams).lower()}",
                      script=streamer, scripts=(ADDON,)) as proxy:
            assert len(curl(f"{proxy.url}/drip?n=5&ms=600").stdout) == 5000
            finals = collector.wait_for(1 + count_streams,
                                        where=lambda r: r["flowEndReason"] == 3)
            log = proxy.log()
        flow = finals[-1]["flowId"]
        records = [r for r in collector.records if r["flowId"] == flow]
        assert sum(r["downloadedBytes"] for r in records) == 5000
        reasons = [r["flowEndReason"] for r in records]
        if count_streams:
            assert 2 in reasons  # counted as it passed: interim records
            assert "not counting" not in log
        else:
            assert reasons == [3]  # sized from Content-Length at the end
            assert log.count("streamed where flowexport was not counting") == 1


KILLER = """
from mitmproxy import http

def request(flow: http.HTTPFlow) -> None:
    if flow.request.path.startswith("/kill-request"):
        flow.kill()

def response(flow: http.HTTPFlow) -> None:
    if flow.request.path.startswith("/kill-response"):
        flow.kill()
"""


def test_termination_codes(tmp_path: Path, upstream: Upstream, collector: Collector) -> None:
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    with Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}",
                  "--set", f"flowexport_collectors={collector.address}",
                  "--set", "body_size_limit=2k", "--set", "tcp_timeout=2",
                  scripts=(killer,)) as proxy:
        assert curl(f"{proxy.url}/ok").stdout == "hello"
        curl(f"{proxy.url}/missing")
        curl(f"{proxy.url}/kill-request")
        curl(f"{proxy.url}/kill-response")
        curl("-X", "POST", "--data-binary", "x" * 5000, f"{proxy.url}/echo-too-large")
        curl(f"{proxy.url}/reset")
        curl(f"{proxy.url}/invalid")
        curl(f"{proxy.url}/slow?ms=3000", timeout=0.5)  # the client gives up first
        curl(f"{proxy.url}/hang?s=6", timeout=10)  # mitmproxy's tcp_timeout closes it
        records = one_per_flow(collector.wait_for(9, timeout=20))
    expected = {"/ok": (0, 3), "/missing": (0, 3), "/kill-request": (5, 4),
                "/kill-response": (5, 4), "/echo-too-large": (6, 4), "/reset": (4, 4),
                "/invalid": (4, 4), "/slow": (1, 4), "/hang": (3, 4)}
    got = {t: (r["httpTerminationStateCode"], r["flowEndReason"]) for t, r in records.items()}
    assert got == expected
    assert records["/missing"]["httpStatusCode"] == 404


def test_refused_upstream_still_yields_a_record(tmp_path: Path, collector: Collector) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]  # bound, never listening: connections are refused
        with Mitmdump(tmp_path, "--mode", f"reverse:http://127.0.0.1:{dead}",
                      "--set", f"flowexport_collectors={collector.address}") as proxy:
            curl(f"{proxy.url}/eager")
            # the harness's own readiness probe is a connection too: two attempts
            eager = collector.wait_for(2)
        with Mitmdump(tmp_path, "--mode", f"reverse:http://127.0.0.1:{dead}",
                      "--set", "connection_strategy=lazy",
                      "--set", f"flowexport_collectors={collector.address}") as proxy:
            curl(f"{proxy.url}/lazy")
            (lazy,) = collector.wait_for(1, where=lambda r: r["httpRequestTarget"] == "/lazy")
        # each proxy's last message carries its statistics (template 261): the lazy one
        # exported the flow's record alone, not also one for the failed connect
        wait_until(lambda: len(collector.options_records(261)) >= 2)
    assert collector.options_records(261)[-1]["exportedFlowRecordTotalCount"] == 1
    assert len(eager) == 2, (collector.lines, collector.stderr)
    for record in eager:  # no HTTP flow at all: a record built from the connection
        assert record["httpTerminationStateCode"] == 2 and record["flowEndReason"] == 4
        assert record["postNAPTDestinationTransportPort"] == 0  # no upstream connection
        assert record["httpRequestMethod"] == ""
    assert lazy["httpTerminationStateCode"] == 2 and lazy["httpRequestMethod"] == "GET"


def test_a_failed_connect_in_forward_mode_names_its_target(tmp_path: Path,
                                                           collector: Collector) -> None:
    """A client's CONNECT whose upstream connect fails makes no HTTP flow; its record says
    what the client asked for: method CONNECT, host and target host:port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
        with Mitmdump(tmp_path, "--set", f"flowexport_collectors={collector.address}") as proxy:
            curl("-p", "-x", proxy.url, f"https://127.0.0.1:{dead}/secret/path")
            (record,) = collector.wait_for(
                1, where=lambda r: r["httpRequestMethod"] == "CONNECT")
    assert record["httpRequestHost"] == record["httpRequestTarget"] == f"127.0.0.1:{dead}"
    assert record["httpTerminationStateCode"] == 2 and record["flowEndReason"] == 4


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_lose_no_finished_record(tmp_path: Path, upstream: Upstream,
                                         collector: Collector, sig: int) -> None:
    proxy = Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}",
                     "--set", f"flowexport_collectors={collector.address}",
                     "--set", "flowexport_flush_interval_ms=60000")  # only shutdown flushes
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    for index in range(50):
        connection.request("GET", f"/n{index}")
        connection.getresponse().read()
    connection.close()
    proxy.stop(sig)
    records = collector.wait_for(50, timeout=10)
    assert sorted(r["httpRequestTarget"] for r in records) == sorted(f"/n{i}" for i in range(50))
    assert "flowexport: 50 records, 50 sent" in proxy.log()


def test_bad_options_are_refused_with_the_value(tmp_path: Path) -> None:
    for option, fragment in [("flowexport_collectors=udp://x:1", "udp"),
                             ("flowexport_cookies=maybe", "maybe"),
                             ("flowexport_max_datagram=100", "too small"),
                             ("flowexport_filter=~q ~~", "~q ~~"),
                             ("flowexport_colectors=127.0.0.1:1", "flowexport_collectors?")]:
        proxy_log = tmp_path / f"bad-{fragment[:3]}.log"
        import subprocess

        from tests.e2e import ADDON, MITMDUMP
        result = subprocess.run([str(MITMDUMP), "-p", "0", "--set", f"confdir={tmp_path}",
                                 "-s", str(ADDON), "--set", option],
                                capture_output=True, text=True, timeout=30, check=False)
        proxy_log.write_text(result.stdout + result.stderr)
        assert result.returncode != 0, option
        output = result.stdout + result.stderr
        assert fragment in output, option
        assert "Traceback" not in output, option  # one line says it


def test_tls_client_to_ip_has_no_sni(tmp_path: Path, upstream: Upstream,
                                     collector: Collector) -> None:
    with Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}",
                  "--set", f"flowexport_collectors={collector.address}") as proxy:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=context,
                                                 timeout=10)
        connection.request("GET", "/tls")
        assert connection.getresponse().read() == b"hello"
        connection.close()
        (record,) = collector.wait_for(1)
    assert record["tlsServerName"] == ""
    assert record["tlsProtocolVersion"].startswith("TLSv1.")
    assert wait_until(lambda: True)


def test_config_file_and_several_collectors(tmp_path: Path, upstream: Upstream) -> None:
    with Collector() as ipfix_collector, Collector() as v9_collector:
        (tmp_path / "config.yaml").write_text(
            "flowexport_collectors:\n"
            f"  - ipfix://{ipfix_collector.address}\n"
            f"  - netflow9://{v9_collector.address}\n"
            f"  - file:{tmp_path / 'flows.ipfix'}\n"
            "flowexport_observation_domain_id: 42\n")
        with Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}") as proxy:
            assert curl(f"{proxy.url}/both?x=1").stdout == "hello"
            (ipfix_record,) = ipfix_collector.wait_for(1)
            (v9_record,) = v9_collector.wait_for(1)
    assert ipfix_record["_version"] == 10 and v9_record["_version"] == 9
    assert ipfix_record["_domain"] == v9_record["_domain"] == 42
    assert ipfix_record["httpRequestTarget"] == v9_record["httpRequestTarget"] == "/both"
    assert ipfix_record["flowId"] == v9_record["flowId"]
    assert v9_record["httpRequestQuery"] == "x=1"  # private field types 32768+id decoded
    assert (tmp_path / "flows.ipfix").stat().st_size > 0


def test_shutdown_with_open_exchanges(tmp_path: Path, upstream: Upstream,
                                      collector: Collector) -> None:
    """In-flight exchanges at SIGINT still yield one final record each; the log has totals."""
    import threading

    proxy = Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}",
                     "--set", f"flowexport_collectors={collector.address}",
                     "--set", "flowexport_statistics_interval_s=1")
    slow = threading.Thread(target=curl, args=(f"{proxy.url}/slow?ms=4000",), daemon=True)
    slow.start()
    def talk() -> None:
        with contextlib.suppress(OSError):  # the proxy goes away mid-conversation
            websocket_session("127.0.0.1", proxy.port, "/ws", [b"m" * 10] * 20, pause=0.2)

    ws = threading.Thread(target=talk, daemon=True)
    ws.start()
    assert curl(f"{proxy.url}/before").stdout == "hello"
    time.sleep(1.5)  # one statistics interval; the slow request and the WebSocket are open
    proxy.stop(signal.SIGINT)
    records = collector.wait_for(3, timeout=10, where=lambda r: r["flowEndReason"] != 2)
    finals = one_per_flow(records)
    assert set(finals) == {"/before", "/slow", "/ws"}
    assert finals["/before"]["httpTerminationStateCode"] == 0
    assert finals["/ws"]["flowEndReason"] == 4 and finals["/ws"]["httpStatusCode"] == 101
    assert finals["/slow"]["flowEndReason"] == 4
    assert "flowexport: " in proxy.log() and " records, " in proxy.log()


def test_filter_and_sampling(tmp_path: Path, upstream: Upstream, collector: Collector) -> None:
    with Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}",
                  "--set", f"flowexport_collectors={collector.address}",
                  "--set", "flowexport_filter=~u /keep") as proxy:
        for path in ("/keep/1", "/drop/1", "/keep/2", "/drop/2"):
            curl(f"{proxy.url}{path}")
        collector.wait_for(2)
        time.sleep(0.5)
    assert sorted(r["httpRequestTarget"] for r in collector.records) == ["/keep/1", "/keep/2"]


def test_streamed_transfer_gets_interim_records(tmp_path: Path, upstream: Upstream,
                                                collector: Collector) -> None:
    """A slow streamed upload: visible before it ends, its deltas adding up to the total."""
    with Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}",
                  "--set", f"flowexport_collectors={collector.address}",
                  "--set", "stream_large_bodies=1k",
                  "--set", "flowexport_active_timeout_s=1") as proxy:
        total = 0
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: up.test\r\nContent-Length: 60000\r\n\r\n")
            for _ in range(6):
                sock.sendall(b"u" * 10000)
                total += 10000
                time.sleep(0.5)
            reply = b""
            while len(reply) < 60000:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        records = collector.wait_for(1, where=lambda r: r["flowEndReason"] == 3)
        records = [r for r in collector.records if r["httpRequestTarget"] == "/echo"]
    interim = [r for r in records if r["flowEndReason"] == 2]
    assert interim, "no interim record during a 3 s upload"
    assert sum(r["uploadedBytes"] for r in records) == total
    assert len({r["flowId"] for r in records}) == 1


def socket_count(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).startswith("socket:")
    return count


def test_script_reload_neither_duplicates_nor_loses(tmp_path: Path, upstream: Upstream,
                                                    collector: Collector) -> None:
    import shutil as shell
    import threading

    from tests.e2e import ADDON

    script = tmp_path / "flowexport.py"
    shell.copy(ADDON, script)
    proxy = Mitmdump(tmp_path, "--mode", f"reverse:{upstream.url}",
                     "--set", f"flowexport_collectors={collector.address}", script=script)
    try:
        assert curl(f"{proxy.url}/warm").stdout == "hello"
        collector.wait_for(1)
        sockets_before = socket_count(proxy.process.pid)
        done = threading.Event()

        def load() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            for index in range(80):
                connection.request("GET", f"/r{index}")
                connection.getresponse().read()
                time.sleep(0.04)
            connection.close()
            done.set()

        threading.Thread(target=load, daemon=True).start()
        for _ in range(2):  # two reloads while requests flow
            time.sleep(1.2)
            script.write_text(script.read_text() + "\n")
        assert done.wait(30)
        time.sleep(1.5)
        records = collector.wait_for(81)
        sockets_after = socket_count(proxy.process.pid)
    finally:
        proxy.stop()
    targets = [r["httpRequestTarget"] for r in records]
    assert sorted(targets) == sorted(["/warm"] + [f"/r{i}" for i in range(80)])  # once each
    assert proxy.log().count("Loading script") >= 3
    assert sockets_after <= sockets_before  # the old exporters' sockets are gone
