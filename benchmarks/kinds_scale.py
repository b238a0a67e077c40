"""Streams at scale: 10,000 concurrent UDP flows, and one TCP stream of gigabytes, through
mitmdump with an empty script and with the addon, side by side in one run.

    .venv/bin/python -m benchmarks.kinds_scale                       # about 25 minutes
    .venv/bin/python -m benchmarks.kinds_scale --flows 2000 --tcp-gib 0.5 --rounds 1
    .venv/bin/python -m benchmarks.kinds_scale --output benchmarks/results/kinds-scale.txt

The issue asks for a defined result for "a TCP stream of 10 GB (counters do not wrap and
interim records keep coming) and 10,000 concurrent UDP flows (memory bounded: say how)".
Both are about memory, and the proxy itself holds far more per flow than the addon does,
so every number is taken twice, with the empty script (the baseline: what mitmproxy
holds) and with the addon (IPFIX to a collector in this process that decodes every
datagram with the project's decoder), and the addon's share is the difference. That
difference is within the noise of RSS (a few kilobytes per flow), so it is also taken
from Python's own accounting: mitmdump's Python heap by tracemalloc (a script loaded
first, read on SIGUSR1) with `--traced-flows` UDP flows open, in all and allocated by
the project's code; and the addon's table of open streams alone, in this process.

UDP (`reverse:udp://` to a UDP echo): one client socket per flow, each bound to its own
port, sends a datagram and reads the echo; mitmproxy makes each client address:port a
flow of its own, with its own upstream socket, and ends it 20 s after its last datagram.
mitmdump opens only about 150-350 new flows a second on this machine, so 10,000 take
longer than the 20 s window: while opening, every flow whose last echo is
`--keepalive-s` old gets one more datagram, so all of them are alive at the peak
(checked: mitmdump's descriptors grow by one upstream socket per flow, and no flow had
been silent for 20 s). Datagrams go out through a window of `--window` unanswered ones (a
burst of hundreds overflows the proxy's socket buffer), and one unanswered for 2 s is
sent again. Each mitmdump first sees 50 warm-up flows come and go, then `--waves` sets of
`--flows` flows one after the other, each set from its own loopback address (see
UDP_SOURCES); RSS (VmRSS) is read before each set, at its peak, and after mitmdump ended
all of its flows. The later waves show whether memory is reused or keeps growing. With
the addon, exactly one final record per flow must arrive, ended by idle timeout, its
datagram and octet counts (over any interim records) equal to what was echoed.

TCP (`reverse:tcp://` to a discard server, or `--tcp-upstream echo`): one connection sends
`--tcp-gib` GiB in 1 MiB writes with `flowexport_active_timeout_s` at 2. mitmproxy keeps
every message of a TCP flow in `flow.messages` until the flow ends (its behaviour, not the
addon's), so RSS grows with the bytes relayed in both variants; the difference between
them is the addon's. Checks: interim records arrive all through the transfer (none late
by more than twice the active timeout plus a second), their initiatorOctets and the final
record's add up to exactly the bytes sent (a total above 2**32 when --tcp-gib is over 4:
the sum of deltas then shows that no counter wrapped at 32 bits), and the upstream
received every byte. Before it starts, the run refuses a size whose expected RSS exceeds
half of MemAvailable, and kills mitmdump if MemAvailable falls below 1 GiB.

Memory is read from /proc/PID/status (VmRSS, and VmHWM for the peak of the transfer),
which counts what the allocator holds, not what Python objects use: freed memory mostly
stays in the process, which is why "after" is not back at "before". Exits 1 if any check
failed. Loopback only (127.0.0.0/8).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import os
import re
import resource
import select
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import types
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchmarks.proxy import MITMDUMP, ROOT, free_port, free_udp_port
from ipfix.collector import SequenceTracker
from ipfix.connection_record import FlowKind
from ipfix.decoder import Decoder
from ipfix.errors import DecodeError
from ipfix.termination import FlowEndReason, Termination

ADDON = ROOT / "addon" / "flowexport.py"
UDP_IDLE_S = 20  # mitmproxy.proxy.server.UDP_TIMEOUT
UDP_PAYLOAD = b"k" * 32
WARMUP_FLOWS = 50
# Each set of flows sends from its own loopback address. mitmproxy_rs (0.12) keeps each
# client address:port it has seen until 60 s pass without a datagram from it, and drops
# the datagrams of one whose flow mitmproxy already ended (after 20 s of silence): a new
# socket that happened to get a port used a moment earlier would never become a flow.
WARMUP_SOURCE = "127.0.0.2"
UDP_SOURCES = tuple(f"127.0.0.{n}" for n in range(3, 20))
RETRY_S = 2.0
MAX_SENDS_PER_FLOW = 6  # a flow that got no echo after this many tries is given up
CHUNK = 1 << 20
MIB = 1 << 20
GIB = 1 << 30
MEMORY_FLOOR_MIB = 1024  # MemAvailable below this during the transfer: mitmdump is killed
VARIANTS = ("empty", "addon")

Record = dict[str, Any]


# --- what /proc says ---------------------------------------------------------------------

def _status_kib(pid: int, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(),
                      re.MULTILINE)
    assert match, key
    return int(match.group(1))


def rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


def hwm_mib(pid: int) -> float:
    """The highest RSS of the process so far."""
    return _status_kib(pid, "VmHWM") / 1024


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def mem_available_mib() -> float:
    match = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(),
                      re.MULTILINE)
    assert match
    return int(match.group(1)) / 1024


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# --- the collector, the upstreams, mitmdump ------------------------------------------------

class Collector:
    """A collector in this process: decodes every IPFIX datagram with the project's decoder
    as it arrives (a thread), keeps each data record with its arrival time, and counts
    records lost by sequence number and datagrams that did not decode."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.decoder = Decoder(strict_text=True)
        self.sequences = SequenceTracker()
        self.records: list[tuple[float, Record]] = []  # (time.monotonic() of arrival, fields)
        self.datagrams = 0
        self.undecodable = 0
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            arrived = time.monotonic()
            self.datagrams += 1
            try:
                message = self.decoder.decode(data, peer)
            except DecodeError:
                self.undecodable += 1
                continue
            self.sequences.observe(peer, message)
            with self._lock:
                self.records += [(arrived, r.fields) for r in message.records
                                 if not r.is_options]

    def where(self, predicate: Callable[[Record], bool]) -> list[tuple[float, Record]]:
        with self._lock:
            return [(t, r) for t, r in self.records if predicate(r)]

    @property
    def lost(self) -> int:
        return sum(self.sequences.lost.values())

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=2)
        self.sock.close()


class UdpEcho:
    """Sends every datagram back where it came from (a thread: mitmdump, not this, is the
    bottleneck)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
                self.sock.sendto(data, peer)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


class TcpUpstream:
    """The upstream of the long TCP stream: counts what arrives and, when `echo`, sends it
    back. It takes one connection and closes it after the client's end of stream."""

    def __init__(self, echo: bool) -> None:
        self.echo = echo
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.received = 0
        self.finished = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        with conn:
            while size := conn.recv_into(buffer):
                self.received += size
                if self.echo:
                    conn.sendall(view[:size])
        self.finished.set()

    def close(self) -> None:
        self.server.close()


class Mitmdump:
    """mitmdump in one reverse mode with the empty script or the addon, its log in a file.
    flow_detail=0 and no -q: flows print nothing, and the addon's statistics line shows."""

    def __init__(self, variant: str, mode: str, listen_port: int, workdir: Path,
                 options: Sequence[str] = (), first_script: Path | None = None) -> None:
        empty = workdir / "empty.py"
        empty.write_text('"""An empty script: what hosting a script costs, nothing more."""\n')
        self.log_path = workdir / f"mitmdump-{variant}-{listen_port}.log"
        command = [str(MITMDUMP), "--set", "flow_detail=0", "--set", f"confdir={workdir}",
                   "--mode", mode]
        if first_script is not None:
            command += ["-s", str(first_script)]
        command += ["-s", str(ADDON if variant == "addon" else empty)]
        if variant == "addon":
            command += ["--set", "flowexport_statistics_interval_s=5"]
            for option in options:
                command += ["--set", option]
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.pid = self.process.pid
        listening = f"listening at 127.0.0.1:{listen_port}."
        if not wait_until(lambda: self.process.poll() is not None or listening in self.log(),
                          timeout=60) or self.process.poll() is not None:
            self.process.kill()
            raise RuntimeError(f"mitmdump ({variant}) did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> str:
        """Stops it (SIGINT: the addon flushes) and returns its last statistics line."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        lines = [line for line in self.log().splitlines() if "flowexport:" in line
                 and " records, " in line]
        return lines[-1].strip() if lines else ""


def stats_field(line: str, name: str) -> int:
    """A count from the addon's statistics line ("... 0 dropped, ..."), -1 if absent."""
    match = re.search(rf"(\d+) {name}", line)
    return int(match.group(1)) if match else -1


# --- 10,000 UDP flows ---------------------------------------------------------------------

class UdpFlows:
    """`count` client sockets bound to `source`, each its own flow through the proxy at
    `target`, driven by one epoll loop: at most `window` datagrams unanswered, unanswered
    ones sent again after RETRY_S, and flows kept alive while the others open."""

    def __init__(self, count: int, source: str, target: tuple[str, int]) -> None:
        self.source = source
        self.target = target
        self.sockets: list[socket.socket] = []
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((source, 0))
            sock.setblocking(False)
            self.sockets.append(sock)
        self.ports = [int(s.getsockname()[1]) for s in self.sockets]
        self.index = {s.fileno(): i for i, s in enumerate(self.sockets)}
        self.poll = select.epoll()
        for sock in self.sockets:
            self.poll.register(sock.fileno(), select.EPOLLIN)
        self.sent = [0] * count
        self.echoed = [0] * count
        self.last_echo = [0.0] * count  # time.monotonic()
        self.waiting: dict[int, float] = {}  # flow -> when its unanswered datagram left
        self.touched: deque[tuple[float, int]] = deque()  # (echo time, flow), oldest first
        self.opened = 0
        self.retries = 0
        self.keepalives = 0
        self.given_up = 0

    def _send(self, flow: int, now: float) -> None:
        self.sockets[flow].sendto(UDP_PAYLOAD, self.target)
        self.sent[flow] += 1
        self.waiting[flow] = now

    def drain(self, timeout: float) -> None:
        """Reads every echo that is there (waiting up to `timeout` for the first)."""
        for fd, _ in self.poll.poll(timeout):
            flow = self.index[fd]
            sock = self.sockets[flow]
            while True:
                try:
                    sock.recv(65535)
                except BlockingIOError:
                    break
                now = time.monotonic()
                if self.echoed[flow] == 0:
                    self.opened += 1
                self.echoed[flow] += 1
                self.last_echo[flow] = now
                self.waiting.pop(flow, None)
                self.touched.append((now, flow))

    def open_all(self, window: int, keepalive_s: float, limit_s: float = 600) -> bool:
        """Until every flow has had an echo: resends first, then keep-alives of flows
        whose last echo is `keepalive_s` old, then new flows, `window` at a time. False if
        that took longer than `limit_s` (on a busy machine the keep-alives of the flows
        already open can take all the proxy has, and opening would never end)."""
        count = len(self.sockets)
        next_new = 0
        deadline = time.monotonic() + limit_s
        while self.opened + self.given_up < count:
            now = time.monotonic()
            if now > deadline:
                return False
            for flow, since in list(self.waiting.items()):
                if now - since > RETRY_S:
                    if self.sent[flow] >= MAX_SENDS_PER_FLOW and self.echoed[flow] == 0:
                        del self.waiting[flow]
                        self.given_up += 1
                    else:
                        self.retries += 1
                        self._send(flow, now)
            while len(self.waiting) < window and self.touched and (
                    now - self.touched[0][0] > keepalive_s):
                echoed_at, flow = self.touched.popleft()
                if echoed_at == self.last_echo[flow] and flow not in self.waiting:
                    self.keepalives += 1
                    self._send(flow, now)
            while len(self.waiting) < window and next_new < count:
                self._send(next_new, now)
                next_new += 1
            self.drain(0.005)
        return True

    def oldest_echo_age(self) -> float:
        return time.monotonic() - min(t for t in self.last_echo if t) if self.opened else 0.0

    def close(self) -> None:
        self.poll.close()
        for sock in self.sockets:
            sock.close()


@dataclass
class UdpWave:
    """One set of `flows` flows on a mitmdump: opened together, then left to idle out."""

    source: str  # the loopback address all its clients send from
    flows: int
    rss_before: float = 0.0
    rss_peak: float = 0.0
    rss_after: float = 0.0
    fds_before: int = 0
    fds_peak: int = 0
    open_s: float = 0.0
    silent_at_peak_s: float = 0.0  # how long the longest-silent flow had been silent
    sent: int = 0
    echoed: int = 0
    retries: int = 0
    keepalives: int = 0
    final_records: int = 0
    interim_records: int = 0
    end_reasons: dict[str, int] = field(default_factory=dict)  # flowEndReason of final records
    problems: list[str] = field(default_factory=list)

    @property
    def growth(self) -> float:
        return self.rss_peak - self.rss_before


@dataclass
class UdpRun:
    variant: str
    waves: list[UdpWave] = field(default_factory=list)
    statistics: str = ""
    problems: list[str] = field(default_factory=list)


def run_udp(variant: str, flows: int, waves: int, window: int, keepalive_s: float,
            open_limit_s: float) -> UdpRun:
    """A fresh mitmdump; warm-up flows come and go; then `waves` times `flows` flows, each
    wave from its own source address (see UDP_SOURCES), opened together and left to end."""
    run = UdpRun(variant)
    echo = UdpEcho()
    collector = Collector()
    port = free_udp_port()
    target = ("127.0.0.1", port)
    with tempfile.TemporaryDirectory() as workdir:
        proxy = Mitmdump(variant, f"reverse:udp://127.0.0.1:{echo.port}@127.0.0.1:{port}",
                         port, Path(workdir),
                         [f"flowexport_collectors=127.0.0.1:{collector.port}"])
        try:
            baseline_fds = open_fds(proxy.pid)
            warm_up(target)
            # the warm-up flows end 20 s after their last datagram
            wait_until(lambda: open_fds(proxy.pid) <= baseline_fds, UDP_IDLE_S + 15, 0.5)
            time.sleep(1)
            for number in range(waves):
                wave = UdpWave(UDP_SOURCES[number], flows)
                one_wave(wave, proxy.pid, collector if variant == "addon" else None, target,
                         window, keepalive_s, open_limit_s)
                run.waves.append(wave)
        finally:
            run.statistics = proxy.stop()
            echo.close()
    if variant == "addon":
        time.sleep(0.3)
        if collector.lost or collector.undecodable:
            run.problems.append(f"collector: {collector.lost} records lost by sequence "
                                f"number, {collector.undecodable} datagrams undecodable")
        if stats_field(run.statistics, "dropped") != 0:
            run.problems.append(f"the addon dropped records: {run.statistics}")
    collector.close()
    return run


def warm_up(target: tuple[str, int]) -> None:
    """A few flows first, so first-use costs (lazy imports, caches, the exporter's
    templates) are not counted per flow; the caller lets them idle out."""
    warm = UdpFlows(WARMUP_FLOWS, WARMUP_SOURCE, target)
    warm.open_all(window=16, keepalive_s=UDP_IDLE_S)
    warm.close()


def one_wave(wave: UdpWave, pid: int, collector: Collector | None, target: tuple[str, int],
             window: int, keepalive_s: float, open_limit_s: float) -> None:
    """Opens the wave's flows, reads the peak, waits until mitmdump has ended them all,
    reads "after", and (with a collector) checks their records."""
    wave.rss_before, wave.fds_before = rss_mib(pid), open_fds(pid)
    clients = UdpFlows(wave.flows, wave.source, target)
    started = time.monotonic()
    if not clients.open_all(window, keepalive_s, limit_s=open_limit_s):
        wave.problems.append(f"opening took more than {open_limit_s:.0f} s: "
                             f"{clients.opened:,} of {wave.flows:,} flows open")
    wave.open_s = time.monotonic() - started
    wave.rss_peak, wave.fds_peak = rss_mib(pid), open_fds(pid)
    wave.silent_at_peak_s = clients.oldest_echo_age()
    if clients.given_up:
        wave.problems.append(f"{clients.given_up} flows got no echo after "
                             f"{MAX_SENDS_PER_FLOW} datagrams")
    if wave.fds_peak - wave.fds_before < wave.flows:  # one upstream socket per open flow
        wave.problems.append(f"only {wave.fds_peak - wave.fds_before} upstream sockets at "
                             f"the peak: not all {wave.flows} flows were alive")

    def all_ended() -> bool:  # now silent: every flow ends 20 s after its last datagram
        clients.drain(0)  # late echoes, if any, still count
        return open_fds(pid) <= wave.fds_before

    if not wait_until(all_ended, UDP_IDLE_S + 30, 0.5):
        wave.problems.append(f"{open_fds(pid) - wave.fds_before} flows still open "
                             f"{UDP_IDLE_S + 30} s after the last datagram")
    clients.drain(0)
    ports = {p: i for i, p in enumerate(clients.ports)}

    def ours(record: Record) -> bool:
        return (record.get("proxyFlowKind") == FlowKind.UDP_STREAM
                and record.get("sourceIPv4Address") == wave.source
                and record.get("sourceTransportPort") in ports)

    if collector is not None:
        wait_until(lambda: sum(map(is_final, (r for _, r in collector.where(ours))))
                   >= wave.flows, 15)
    time.sleep(2)
    wave.rss_after = rss_mib(pid)
    wave.sent, wave.echoed = sum(clients.sent), sum(clients.echoed)
    wave.retries, wave.keepalives = clients.retries, clients.keepalives
    if collector is not None:
        check_udp_records(wave, collector.where(ours), ports, clients)
    clients.close()


def is_final(record: Record) -> bool:
    """A stream's last record (its earlier ones are interim: active timeout)."""
    return bool(record["flowEndReason"] != FlowEndReason.ACTIVE_TIMEOUT)


def check_udp_records(wave: UdpWave, records: list[tuple[float, Record]],
                      ports: dict[int, int], clients: UdpFlows) -> None:
    """One final record per flow, ended by idle timeout, and per flow the datagrams and
    octets each way (over its interim records and the final one) equal to what was echoed."""
    by_port: dict[int, list[Record]] = {}
    for _, record in records:
        by_port.setdefault(record["sourceTransportPort"], []).append(record)
    finals = [r for _, r in records if is_final(r)]
    wave.final_records = len(finals)
    wave.interim_records = len(records) - len(finals)
    wave.end_reasons = dict(Counter(FlowEndReason(r["flowEndReason"]).name for r in finals))
    if len(finals) != wave.flows:
        wave.problems.append(f"{len(finals)} final records for {wave.flows} flows")
    final_counts = Counter(sum(map(is_final, by_port.get(p, []))) for p in ports)
    if set(final_counts) != {1}:
        wave.problems.append(f"flows by their number of final records: {dict(final_counts)}")
    not_idle = [r for r in finals
                if r["flowTerminationStateCode"] != Termination.IDLE_TIMEOUT]
    if not_idle:
        wave.problems.append(f"{len(not_idle)} final records not ended by idle timeout, "
                             f"e.g. {not_idle[0]}")
    mismatched = []
    size = len(UDP_PAYLOAD)
    for port, flow in ports.items():
        got = by_port.get(port, [])
        echoed = clients.echoed[flow]
        counted = (sum(r["initiatorMessages"] for r in got),
                   sum(r["responderMessages"] for r in got),
                   sum(r["initiatorOctets"] for r in got), sum(r["responderOctets"] for r in got))
        if got and counted != (echoed, echoed, echoed * size, echoed * size):
            mismatched.append((port, clients.sent[flow], echoed, counted))
    if mismatched:
        wave.problems.append(f"{len(mismatched)} flows whose counts differ from the echoes "
                             f"(port, datagrams sent, echoed, recorded messages and octets "
                             f"each way): {mismatched[:5]}")


# --- one long TCP stream ------------------------------------------------------------------

@dataclass
class TcpRun:
    variant: str
    total: int
    upstream: str
    rss_before: float = 0.0
    rss_peak: float = 0.0  # VmHWM at the end of the transfer
    rss_after: float = 0.0  # after the flow ended
    seconds: float = 0.0
    received_upstream: int = 0
    echoed: int = 0
    records: int = 0
    interim_during: int = 0
    largest_gap_s: float = 0.0
    initiator_sum: int = 0
    responder_sum: int = 0
    initiator_messages: int = 0  # the messages mitmproxy kept in flow.messages, from the client
    statistics: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def growth(self) -> float:
        return self.rss_peak - self.rss_before


class MemoryGuard:
    """Samples MemAvailable while the stream runs; kills mitmdump below the floor."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tripped = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            if mem_available_mib() < MEMORY_FLOOR_MIB:
                self.tripped = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_tcp(variant: str, total: int, echo: bool, active_timeout_s: int) -> TcpRun:
    run = TcpRun(variant, total, "echo" if echo else "discard")
    upstream = TcpUpstream(echo)
    collector = Collector()
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        proxy = Mitmdump(variant, f"reverse:tcp://127.0.0.1:{upstream.port}@127.0.0.1:{port}",
                         port, Path(workdir),
                         [f"flowexport_collectors=127.0.0.1:{collector.port}",
                          f"flowexport_active_timeout_s={active_timeout_s}"])
        guard = MemoryGuard(proxy.pid)
        try:
            time.sleep(1)
            run.rss_before = rss_mib(proxy.pid)
            conn = socket.create_connection(("127.0.0.1", port), timeout=60)
            local_port = conn.getsockname()[1]
            back = [0]

            def read_back() -> None:
                while data := conn.recv(CHUNK):
                    back[0] += len(data)

            reader = threading.Thread(target=read_back, daemon=True)
            reader.start()
            payload = memoryview(os.urandom(CHUNK))
            started = time.monotonic()
            sent = 0
            while sent < total:
                size = min(CHUNK, total - sent)
                conn.sendall(payload[:size])
                sent += size
            ended = time.monotonic()
            run.seconds = ended - started
            conn.shutdown(socket.SHUT_WR)
            reader.join(timeout=120)  # mitmdump closes the client when the upstream closed
            conn.close()
            upstream.finished.wait(timeout=60)
            run.received_upstream, run.echoed = upstream.received, back[0]
            run.rss_peak = hwm_mib(proxy.pid)

            def ours(record: Record) -> bool:
                return (record.get("proxyFlowKind") == FlowKind.TCP_STREAM
                        and record.get("sourceTransportPort") == local_port)

            if variant == "addon":
                wait_until(lambda: any(is_final(r) for _, r in collector.where(ours)), 30)
            time.sleep(2)
            run.rss_after = rss_mib(proxy.pid)
            if variant == "addon":
                check_tcp_records(run, collector.where(ours), started, ended, active_timeout_s,
                                  sent)
        finally:
            guard.stop()
            if guard.tripped:
                run.problems.append(f"MemAvailable fell below {MEMORY_FLOOR_MIB} MiB: "
                                    f"mitmdump killed")
            run.statistics = proxy.stop()
            upstream.close()
    if sent != total or run.received_upstream != total:
        run.problems.append(f"sent {sent}, upstream received {run.received_upstream} of {total}")
    if echo and run.echoed != total:
        run.problems.append(f"echoed {run.echoed} of {total}")
    if variant == "addon":
        time.sleep(0.3)
        if collector.lost or collector.undecodable:
            run.problems.append(f"collector: {collector.lost} records lost by sequence "
                                f"number, {collector.undecodable} datagrams undecodable")
        if stats_field(run.statistics, "dropped") != 0:
            run.problems.append(f"the addon dropped records: {run.statistics}")
    collector.close()
    return run


def check_tcp_records(run: TcpRun, records: list[tuple[float, Record]], started: float,
                      ended: float, active_timeout_s: int, sent: int) -> None:
    """Interim records all through the transfer, one final record, one flowId, and the
    deltas adding up to the bytes sent (and echoed) exactly."""
    run.records = len(records)
    interim = [t for t, r in records if not is_final(r)]
    finals = [r for _, r in records if is_final(r)]
    during = sorted(t for t in interim if started <= t <= ended)
    run.interim_during = len(during)
    marks = [started, *during, ended]
    run.largest_gap_s = max(b - a for a, b in itertools.pairwise(marks))
    run.initiator_sum = sum(r["initiatorOctets"] for _, r in records)
    run.responder_sum = sum(r["responderOctets"] for _, r in records)
    run.initiator_messages = sum(r["initiatorMessages"] for _, r in records)
    if run.largest_gap_s > 2 * active_timeout_s + 1:
        run.problems.append(f"{run.largest_gap_s:.1f} s without an interim record during the "
                            f"transfer (active timeout {active_timeout_s} s)")
    if len(finals) != 1 or (finals[0]["flowEndReason"], finals[0]["flowTerminationStateCode"]
                            ) != (FlowEndReason.END_OF_FLOW, Termination.COMPLETED):
        run.problems.append(f"final records (one expected, end of flow, completed): {finals}")
    if len({r["flowId"] for _, r in records}) != 1:
        run.problems.append("the records of the stream have different flowIds")
    if run.initiator_sum != sent:
        run.problems.append(f"initiatorOctets add up to {run.initiator_sum}, sent {sent} "
                            f"(difference {run.initiator_sum - sent})")
    echoed = sent if run.upstream == "echo" else 0
    if run.responder_sum != echoed:
        run.problems.append(f"responderOctets add up to {run.responder_sum}, expected {echoed}")
    if any(r["octetDeltaCount"] != r["initiatorOctets"] + r["responderOctets"]
           for _, r in records):
        run.problems.append("a record whose octetDeltaCount is not initiator + responder")


# --- the addon's table, measured directly -------------------------------------------------

def table_bytes_per_stream(count: int) -> tuple[float, float, float]:
    """What the addon's table of open streams (mitmflows.streams.OpenStreams) holds per
    stream, by tracemalloc in this process: just started; after 300 messages each way, an
    interim record, and 300 more (the worst case: each of the eight counters its own int
    object beyond the small-int cache); and after every stream ended. RSS differences
    between two mitmdumps cannot resolve a few hundred bytes per flow beside mitmproxy's
    tens of kilobytes; this can. The flows are mitmproxy's own test flows, made before
    counting starts."""
    sys.path.insert(0, str(ROOT / "addon"))  # where mitmdump -s finds the addon's package
    from mitmproxy.test import tflow  # noqa: PLC0415 (test helpers: only here)

    from mitmflows.streams import OpenStreams  # noqa: PLC0415 (needs the path above)

    flows = [tflow.tudpflow() for _ in range(count)]
    table = OpenStreams()
    record: Any = types.SimpleNamespace()  # take_deltas only sets its counters
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for flow in flows:
        table.start(flow, 0)
    started = tracemalloc.get_traced_memory()[0] - base
    for entry in table.entries.values():
        for interval in range(2):
            for _ in range(300):
                entry.count(True, 1000, time.time())
                entry.count(False, 1000, time.time())
            if interval == 0:
                entry.take_deltas(record)
    del record
    counted = tracemalloc.get_traced_memory()[0] - base
    for flow in flows:
        table.pop(flow.id)
    ended = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return started / count, counted / count, ended / count


# --- the Python heap inside mitmdump, by tracemalloc --------------------------------------

# Loaded before the empty script or the addon: traces Python's allocations from then on,
# and on SIGUSR1 logs what is allocated now, in all and by code in addon/ or ipfix/ (its
# handler replaces mitmdump's own for SIGUSR1, a dump of debug information).
TRACE_SCRIPT = """
import asyncio, logging, signal, tracemalloc
tracemalloc.start(1)
OURS = ({addon!r}, {ipfix!r})

def report():
    stats = tracemalloc.take_snapshot().statistics("filename")
    ours = sum(s.size for s in stats if s.traceback[0].filename.startswith(OURS))
    logging.warning(f"TRACED {{sum(s.size for s in stats)}} {{ours}}")

def running():
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, report)
"""


@dataclass
class TracedRun:
    variant: str
    flows: int
    total_per_flow: float = 0.0  # bytes of Python heap per open flow, all code
    ours_per_flow: float = 0.0  # of which allocated by code in addon/ or ipfix/
    problems: list[str] = field(default_factory=list)


def run_traced(variant: str, flows: int, window: int, keepalive_s: float) -> TracedRun:
    """The Python heap of mitmdump (tracemalloc) after warm-up flows came and went, and
    with `flows` UDP flows open: what each open flow holds in Python objects, the
    addon's among them, without the allocator's slack that RSS adds. tracemalloc slows
    mitmdump down about threefold, hence fewer flows than the RSS waves."""
    run = TracedRun(variant, flows)
    echo = UdpEcho()
    collector = Collector()
    port = free_udp_port()
    target = ("127.0.0.1", port)
    with tempfile.TemporaryDirectory() as workdir:
        tracer = Path(workdir) / "trace_heap.py"
        tracer.write_text(TRACE_SCRIPT.format(addon=str(ROOT / "addon") + "/",
                                              ipfix=str(ROOT / "ipfix") + "/"))
        proxy = Mitmdump(variant, f"reverse:udp://127.0.0.1:{echo.port}@127.0.0.1:{port}",
                         port, Path(workdir),
                         [f"flowexport_collectors=127.0.0.1:{collector.port}"],
                         first_script=tracer)

        def traced() -> tuple[int, int]:
            before = proxy.log().count("TRACED ")
            proxy.process.send_signal(signal.SIGUSR1)
            wait_until(lambda: proxy.log().count("TRACED ") > before, 60)
            total, ours = re.findall(r"TRACED (\d+) (\d+)", proxy.log())[-1]
            return int(total), int(ours)

        try:
            baseline_fds = open_fds(proxy.pid)
            warm_up(target)
            wait_until(lambda: open_fds(proxy.pid) <= baseline_fds, UDP_IDLE_S + 15, 0.5)
            time.sleep(1)
            total_before, ours_before = traced()
            clients = UdpFlows(flows, UDP_SOURCES[0], target)
            if not clients.open_all(window, keepalive_s, limit_s=300):
                run.problems.append(f"only {clients.opened:,} of {flows:,} flows opened")
            total_peak, ours_peak = traced()
            if open_fds(proxy.pid) - baseline_fds < flows:
                run.problems.append("not all flows were open when the heap was traced")
            clients.close()
            run.total_per_flow = (total_peak - total_before) / flows
            run.ours_per_flow = (ours_peak - ours_before) / flows
        finally:
            proxy.stop()
            echo.close()
            collector.close()
    return run


# --- report ---------------------------------------------------------------------------------

UDP_HEADER = (f"{'variant':8} {'wave':>4} {'before':>7} {'peak':>7} {'growth':>7} "
              f"{'per flow':>9} {'after':>7} {'fds peak':>8} {'open s':>6} {'silent':>6} "
              f"{'datagrams':>9} {'retries':>7} {'final rec':>9} {'interim':>7}")


def udp_rows(run: UdpRun) -> list[str]:
    rows = []
    for number, wave in enumerate(run.waves, 1):
        addon = run.variant == "addon"
        rows.append(
            f"{run.variant:8} {number:4} {wave.rss_before:7.1f} {wave.rss_peak:7.1f} "
            f"{wave.growth:7.1f} {wave.growth * MIB / wave.flows:7,.0f} B "
            f"{wave.rss_after:7.1f} {wave.fds_peak:8,} {wave.open_s:6.1f} "
            f"{wave.silent_at_peak_s:5.1f}s {wave.echoed:9,} {wave.retries:7,} "
            f"{f'{wave.final_records:,}' if addon else '-':>9} "
            f"{f'{wave.interim_records:,}' if addon else '-':>7}")
    return rows


def udp_table(runs: list[UdpRun], flows: int) -> list[str]:
    lines = [f"{flows:,} concurrent UDP flows per wave (reverse:udp:// to a UDP echo), "
             f"RSS in MiB", UDP_HEADER]
    for run in runs:
        lines += udp_rows(run)
    empty = [r.waves[0].growth for r in runs if r.variant == "empty" and r.waves]
    addon = [r.waves[0].growth for r in runs if r.variant == "addon" and r.waves]
    if empty and addon:
        share = (statistics.median(addon) - statistics.median(empty)) * MIB / flows
        lines.append(f"the addon's share per open flow: {share:,.0f} bytes (median growth in "
                     f"wave 1 with the addon {statistics.median(addon):.1f} MiB minus with the "
                     f"empty script {statistics.median(empty):.1f} MiB, / {flows:,}); "
                     f"per round: " + ", ".join(f"{(a - e) * MIB / flows:,.0f} B"
                                                for e, a in zip(empty, addon, strict=False)))
    lines += ["  (before: RSS at the start of the wave, after warm-up flows came and went; "
              "peak: with all flows open; after: once",
              "  mitmdump had ended them all; silent: how long the longest-silent flow had "
              "been silent at the peak, under 20 s",
              "  or it would have ended; datagrams: echoed, keep-alives included)"]
    for run in runs:
        if run.variant == "addon":
            reasons = "; ".join(f"wave {n} {w.end_reasons}" for n, w in enumerate(run.waves, 1))
            lines.append(f"  addon: final records by flowEndReason: {reasons}; "
                         f"{run.statistics}")
    return lines


def udp_problems(run: UdpRun) -> list[str]:
    return run.problems + [f"wave {n}: {problem}" for n, wave in enumerate(run.waves, 1)
                           for problem in wave.problems]


def tcp_table(runs: list[TcpRun]) -> list[str]:
    run0 = runs[0]
    lines = [f"one TCP stream of {run0.total:,} bytes ({run0.total / GIB:.2f} GiB) through "
             f"reverse:tcp:// to a {run0.upstream} upstream, RSS in MiB",
             f"{'variant':8} {'before':>7} {'peak':>8} {'growth':>8} {'per GiB':>8} "
             f"{'after end':>9} {'MiB/s':>6} {'records':>7} {'interim':>7} {'max gap':>7} "
             f"{'sum initiatorOctets':>20}"]
    for run in runs:
        addon = run.variant == "addon"
        lines.append(
            f"{run.variant:8} {run.rss_before:7.1f} {run.rss_peak:8.1f} {run.growth:8.1f} "
            f"{run.growth / (run.total / GIB):8.1f} {run.rss_after:9.1f} "
            f"{run.total / MIB / max(run.seconds, 1e-9):6.0f} "
            f"{run.records if addon else '-':>7} {run.interim_during if addon else '-':>7} "
            f"{f'{run.largest_gap_s:.1f} s' if addon else '-':>7} "
            f"{f'{run.initiator_sum:,}' if addon else '-':>20}")
    empty = [r.growth for r in runs if r.variant == "empty"]
    addon_growth = [r.growth for r in runs if r.variant == "addon"]
    if empty and addon_growth:
        lines.append(f"the addon's share of the growth: "
                     f"{statistics.median(addon_growth) - statistics.median(empty):+.1f} MiB "
                     f"(the rest is mitmproxy keeping every message in flow.messages)")
    lines.append("  (peak: VmHWM at the end of the transfer; interim: records of "
                 "active timeout that arrived during the transfer; max gap: the longest "
                 "time without one, from its start to its end)")
    return lines


def code_version() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    changed = git("status", "--porcelain", "--", "addon", "ipfix")
    return git("rev-parse", "--short", "HEAD") + (
        " with uncommitted changes in addon/ or ipfix/" if changed else
        " (addon/ and ipfix/ as committed)")


def raise_fd_limit(needed: int) -> None:
    """This process holds a socket per flow, and so does mitmdump (its upstream sockets);
    mitmdump inherits the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} < {needed}: use fewer --flows")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=64,
                        help="datagrams unanswered at most (UDP)")
    parser.add_argument("--keepalive-s", type=float, default=15.0,
                        help="a datagram to every flow silent this long while others open")
    parser.add_argument("--open-limit-s", type=float, default=300,
                        help="give up opening the UDP flows after this long")
    parser.add_argument("--rounds", type=int, default=2,
                        help="UDP runs per variant, alternating empty and addon")
    parser.add_argument("--waves", type=int, default=2,
                        help="sets of --flows flows, one after the other, per UDP run")
    parser.add_argument("--traced-flows", type=int, default=1500,
                        help="UDP flows open while tracemalloc reads mitmdump's heap (0: skip)")
    parser.add_argument("--tcp-gib", type=float, default=4.5,
                        help="GiB sent on the TCP stream (above 4: a total beyond 2**32)")
    parser.add_argument("--tcp-upstream", choices=("discard", "echo"), default="discard")
    parser.add_argument("--active-timeout-s", type=int, default=2)
    parser.add_argument("--skip", choices=("udp", "tcp"), action="append", default=[])
    parser.add_argument("--output", type=Path, help="also write the report here")
    args = parser.parse_args()
    if not 1 <= args.waves <= len(UDP_SOURCES):
        parser.error(f"--waves: 1 to {len(UDP_SOURCES)}")
    if args.keepalive_s > UDP_IDLE_S - 3:
        parser.error(f"--keepalive-s must stay well under mitmproxy's {UDP_IDLE_S} s")
    total = int(args.tcp_gib * GIB)
    echo = args.tcp_upstream == "echo"
    if "tcp" not in args.skip:  # mitmdump holds what it relayed (twice with an echo)
        expected_mib = total * (2 if echo else 1) * 1.1 / MIB + 300
        available = mem_available_mib()
        if expected_mib > available / 2:
            raise SystemExit(f"--tcp-gib {args.tcp_gib}: mitmdump would hold about "
                             f"{expected_mib:,.0f} MiB, more than half of MemAvailable "
                             f"({available:,.0f} MiB); choose a smaller size")
    raise_fd_limit(args.flows + WARMUP_FLOWS + 1000)
    started = datetime.datetime.now(datetime.UTC)
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    say(f"# code: {code_version()}, {started:%Y-%m-%d %H:%M} UTC; "
        f"{shlex.join(['.venv/bin/python', '-m', 'benchmarks.kinds_scale', *sys.argv[1:]])}")
    say(f"# mitmproxy {version('mitmproxy')}, mitmproxy_rs {version('mitmproxy_rs')}, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, MemAvailable "
        f"{mem_available_mib():,.0f} MiB at the start")
    failed = False
    if "udp" not in args.skip:
        udp_runs = []
        for round_number in range(args.rounds):
            for variant in VARIANTS:
                print(f"UDP round {round_number + 1}, {variant} ...", flush=True)
                udp_run = run_udp(variant, args.flows, args.waves, args.window,
                                  args.keepalive_s, args.open_limit_s)
                udp_runs.append(udp_run)
                for line in [UDP_HEADER, *udp_rows(udp_run)]:
                    print(line, flush=True)
                for problem in udp_problems(udp_run):
                    print(f"  PROBLEM: {problem}", flush=True)
        say()
        for line in udp_table(udp_runs, args.flows):
            say(line)
        for udp_run in udp_runs:
            for problem in udp_problems(udp_run):
                say(f"  PROBLEM ({udp_run.variant}): {problem}")
                failed = True
    if "tcp" not in args.skip:
        tcp_runs = []
        for variant in VARIANTS:
            print(f"TCP {variant}: {total:,} bytes ...", flush=True)
            run = run_tcp(variant, total, echo, args.active_timeout_s)
            tcp_runs.append(run)
            print(tcp_table([run])[2], flush=True)
            for problem in run.problems:
                print(f"  PROBLEM: {problem}", flush=True)
        say()
        for line in tcp_table(tcp_runs):
            say(line)
        for run in tcp_runs:
            if run.variant == "addon":
                say(f"  addon: {run.initiator_messages:,} messages from the client (mean "
                    f"{run.initiator_sum / max(run.initiator_messages, 1):,.0f} bytes), each "
                    f"kept in flow.messages; {run.statistics}")
            for problem in run.problems:
                say(f"  PROBLEM ({run.variant}): {problem}")
                failed = True
    if args.traced_flows:
        traced_runs = []
        for variant in VARIANTS:
            print(f"Python heap by tracemalloc, {variant} ...", flush=True)
            traced_runs.append(run_traced(variant, args.traced_flows, args.window,
                                          args.keepalive_s))
        say()
        say(f"mitmdump's Python heap by tracemalloc, per open UDP flow "
            f"({args.traced_flows:,} flows open; RSS adds the allocator's slack and what "
            f"is not Python objects):")
        for traced_run in traced_runs:
            say(f"  {traced_run.variant:6} {traced_run.total_per_flow:9,.0f} B per flow, of "
                f"which allocated by addon/ and ipfix/ code {traced_run.ours_per_flow:6,.0f} B")
            for problem in traced_run.problems:
                say(f"  PROBLEM ({traced_run.variant}): {problem}")
                failed = True
        if len(traced_runs) == 2:
            say(f"  the addon's share: "
                f"{traced_runs[1].total_per_flow - traced_runs[0].total_per_flow:+,.0f} B "
                f"per open flow")
    started_b, counted_b, ended_b = table_bytes_per_stream(args.flows)
    say()
    say(f"the addon's table of open streams, by tracemalloc ({args.flows:,} entries): "
        f"{started_b:.0f} B per stream when it starts, {counted_b:.0f} B with every counter large, "
        f"{ended_b:.0f} B per former entry after all ended (the dict keeps its size)")
    say()
    say("every check passed" if not failed else "SOME CHECKS FAILED")
    if args.output:
        args.output.write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
