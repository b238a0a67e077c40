"""Real processes for end-to-end tests: an upstream HTTP server, mitmdump, the collector.

Everything listens on loopback only, and everything stops by itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import wsproto
import wsproto.events as ws_events

from ipfix.collector import SequenceTracker
from ipfix.decoder import Decoder

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "addon" / "flowexport.py"
MITMDUMP = Path(sys.executable).parent / "mitmdump"


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.do_GET()

    def do_PUT(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        body = self._body()
        path = url.path
        if path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket()
        elif path == "/slow":
            time.sleep(int(query.get("ms", ["1000"])[0]) / 1000)
            self._send(200, b"slow")
        elif path == "/hang":
            time.sleep(float(query.get("s", ["30"])[0]))
            self.close_connection = True
        elif path == "/reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            self.connection.close()
            self.close_connection = True
        elif path == "/invalid":
            self.wfile.write(b"THIS IS NOT HTTP\r\n\r\n")
            self.close_connection = True
        elif path == "/drip":  # a body in 1000-byte pieces, `ms` apart
            pieces, pause = int(query.get("n", ["4"])[0]), int(query.get("ms", ["500"])[0])
            self.send_response(200)
            self.send_header("Content-Length", str(1000 * pieces))
            self.end_headers()
            for _ in range(pieces):
                self.wfile.write(b"d" * 1000)
                self.wfile.flush()
                time.sleep(pause / 1000)
        elif path == "/big":
            self._send(200, b"x" * int(query.get("n", ["100000"])[0]), "application/octet-stream")
        elif path == "/echo":
            self._send(200, body, self.headers.get("Content-Type", "application/octet-stream"))
        elif path == "/missing":
            self._send(404, b"not here")
        else:
            self._send(200, b"hello", "text/html; charset=utf-8")

    def _websocket(self) -> None:
        """Echo server: each message comes back; a close is answered."""
        connection = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        lines = [self.requestline] + [f"{k}: {v}" for k, v in self.headers.items()]
        connection.receive_data(("\r\n".join(lines) + "\r\n\r\n").encode())
        sock = self.connection
        for event in connection.events():
            if isinstance(event, ws_events.Request):
                sock.sendall(connection.send(ws_events.AcceptConnection()))
        self.close_connection = True
        while True:
            data = sock.recv(65536)
            if not data:
                return
            connection.receive_data(data)
            for event in connection.events():
                if isinstance(event, ws_events.BytesMessage):
                    sock.sendall(connection.send(ws_events.Message(data=bytes(event.data))))
                elif isinstance(event, ws_events.TextMessage):
                    sock.sendall(connection.send(ws_events.Message(data=event.data)))
                elif isinstance(event, ws_events.CloseConnection):
                    sock.sendall(connection.send(event.response()))
                    return


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), _Handler)


class Upstream:
    """A local HTTP/1.1 server in a thread (also WebSocket echo on /ws)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.server = _Server(host)
        self.host = host
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Upstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class Collector:
    """The bundled collector as a process; records arrive in `self.records`."""

    def __init__(self, host: str = "127.0.0.1", *extra: str) -> None:
        self.port = free_port(host, socket.SOCK_DGRAM)
        bracketed = f"[{host}]" if ":" in host else host
        self.address = f"{bracketed}:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ipfix.collector", "--listen", self.address, "--options",
             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.process.stderr is not None
        line = self.process.stderr.readline()
        assert "listening on" in line, line
        self.lines: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._readers = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(json.loads(line))

    def _read_err(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    @property
    def records(self) -> list[dict[str, Any]]:
        """Flow records (not options records)."""
        return [line for line in list(self.lines) if not line.get("_options")]

    def options_records(self, template: int) -> list[dict[str, Any]]:
        return [line for line in list(self.lines) if line.get("_template") == template]

    def wait_for(self, count: int, timeout: float = 15.0,
                 where: Callable[[dict[str, Any]], bool] = lambda r: True) -> list[dict[str, Any]]:
        wait_until(lambda: len([r for r in self.records if where(r)]) >= count, timeout)
        return [r for r in self.records if where(r)]

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        for reader in self._readers:
            reader.join(timeout=5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        return "".join(self.stderr)

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Mitmdump:
    """mitmdump with the addon, on a loopback port, its own confdir, stopped by signal."""

    def __init__(self, confdir: Path, *args: str, listen_host: str = "127.0.0.1",
                 scripts: tuple[Path, ...] = (), script: Path = ADDON) -> None:
        self.port = free_port(listen_host)
        self.listen_host = listen_host
        self.log_path = confdir / f"mitmdump-{self.port}.log"
        command = [str(MITMDUMP), "--listen-host", listen_host, "-p", str(self.port),
                   "--set", f"confdir={confdir}", "-s", str(script)]
        for extra in scripts:
            command += ["-s", str(extra)]
        command += list(args)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=ROOT, env=env)
        family = socket.AF_INET6 if ":" in listen_host else socket.AF_INET

        def listening() -> bool:
            assert self.process.poll() is None, self.log()
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                return sock.connect_ex((listen_host, self.port)) == 0

        assert wait_until(listening, 20), self.log()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    @property
    def url(self) -> str:
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"http://{host}:{self.port}"

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code

    def __enter__(self) -> Mitmdump:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Capture:
    """tshark capturing on loopback with a filter, nothing bound: what is on the wire."""

    def __init__(self, path: Path, capture_filter: str) -> None:
        self.path = path
        self.process = subprocess.Popen(
            ["tshark", "-i", "lo", "-f", capture_filter, "-F", "pcap", "-w", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self.process.stderr is not None
        started: list[str] = []
        for line in self.process.stderr:  # "Capturing on 'Loopback: lo'" once it runs
            started.append(line)
            if "Capturing on" in line:
                break
        assert started and "Capturing on" in started[-1], "".join(started)

    def stop(self) -> None:
        """Stop after what is in flight was written (tshark flushes on SIGINT)."""
        time.sleep(0.5)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()

    def payloads(self, port: int) -> list[bytes]:
        """The UDP payloads sent to `port`, in capture order."""
        result = subprocess.run(["tshark", "-r", str(self.path), "-Y", f"udp.dstport=={port}",
                                 "-T", "fields", "-e", "udp.payload"],
                                capture_output=True, text=True, timeout=120, check=True)
        return [bytes.fromhex(line.replace(":", "")) for line in result.stdout.split()]

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Receiver:
    """A UDP socket in the test process that decodes what arrives, strictly."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        self.decoder = Decoder(strict_text=True)  # invalid UTF-8 on the wire fails the test
        self.flows: list[dict[str, Any]] = []
        self.options: list[int] = []  # template ids of the options records received
        self.skipped = 0
        self.sequences = SequenceTracker()
        # (sequence number, data records) of each message decoded in full
        self.messages: list[tuple[int, int]] = []
        self.raw: list[bytes] = []  # every datagram as it arrived

    def drain(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            self.raw.append(data)
            message = self.decoder.decode(data, peer)
            self.sequences.observe(peer, message)
            self.skipped += len(message.skipped_sets)
            if message.complete:
                self.messages.append((message.sequence_number, message.data_record_count))
            self.flows += [r.fields for r in message.records if not r.is_options]
            self.options += [r.template_id for r in message.records if r.is_options]

    def close(self) -> None:
        self.sock.close()


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-s", "-S", "--max-time", str(timeout), *args],
                          capture_output=True, text=True, timeout=timeout + 5, check=False)


def websocket_session(host: str, port: int, path: str, messages: list[bytes],
                      pause: float = 0.0, host_header: str = "ws.test") -> list[bytes]:
    """A WebSocket client: sends each message (pausing between), returns the echoes."""
    connection = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    echoes: list[bytes] = []
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(connection.send(ws_events.Request(host=host_header, target=path)))
        accepted = False
        while not accepted:
            connection.receive_data(sock.recv(65536))
            accepted = any(isinstance(e, ws_events.AcceptConnection)
                           for e in connection.events())
        for message in messages:
            sock.sendall(connection.send(ws_events.Message(data=message)))
            while len(echoes) < messages.index(message) + 1:
                connection.receive_data(sock.recv(65536))
                for event in connection.events():
                    if isinstance(event, ws_events.BytesMessage):
                        echoes.append(bytes(event.data))
            time.sleep(pause)
        sock.sendall(connection.send(ws_events.CloseConnection(code=1000)))
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                connection.receive_data(data)
                if any(isinstance(e, ws_events.CloseConnection) for e in connection.events()):
                    break
        except OSError:
            pass
    return echoes


def by_target(records: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for record in records:
        yield record.get("httpRequestTarget", ""), record
