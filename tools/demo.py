"""The main job, on one machine: an upstream app, mitmdump with the addon in front of it
(reverse proxy), and the bundled collector printing every record as it arrives.

    make demo                      # runs until Ctrl-C
    .venv/bin/python tools/demo.py --duration 10 --format json

A small client sends a request every second so records appear on their own; send
your own with the curl line printed at start.
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


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


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"mitmdump exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit("mitmdump did not start listening")


def client_loop(proxy_port: int, stop: threading.Event) -> None:
    paths = ["/", "/shop/items?page=2&token=secret", "/missing", "/api/orders?id=7"]
    index = 0
    while not stop.wait(1.0):
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
    parser.add_argument("--format", choices=("pretty", "json"), default="pretty")
    parser.add_argument("--no-client", action="store_true", help="send no requests yourself")
    args = parser.parse_args()

    app = ThreadingHTTPServer(("127.0.0.1", port_or_free(8000)), DemoApp)
    app.daemon_threads = True
    threading.Thread(target=app.serve_forever, daemon=True).start()
    app_port = app.server_address[1]
    proxy_port = port_or_free(8080)
    collector_port = port_or_free(4739, socket.SOCK_DGRAM)

    collector = subprocess.Popen([sys.executable, "-m", "ipfix.collector", "--listen",
                                  f"127.0.0.1:{collector_port}", "--format", args.format],
                                 cwd=ROOT)
    confdir = tempfile.mkdtemp(prefix="flowexport-demo-")
    proxy = subprocess.Popen(
        [str(BIN / "mitmdump"), "--quiet", "--listen-host", "127.0.0.1", "-p", str(proxy_port),
         "--mode", f"reverse:http://127.0.0.1:{app_port}", "--set", "keep_host_header=true",
         "--set", f"confdir={confdir}", "-s", str(ROOT / "addon" / "flowexport.py"),
         "--set", f"flowexport_collectors=127.0.0.1:{collector_port}",
         "--set", "flowexport_statistics_interval_s=10"], cwd=ROOT)
    wait_listening(proxy_port, proxy)
    sys.stderr.write(
        f"\ndemo: app on 127.0.0.1:{app_port}, proxy on 127.0.0.1:{proxy_port}, "
        f"collector on udp 127.0.0.1:{collector_port}\n"
        f"demo: try  curl -H 'Host: shop.example' "
        f"'http://127.0.0.1:{proxy_port}/hello?q=1'\n"
        f"demo: Ctrl-C stops everything\n\n")
    stop = threading.Event()
    if not args.no_client:
        threading.Thread(target=client_loop, args=(proxy_port, stop), daemon=True).start()
    try:
        if args.duration is None:
            signal.pause()
        else:
            time.sleep(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        proxy.send_signal(signal.SIGINT)  # the addon flushes on shutdown
        proxy.wait(timeout=20)
        time.sleep(0.3)
        collector.send_signal(signal.SIGINT)
        collector.wait(timeout=10)
        app.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
