"""Proxy throughput and latency with and without the exporter, measured side by side.

    .venv/bin/python -m benchmarks.proxy                 # 4 epochs x 3 rounds x 4 s per variant
    .venv/bin/python -m benchmarks.proxy --epochs 2 --variants empty,ipfix

One mitmdump per variant (reverse mode, `-q`), pinned to core 0; the upstream, the UDP
sinks that stand in for collectors, and wrk (one thread, 20 keep-alive connections)
share core 1. An epoch starts a fresh mitmdump for every variant, and each of its rounds
loads every variant once, for a few seconds, in a rotating order, with the empty script
before and after each (E v1 E v2 E ... E):

    none      mitmdump with no script
    empty     mitmdump -s an empty script (the fair baseline: hosting a script costs)
    empty-b   the same again: the A/A pair that shows the noise floor
    ipfix     -s addon/flowexport.py, IPFIX to a sink, default options
    netflow9  the same with NetFlow v9
    two       IPFIX and NetFlow v9 to two sinks at once
    dead      IPFIX to a port where nothing listens (ICMP port unreachable)
    X-python  any of these without the C building blocks (FLOWEXPORT_PURE_PYTHON=1)

and what users would otherwise use to log every request (each beside the empty script):

    flowlines  mitmdump's own flow lines (no -q), written to /dev/null
    hardump    --set hardump=FILE: a HAR file of every flow, written at exit
    savestream --set save_stream_file=FILE: mitmproxy's own flow file
    jsonudp    benchmarks/json_udp_addon.py: one msgspec JSON line per flow over UDP

Why this shape: on a shared machine the load of other tenants drifts over minutes, so
each ratio is a variant against the mean of the empty-script runs just before and just
after it: a drift that is steady over those seconds cancels out. And
a process has its own luck (memory layout, hash seed) that stays with it for its life:
two mitmdumps with the same script differed by 2.5% for a whole run. Fresh processes
every epoch let that luck average out instead of biasing every ratio. Prints per-variant
medians (requests/s, p50, p99, mitmdump's CPU time per request from /proc and the part
of it spent in the kernel) and the medians of per-round ratios with their 25th-75th
percentile. Needs wrk and taskset (Debian: wrk, util-linux).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from mitmproxy import dns

ROOT = Path(__file__).resolve().parents[1]
MITMDUMP = Path(sys.executable).parent / "mitmdump"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
DNS_TYPE_A = 1
DNS_ANSWER = ipaddress.IPv4Address("192.0.2.1")


async def _serve_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")  # GET requests only: no body
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _serve_tcp(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                 Awaitable[None]]) -> None:
    """Prints the port of a TCP server on loopback, then serves with `handler` until killed."""

    async def main() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def serve_upstream() -> None:
    """Run as its own process (`--serve-upstream`): prints its port, serves until killed."""
    _serve_tcp(_serve_client)


def serve_tcp_echo() -> None:
    """Run as its own process (`--serve-tcp-echo`): a TCP echo server (the upstream of
    `reverse:tcp://`); prints its port, echoes until killed."""
    _serve_tcp(_echo)


def serve_dns() -> None:
    """Run as its own process (`--serve-dns`): a DNS server over UDP (the upstream of
    `reverse:dns://`) that answers every query with one A record; prints its port, answers
    until killed. mitmproxy's own DNS message code parses and packs: it runs on core 1, so
    its speed does not count."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    while True:
        data, peer = sock.recvfrom(65535)
        query = dns.DNSMessage.unpack(data)
        answers = [dns.ResourceRecord.A(question.name, DNS_ANSWER, ttl=300)
                   for question in query.questions if question.type == DNS_TYPE_A]
        sock.sendto(query.succeed(answers).packed, peer)


def serve_sink() -> None:
    """Run as its own process (`--serve-sink`): counts datagrams like a collector that keeps
    up, at almost no cost; prints its port, then the count when stdin closes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    count = [0]

    def receive() -> None:
        while True:
            sock.recv(65535)
            count[0] += 1

    threading.Thread(target=receive, daemon=True).start()
    sys.stdin.read()
    print(count[0], flush=True)


class Helper:
    """A helper process of this module, pinned to core 1, that first prints its port."""

    def __init__(self, role: str) -> None:
        self.process = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, "-m", "benchmarks.proxy", role],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def finish(self) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        try:
            out = self.process.stdout.readline().strip()
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            out = ""
        if self.process.poll() is None:
            self.process.kill()
        return out


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_tcp_and_udp_port() -> int:
    """A port free for both (a DNS server listens on both)."""
    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def udp_bound(port: int) -> bool:
    """Whether some IPv4 UDP socket is bound to `port` (Linux: /proc/net/udp). A UDP server
    cannot be probed by connecting, and a probe datagram would be a flow of its own."""
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        local_address = line.split()[1]  # hex: 0100007F:1F90
        if int(local_address.rsplit(":", 1)[1], 16) == port:
            return True
    return False


# What a user would run instead of flowexport to log every request: mitmdump's own flow
# lines (to /dev/null), a HAR file written at exit, mitmproxy's flow file, and a naive
# addon sending one JSON line per flow over UDP.
ALTERNATIVES = ("flowlines", "hardump", "savestream", "jsonudp")


def start_mitmdump(variant: str, upstream: int, sinks: list[Helper], confdir: str,
                   empty_script: Path, *, launcher: Sequence[str] = ("taskset", "-c", "0"),
                   timeout_s: float = 30, options: Sequence[str] = (), scheme: str = "http"
                   ) -> tuple[subprocess.Popen[bytes], int]:
    """mitmdump for `variant`, started by `launcher` (taskset, or valgrind), and its port;
    `options` (NAME=VALUE) go to the addon's variants. `scheme` is what the reverse proxy
    speaks to `upstream`: http, tcp, or dns (then it listens on UDP, and on TCP as well)."""
    port = free_tcp_and_udp_port() if scheme == "dns" else free_port()
    env = dict(os.environ)
    if variant.endswith("-python"):  # the same without the C building blocks
        variant = variant.removesuffix("-python")
        env["FLOWEXPORT_PURE_PYTHON"] = "1"
    quiet = [] if variant == "flowlines" else ["-q"]  # flowlines: mitmdump's own lines
    command = [*launcher, str(MITMDUMP), *quiet, "--listen-host", "127.0.0.1",
               "-p", str(port), "--mode", f"reverse:{scheme}://127.0.0.1:{upstream}",
               "--set", f"confdir={confdir}"]
    if variant in ALTERNATIVES:  # what users would otherwise use, beside the empty script
        command += ["-s", str(empty_script)]
        if variant == "hardump":
            command += ["--set", f"hardump={Path(confdir) / 'flows.har'}"]
        elif variant == "savestream":
            command += ["--set", f"save_stream_file={Path(confdir) / 'flows.mitm'}"]
        elif variant == "jsonudp":
            command += ["-s", str(ROOT / "benchmarks" / "json_udp_addon.py"),
                        "--set", f"json_udp_target=127.0.0.1:{sinks[0].port}"]
    elif variant.startswith("empty"):
        command += ["-s", str(empty_script)]
    elif variant != "none":
        command += ["-s", str(ROOT / "addon" / "flowexport.py")]
        targets = {"ipfix": [f"127.0.0.1:{sinks[0].port}"],
                   "netflow9": [f"netflow9://127.0.0.1:{sinks[1].port}"],
                   "two": [f"127.0.0.1:{sinks[0].port}", f"netflow9://127.0.0.1:{sinks[1].port}"],
                   "dead": [f"127.0.0.1:{free_udp_port()}"]}
        for target in targets[variant]:
            command += ["--set", f"flowexport_collectors={target}"]
        for option in options:
            command += ["--set", option]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if scheme == "dns":  # it binds TCP first: UDP is the one to wait for
            if udp_bound(port):
                return process, port
        else:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return process, port
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"mitmdump ({variant}) did not start")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def parse_wrk(output: str) -> tuple[float, float, float, int]:
    """requests/s, p50 ms, p99 ms, requests."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]

    def percentile(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        assert match, output
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return rps, percentile("50"), percentile("99"), requests


def measure(port: int, seconds: int, pid: int) -> tuple[float, float, float, float, float]:
    """requests/s, p50 ms, p99 ms, and mitmdump's CPU microseconds per request: all, and
    the part spent in the kernel (sending a datagram over loopback also delivers it)."""
    url = f"http://127.0.0.1:{port}/"
    subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c20", "-d1s", url],
                   capture_output=True, check=True)  # warm up: connections, caches
    user, system = cpu_seconds(pid)
    result = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c20", f"-d{seconds}s",
                             "--latency", url], capture_output=True, text=True, check=True)
    user_after, system_after = cpu_seconds(pid)
    rps, p50, p99, requests = parse_wrk(result.stdout)
    per_request = 1e6 / max(requests, 1)
    return (rps, p50, p99, (user_after - user + system_after - system) * per_request,
            (system_after - system) * per_request)


Run = tuple[float, float, float, float, float]  # requests/s, p50, p99, CPU, kernel CPU


class Variant:
    """One variant: its mitmdump of the current epoch and its measurements of all rounds."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.runs: list[Run] = []  # one per round (the empty script: one per neighbour)
        self.relative: list[Run] = []  # each run / the mean of the empty runs around it

    def column(self, index: int) -> list[float]:
        return [run[index] for run in self.runs]

    def ratios(self, index: int) -> list[float]:
        return [run[index] for run in self.relative]


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """25th, 50th and 75th percentile (the spread of per-round ratios is their distance)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    low, mid, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, mid, high


def relative(run: Run, before: Run, after: Run) -> Run:
    """A run against the mean of the empty-script runs on either side of it."""
    return tuple(value / ((b + a) / 2) if b + a else 0.0  # type: ignore[return-value]
                 for value, b, a in zip(run, before, after, strict=True))


def spread(variant: Variant, index: int) -> str:
    """Median of per-round ratios with its 25th-75th percentile."""
    if variant.name == "empty":
        return f"{1:.3f} [{1:.3f}-{1:.3f}]"
    low, mid, high = quartiles(variant.ratios(index))
    return f"{mid:.3f} [{low:.3f}-{high:.3f}]"


def report(variants: dict[str, Variant], epochs: int, rounds: int, seconds: int,
           received: int) -> None:
    print(f"\n{epochs} epochs x {rounds} rounds x {seconds} s per variant, wrk -t1 -c20, "
          f"mitmdump on core 0; sinks received {received} datagrams")
    print("ratios: median [25th-75th percentile] over rounds of each run against the mean of "
          "the empty-script runs just before and after it")
    none = variants.get("none")
    print(f"{'variant':<9}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'cpu us/req':>11}{'sys':>5}"
          f"{'req/s vs empty':>22}{'vs none':>8}{'p99 vs empty':>21}{'cpu vs empty':>21}")
    for variant in variants.values():
        rps, p50, p99, cpu, system = (statistics.median(variant.column(i)) for i in range(5))
        line = f"{variant.name:<9}{rps:>7.0f}{p50:>8.2f}{p99:>8.2f}{cpu:>11.0f}{system:>5.0f}"
        line += f"{spread(variant, 0):>22}"
        if none is not None and variant.name != "empty":
            # both against the empty runs of the same round: their quotient compares them
            vs_none = statistics.median(a / b for a, b in zip(
                variant.ratios(0), none.ratios(0), strict=True))
            line += f"{vs_none:>8.3f}"
        elif none is not None:
            line += f"{statistics.median(1 / r for r in none.ratios(0)):>8.3f}"
        else:
            line += f"{'-':>8}"
        line += f"{spread(variant, 2):>21}{spread(variant, 3):>21}"
        print(line)


def run_variant(variant: Variant, seconds: int, label: str) -> Run:
    assert variant.process is not None
    run = measure(variant.port, seconds, variant.process.pid)
    variant.runs.append(run)
    rps, p50, p99, cpu, system = run
    print(f"{label} {variant.name:<9} {rps:8.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
          f"cpu {cpu:6.0f} us/req (sys {system:4.0f})", flush=True)
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4, help="fresh processes each")
    parser.add_argument("--rounds", type=int, default=3, help="per epoch")
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--variants", default="none,empty,empty-b,ipfix,netflow9,two,dead")
    # the helper processes (class Helper), by the argument that starts one
    roles = {"--serve-upstream": serve_upstream, "--serve-sink": serve_sink,
             "--serve-tcp-echo": serve_tcp_echo, "--serve-dns": serve_dns}
    parser.add_argument("role", nargs="?", choices=tuple(roles), help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if len(sys.argv) == 2 and sys.argv[1] in roles:
        roles[sys.argv[1]]()
        return 0
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (Debian: apt-get install wrk util-linux)")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores: mitmdump on one, load and upstream on the other")
    os.sched_setaffinity(0, {1})  # this process, the upstream and the sinks live on core 1
    upstream = Helper("--serve-upstream")
    sinks = [Helper("--serve-sink"), Helper("--serve-sink")]
    names = args.variants.split(",")
    if "empty" not in names:
        sys.exit("the variants must include `empty`: every ratio is taken against it")
    variants = {name: Variant(name) for name in names}
    others = [name for name in names if name != "empty"]
    with tempfile.TemporaryDirectory() as confdir:
        empty = Path(confdir) / "empty.py"
        empty.write_text("# hosts no addon: the cost of loading a script at all\n")
        for epoch in range(args.epochs):
            try:
                for variant in variants.values():
                    variant.process, variant.port = start_mitmdump(
                        variant.name, upstream.port, sinks, confdir, empty)
                for round_index in range(args.rounds):
                    shift = (epoch * args.rounds + round_index) % max(len(others), 1)
                    label = f"epoch {epoch + 1} round {round_index + 1}"
                    before = run_variant(variants["empty"], args.seconds, label)
                    for name in others[shift:] + others[:shift]:
                        variant = variants[name]
                        run = run_variant(variant, args.seconds, label)
                        after = run_variant(variants["empty"], args.seconds, label)
                        variant.relative.append(relative(run, before, after))
                        before = after
            finally:
                stop([v.process for v in variants.values() if v.process is not None])
    received = sum(int(sink.finish() or 0) for sink in sinks)
    upstream.process.kill()
    report(variants, args.epochs, args.rounds, args.seconds, received)
    return 0


if __name__ == "__main__":
    sys.exit(main())
