"""The main job, on one machine: an upstream app, mitmdump with the addon in front of it
(reverse proxy), and the bundled collector printing one line per exchange.

    make demo                                   # runs until Ctrl-C
    .venv/bin/python tools/demo.py --client     # also sends a request every 3 s itself
    .venv/bin/python tools/demo.py --duration 10 --format json

Send your own requests with the curl line printed at start. mitmdump's own log shows
only flowexport's lines (its statistics every 10 s) and warnings; its temporary
configuration directory (with a CA key) is removed on exit.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLIENT_INTERVAL_S = 3.0


class DemoApp(BaseHTTPRequestHandler):
    """The app behind the proxy: answers every path with a short page."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = f"hello from the demo app: {self.path}\n".encode()
        status = 404 if self.path.startswith("/missing") else 200
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.do_GET()


def port_or_free(preferred: int, kind: int = socket.SOCK_STREAM) -> int:
    """The preferred port if it is free on 127.0.0.1, else any free one."""
    for candidate in (preferred, 0):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")


def wait_listening(port: int, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo: mitmdump exited with {process.returncode} (see above)")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit("demo: mitmdump did not start listening")


def relay_log(stream: IO[str]) -> None:
    """mitmdump's log, without its line per connection: flowexport's lines and problems."""
    for text in stream:
        lowered = text.lower()
        if "flowexport" in lowered or "error" in lowered or "warn" in lowered:
            sys.stderr.write(text)


def client_loop(proxy_port: int, stop: threading.Event) -> None:
    paths = ["/", "/shop/items?page=2&token=secret", "/missing", "/api/orders?id=7"]
    index = 0
    while not stop.wait(CLIENT_INTERVAL_S):
        request = urllib.request.Request(f"http://127.0.0.1:{proxy_port}{paths[index % 4]}",
                                         headers={"Host": "demo.example",
                                                  "User-Agent": "flowexport-demo/1.0"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
        except OSError:
            pass  # a 404 raises too; the record shows it
        index += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    parser.add_argument("--format", choices=("human", "json", "pretty"), default="human")
    parser.add_argument("--client", action="store_true",
                        help=f"send a request every {CLIENT_INTERVAL_S:.0f} s yourself")
    args = parser.parse_args()

    app = ThreadingHTTPServer(("127.0.0.1", port_or_free(8000)), DemoApp)
    app.daemon_threads = True
    threading.Thread(target=app.serve_forever, daemon=True).start()
    app_port = app.server_address[1]
    proxy_port = port_or_free(8080)
    collector_port = port_or_free(4739, socket.SOCK_DGRAM)

    collector = subprocess.Popen([sys.executable, "-m", "ipfix.collector", "--listen",
                                  f"127.0.0.1:{collector_port}", "--format", args.format,
                                  "--summary", "30"], cwd=ROOT)
    confdir = tempfile.mkdtemp(prefix="flowexport-demo-")  # mitmproxy's CA goes here
    proxy = subprocess.Popen(
        [str(BIN / "mitmdump"), "--set", "flow_detail=0", "--listen-host", "127.0.0.1",
         "-p", str(proxy_port), "--mode", f"reverse:http://127.0.0.1:{app_port}",
         "--set", "keep_host_header=true", "--set", f"confdir={confdir}",
         "-s", str(ROOT / "addon" / "flowexport.py"),
         "--set", f"flowexport_collectors=127.0.0.1:{collector_port}",
         "--set", "flowexport_statistics_interval_s=10"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proxy.stdout is not None
    threading.Thread(target=relay_log, args=(proxy.stdout,), daemon=True).start()
    stop = threading.Event()
    try:
        wait_listening(proxy_port, proxy)
        sys.stderr.write(
            f"\ndemo: app on 127.0.0.1:{app_port}, proxy on 127.0.0.1:{proxy_port}, "
            f"collector on udp 127.0.0.1:{collector_port}\n"
            f"demo: try  curl -H 'Host: shop.example' "
            f"'http://127.0.0.1:{proxy_port}/hello?q=1&token=secret'\n"
            f"demo: one line per exchange below; Ctrl-C stops everything\n\n")
        if args.client:
            threading.Thread(target=client_loop, args=(proxy_port, stop), daemon=True).start()
        if args.duration is None:
            signal.pause()
        else:
            time.sleep(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if proxy.poll() is None:
            proxy.send_signal(signal.SIGINT)  # the addon flushes on shutdown
        try:
            proxy.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proxy.kill()
        time.sleep(0.3)
        collector.send_signal(signal.SIGINT)
        collector.wait(timeout=10)
        app.shutdown()
        shutil.rmtree(confdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
