"""Instructions per request inside mitmdump, with and without the exporter (callgrind).

    .venv/bin/python -m benchmarks.instructions                  # about 8 minutes
    .venv/bin/python -m benchmarks.instructions --requests 500 --variants empty,two
    .venv/bin/python -m benchmarks.instructions --workload tcp   # per TCP connection
    .venv/bin/python -m benchmarks.instructions --workload dns   # per DNS query

Throughput on a shared machine drifts by 1-3% between runs, as much as the exporter
costs, so small changes cannot be told apart by `benchmarks.proxy` alone. Counting the
instructions mitmdump executes per request does not drift: the same work gives the same
count within a fraction of a percent (the A/A pair `empty`/`empty-b` shows how close).
Each variant's mitmdump (the same variants and sinks as `benchmarks.proxy`) runs under
valgrind's callgrind; after a warm-up the counters are zeroed, a fixed number of requests
goes through on 10 keep-alive connections, and after ten seconds (so the exporter's batch
has run) the counters are read.

The exporter records more than HTTP, and `--workload` picks what goes through the proxy
(the same variants, each a fresh mitmdump in the reverse mode the workload needs):

    http  GET requests through `reverse:http://` (the default; the unit: a request)
    tcp   through `reverse:tcp://` to a TCP echo server: a short connection, 4 messages of
          100 bytes each way, then closed (the unit: a connection, with its connect and its
          close, since a TCP stream makes one record)
    dns   A queries over UDP through `reverse:dns://` to a DNS server that answers each
          with one A record (the unit: a query and its answer). The queries come from 10
          client sockets, each in turn, as a forwarding resolver sends them: mitmproxy
          keeps a UDP client for 20 s after its last datagram, so clients that came and
          went with every query would end outside the counted window, or in it, by chance

What it does not see: work in the kernel (sending a datagram over loopback also
delivers it, in the sender's system call) and cache or scheduling effects; the wall
clock benchmark does. Needs valgrind (Debian: valgrind).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.proxy import Helper, start_mitmdump, stop

CONNECTIONS = 10
FLUSH_MS = 10_000
TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def concurrently(count: int, client: Callable[[int, int], None]) -> None:
    """`count` units of work split over CONNECTIONS threads that run at once:
    `client(index, share)` does `share` of them; the first failure is raised."""
    shares = [count // CONNECTIONS + (i < count % CONNECTIONS) for i in range(CONNECTIONS)]
    failures: list[BaseException] = []

    def run(index: int, share: int) -> None:
        try:
            client(index, share)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i, n)) for i, n in enumerate(shares)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


class Load:
    """What a workload sends to one mitmdump: `run(count)` units of work, as often as
    asked (a warm-up, then the counted ones); `close` when that mitmdump is done."""

    def __init__(self, port: int) -> None:
        self.port = port

    def run(self, count: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing stays open between runs unless a workload says so."""


class HttpLoad(Load):
    """GET requests over CONNECTIONS keep-alive connections, concurrently."""

    def run(self, count: int) -> None:
        def client(_: int, share: int) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                for _ in range(share):
                    connection.request("GET", "/api/items?page=2", headers={
                        "User-Agent": "bench/1.0", "Accept": "*/*"})
                    response = connection.getresponse()
                    response.read()
                    if response.status != 200:
                        raise RuntimeError(f"status {response.status}")
            finally:
                connection.close()

        concurrently(count, client)


TCP_MESSAGES = 4
TCP_PAYLOAD = bytes(range(100))


class TcpLoad(Load):
    """Short TCP connections, CONNECTIONS at a time: each sends TCP_MESSAGES of 100 bytes,
    waits for each to come back, and closes."""

    def run(self, count: int) -> None:
        def client(_: int, share: int) -> None:
            for _ in range(share):
                with socket.create_connection(("127.0.0.1", self.port), timeout=120) as sock:
                    for _ in range(TCP_MESSAGES):
                        sock.sendall(TCP_PAYLOAD)
                        echoed = b""
                        while len(echoed) < len(TCP_PAYLOAD):
                            chunk = sock.recv(len(TCP_PAYLOAD) - len(echoed))
                            if not chunk:
                                raise RuntimeError("the echo closed early")
                            echoed += chunk
                        if echoed != TCP_PAYLOAD:
                            raise RuntimeError("echoed something else")

        concurrently(count, client)


DNS_NAME = "api.example.com"
DNS_HEADER = struct.Struct("!HHHHHH")  # id, flags, questions, answers, authority, additional


def dns_query(ident: int, name: str) -> bytes:
    """A standard query, recursion desired, for the A record of `name` (RFC 1035 4.1)."""
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    return DNS_HEADER.pack(ident, 0x0100, 1, 0, 0, 0) + qname + b"\x00" + struct.pack("!HH", 1, 1)


class DnsLoad(Load):
    """A queries from CONNECTIONS UDP sockets at once, each sending its next query when
    the answer to its last one came. The sockets stay for the mitmdump's life (see the
    module docstring); their query ids count up, since mitmproxy keys a client's flows by
    the id."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.sockets: list[socket.socket] = []
        for _ in range(CONNECTIONS):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(120)
            sock.connect(("127.0.0.1", port))
            self.sockets.append(sock)
        self.sent = [0] * CONNECTIONS

    def run(self, count: int) -> None:
        def client(index: int, share: int) -> None:
            sock = self.sockets[index]
            for _ in range(share):
                self.sent[index] += 1
                ident = self.sent[index] & 0xFFFF
                answer = self.ask(sock, dns_query(ident, DNS_NAME))
                got, flags, _, answers, _, _ = DNS_HEADER.unpack_from(answer)
                if got != ident or flags & 0x800F != 0x8000 or answers != 1:
                    raise RuntimeError(f"not the answer expected: {answer!r}")

        concurrently(count, client)

    @staticmethod
    def ask(sock: socket.socket, query: bytes) -> bytes:
        """The answer to `query`. A query refused by the kernel (ICMP port unreachable:
        seen now and then right after mitmdump's UDP port showed up, not reproduced since)
        reached no process, so sending it again costs mitmdump nothing: a few tries."""
        for _ in range(20):
            try:
                sock.send(query)
                return sock.recv(512)
            except ConnectionRefusedError:  # on the call after the ICMP error came
                time.sleep(0.5)
        raise RuntimeError(f"queries to port {sock.getpeername()[1]} refused")

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@dataclass(frozen=True)
class Workload:
    """What goes through the proxy, and how its instructions are counted."""

    scheme: str  # of the reverse proxy's upstream: `--mode reverse:SCHEME://...`
    upstream: str  # the benchmarks.proxy helper that serves as that upstream
    load: type[Load]
    unit: str  # of work, the count is per unit
    units: str  # the plural
    how: str  # how the units are sent, for the report
    variants: str  # the default variants


WORKLOADS = {
    "http": Workload("http", "--serve-upstream", HttpLoad, "request", "requests",
                     f"{CONNECTIONS} keep-alive connections",
                     "empty,empty-b,ipfix,netflow9,two,flowlines,hardump,savestream,jsonudp"),
    "tcp": Workload("tcp", "--serve-tcp-echo", TcpLoad, "connection", "connections",
                    f"{CONNECTIONS} at a time, each {TCP_MESSAGES} messages of "
                    f"{len(TCP_PAYLOAD)} bytes each way to an echo server",
                    "empty,empty-b,ipfix,netflow9"),
    "dns": Workload("dns", "--serve-dns", DnsLoad, "query", "queries",
                    f"A queries over UDP from {CONNECTIONS} client sockets",
                    "empty,empty-b,ipfix,netflow9"),
}


def callgrind(pid: int, *arguments: str) -> None:
    subprocess.run(["callgrind_control", *arguments, str(pid)], check=True,
                   capture_output=True, timeout=120)


def instructions(out_dir: Path, pid: int) -> int:
    """The instruction count of the newest dump of process `pid`."""
    dumps = sorted(out_dir.glob(f"callgrind.{pid}.*"), key=lambda p: p.stat().st_mtime)
    if not dumps:
        raise RuntimeError(f"no callgrind dump of {pid} in {out_dir}")
    counts = [int(m) for m in TOTALS.findall(dumps[-1].read_bytes())]
    if not counts:
        raise RuntimeError(f"no totals in {dumps[-1]}")
    return max(counts)


def measure(workload: Workload, variant: str, upstream: Helper, sinks: list[Helper],
            confdir: str, empty: Path, warmup: int, count: int, keep: Path | None) -> float:
    """Instructions per unit of work of one fresh mitmdump of `variant`."""
    out_dir = (keep or Path(confdir)) / variant
    out_dir.mkdir(parents=True)
    launcher = ("taskset", "-c", "0", "valgrind", "--tool=callgrind",
                f"--callgrind-out-file={out_dir}/callgrind.%p", sys.executable)
    # Under valgrind mitmdump is ~50 times slower: with the default flush interval the
    # exporter's batches would hold a few records, where at full speed they hold ~100.
    # A long interval lets batches fill up to the exporter's wake-up size instead.
    process, port = start_mitmdump(variant, upstream.port, sinks, confdir, empty,
                                   launcher=launcher, timeout_s=300, scheme=workload.scheme,
                                   options=[f"flowexport_flush_interval_ms={FLUSH_MS}"])
    load = workload.load(port)
    try:
        load.run(warmup)
        time.sleep(FLUSH_MS / 1000)  # the warm-up's records go before counting starts
        callgrind(process.pid, "--zero")
        load.run(count)
        time.sleep(FLUSH_MS / 1000)  # the exporter's last batch and its datagrams
        callgrind(process.pid, "--dump")
        return instructions(out_dir, process.pid) / count
    finally:
        load.close()
        stop([process])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=WORKLOADS, default="http",
                        help="what goes through the proxy (default: http)")
    parser.add_argument("--requests", type=int, default=512,
                        help="units counted per variant: requests, connections or queries")
    parser.add_argument("--warmup", type=int, default=128)
    parser.add_argument("--variants", help="comma-separated; default: "
                        + "; ".join(f"{name}: {w.variants}" for name, w in WORKLOADS.items()))
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the callgrind dumps here (for callgrind_annotate)")
    args = parser.parse_args()
    workload = WORKLOADS[args.workload]
    for tool in ("valgrind", "callgrind_control", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (Debian: apt-get install valgrind util-linux)")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores: mitmdump on one, load and upstream on the other")
    os.environ["PYTHONHASHSEED"] = "0"  # the same dict layouts in every mitmdump
    os.sched_setaffinity(0, {1})
    upstream = Helper(workload.upstream)
    sinks = [Helper("--serve-sink"), Helper("--serve-sink")]
    counts: dict[str, float] = {}
    unit = workload.unit
    try:
        with tempfile.TemporaryDirectory() as confdir:
            empty = Path(confdir) / "empty.py"
            empty.write_text("# hosts no addon: the cost of loading a script at all\n")
            for name in (args.variants or workload.variants).split(","):
                counts[name] = measure(workload, name, upstream, sinks, confdir, empty,
                                       args.warmup, args.requests, args.keep)
                print(f"{name:<9} {counts[name]:12,.0f} instructions/{unit}", flush=True)
    finally:
        for sink in sinks:
            sink.finish()
        upstream.process.kill()
    base = counts.get("empty")
    print(f"\n{args.requests} {workload.units} per variant after {args.warmup} to warm up, "
          f"{workload.how}, callgrind (user space only)")
    width = max(15, len(f"extra/{unit}") + 2)
    print(f"{'variant':<9}{f'instr/{unit}':>{width}}{'vs empty':>10}{f'extra/{unit}':>{width}}")
    for name, count in counts.items():
        line = f"{name:<9}{count:>{width},.0f}"
        if base:
            line += f"{count / base:>10.4f}{count - base:>+{width},.0f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
