"""Real servers and clients for the flows that are not plain HTTP: TCP and UDP echo, a DNS
server of the tests' own, a TLS server with a self-signed certificate, HTTP/3 on both
sides (aioquic, which ships with mitmproxy). Loopback only; each stops by itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent
from mitmproxy import dns
from mitmproxy.net.dns import response_codes


class TcpEcho:
    """Sends back whatever each connection sends, until the connection closes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1 << 16):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TcpEcho:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UdpEcho:
    """Sends every datagram back to where it came from."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(1 << 16)
                self.sock.sendto(data, peer)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> UdpEcho:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DnsServer:
    """A small authoritative server over UDP and TCP, its answers chosen by name:
    nx.test NXDOMAIN; chain.test a CNAME chain to an A record; big.test 100 A records
    (over UDP only the TC bit, so clients ask again over TCP); silent.test never
    answered; AAAA queries 2001:db8::5; anything else A 192.0.2.5."""

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = int(self.udp.getsockname()[1])
        self.tcp = socket.create_server(("127.0.0.1", self.port))
        self.queries: list[tuple[str, str]] = []  # (transport, name) in arrival order
        threading.Thread(target=self._serve_udp, daemon=True).start()
        threading.Thread(target=self._serve_tcp, daemon=True).start()

    def answer(self, query: dns.DNSMessage, over_tcp: bool) -> bytes | None:
        question = query.question
        assert question is not None
        name = question.name
        self.queries.append(("tcp" if over_tcp else "udp", name))
        if name == "silent.test":
            return None
        if name == "nx.test":
            return query.fail(response_codes.NXDOMAIN).packed
        if name == "big.test" and not over_tcp:
            truncated = query.succeed([])
            truncated.truncation = True
            return truncated.packed
        answers: list[dns.ResourceRecord]
        if name == "chain.test":
            answers = [dns.ResourceRecord.CNAME("chain.test", "mid.test", ttl=300),
                       dns.ResourceRecord.CNAME("mid.test", "end.test", ttl=120),
                       dns.ResourceRecord.A("end.test", ipaddress.IPv4Address("192.0.2.7"),
                                            ttl=30)]
        elif name == "big.test":
            answers = [dns.ResourceRecord.A("big.test",
                                            ipaddress.IPv4Address(f"198.51.100.{i}"),
                                            ttl=60 + i) for i in range(1, 101)]
        elif question.type == 28:
            answers = [dns.ResourceRecord.AAAA(name, ipaddress.IPv6Address("2001:db8::5"),
                                               ttl=600)]
        else:
            answers = [dns.ResourceRecord.A(name, ipaddress.IPv4Address("192.0.2.5"), ttl=600)]
        return query.succeed(answers).packed

    def _serve_udp(self) -> None:
        while True:
            try:
                data, peer = self.udp.recvfrom(1 << 16)
            except OSError:
                return
            reply = self.answer(dns.DNSMessage.unpack(data), False)
            if reply is not None:
                self.udp.sendto(reply, peer)

    def _serve_tcp(self) -> None:
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._tcp_connection, args=(conn,), daemon=True).start()

    def _tcp_connection(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while data := conn.recv(1 << 16):
                buffer += data
                while len(buffer) >= 2 and len(buffer) >= 2 + struct.unpack("!H", buffer[:2])[0]:
                    length = struct.unpack("!H", buffer[:2])[0]
                    message, buffer = buffer[2:2 + length], buffer[2 + length:]
                    reply = self.answer(dns.DNSMessage.unpack(message), True)
                    if reply is not None:
                        conn.sendall(struct.pack("!H", len(reply)) + reply)

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()

    def __enter__(self) -> DnsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def self_signed(directory: Path, name: str = "upstream.test") -> tuple[Path, Path]:
    """A certificate for `name` and 127.0.0.1 that no one trusts, and its key."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class TlsServer:
    """HTTPS/1.1 with a self-signed certificate: answers one request per connection."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["http/1.1"])
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.handshakes = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                self.handshakes += 1
                tls.recv(1 << 16)
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except (OSError, ssl.SSLError):
            pass  # clients that give up in the handshake are what some tests are about

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TlsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _H3Server(QuicConnectionProtocol):
    """Answers every HTTP/3 request with 200 and a short text."""

    BODY = b"hello over HTTP/3"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http: H3Connection | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if self._http is None:
            self._http = H3Connection(self._quic)
        for h3_event in self._http.handle_event(event):
            if isinstance(h3_event, HeadersReceived | DataReceived) and h3_event.stream_ended:
                self._http.send_headers(h3_event.stream_id, [
                    (b":status", b"200"), (b"content-type", b"text/plain"),
                    (b"content-length", str(len(self.BODY)).encode())])
                self._http.send_data(h3_event.stream_id, self.BODY, end_stream=True)
                self.transmit()


class Http3Server:
    """An HTTP/3 server on its own event loop in a thread."""

    def __init__(self, cert: Path, key: Path) -> None:
        configuration = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
        configuration.load_cert_chain(cert, key)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(serve(
                "127.0.0.1", self.port, configuration=configuration,
                create_protocol=_H3Server))
            started.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        assert started.wait(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)

    def __enter__(self) -> Http3Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _H3Client(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._responses: dict[int, dict[str, Any]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self._http.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if not isinstance(event, HeadersReceived | DataReceived):
            return
        response = self._responses.setdefault(event.stream_id, {"headers": [], "body": b""})
        if isinstance(event, HeadersReceived):
            response["headers"] += event.headers
        else:
            response["body"] += event.data
        if event.stream_ended:
            self._waiting.pop(event.stream_id).set_result(response)

    async def get(self, authority: str, path: str, user_agent: str) -> dict[str, Any]:
        stream_id = self._quic.get_next_available_stream_id()
        self._http.send_headers(stream_id, [
            (b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority.encode()),
            (b":path", path.encode()), (b"user-agent", user_agent.encode())], end_stream=True)
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[stream_id] = waiter
        self.transmit()
        return await asyncio.wait_for(waiter, 10)


def http3_get(port: int, authority: str, path: str,
              user_agent: str = "h3-test/1.0") -> dict[str, Any]:
    """One HTTP/3 GET to 127.0.0.1:port (the certificate is not checked)."""

    async def run() -> dict[str, Any]:
        configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                                          verify_mode=ssl.CERT_NONE,
                                          server_name=authority.partition(":")[0])
        async with connect("127.0.0.1", port, configuration=configuration,
                           create_protocol=_H3Client) as client:
            assert isinstance(client, _H3Client)
            return await client.get(authority, path, user_agent)

    return asyncio.run(run())
