"""Instructions per request inside mitmdump, with and without the exporter (callgrind).

    .venv/bin/python -m benchmarks.instructions                  # about 8 minutes
    .venv/bin/python -m benchmarks.instructions --requests 500 --variants empty,two

Throughput on a shared machine drifts by 1-3% between runs, as much as the exporter
costs, so small changes cannot be told apart by `benchmarks.proxy` alone. Counting the
instructions mitmdump executes per request does not drift: the same work gives the same
count within a fraction of a percent (the A/A pair `empty`/`empty-b` shows how close).
Each variant's mitmdump (the same variants and sinks as `benchmarks.proxy`) runs under
valgrind's callgrind; after a warm-up the counters are zeroed, a fixed number of requests
goes through on 10 keep-alive connections, and after a second (so the exporter's batch
has run) the counters are read.

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
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.proxy import Helper, start_mitmdump, stop

CONNECTIONS = 10
FLUSH_MS = 10_000
TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def load(port: int, requests: int) -> None:
    """`requests` GETs over CONNECTIONS keep-alive connections, concurrently."""
    per_connection = [requests // CONNECTIONS + (i < requests % CONNECTIONS)
                      for i in range(CONNECTIONS)]
    failures: list[BaseException] = []

    def client(count: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            for _ in range(count):
                connection.request("GET", "/api/items?page=2", headers={
                    "User-Agent": "bench/1.0", "Accept": "*/*"})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in per_connection]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


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


def measure(variant: str, upstream: Helper, sinks: list[Helper], confdir: str,
            empty: Path, warmup: int, requests: int, keep: Path | None) -> float:
    """Instructions per request of one fresh mitmdump of `variant`."""
    out_dir = (keep or Path(confdir)) / variant
    out_dir.mkdir(parents=True)
    launcher = ("taskset", "-c", "0", "valgrind", "--tool=callgrind",
                f"--callgrind-out-file={out_dir}/callgrind.%p", sys.executable)
    # Under valgrind mitmdump is ~50 times slower: with the default flush interval the
    # exporter's batches would hold a few records, where at full speed they hold ~100.
    # A long interval lets batches fill up to the exporter's wake-up size instead.
    process, port = start_mitmdump(variant, upstream.port, sinks, confdir, empty,
                                   launcher=launcher, timeout_s=300,
                                   options=[f"flowexport_flush_interval_ms={FLUSH_MS}"])
    try:
        load(port, warmup)
        time.sleep(FLUSH_MS / 1000)  # the warm-up's records go before counting starts
        callgrind(process.pid, "--zero")
        load(port, requests)
        time.sleep(FLUSH_MS / 1000)  # the exporter's last batch and its datagrams
        callgrind(process.pid, "--dump")
        return instructions(out_dir, process.pid) / requests
    finally:
        stop([process])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=512, help="counted, per variant")
    parser.add_argument("--warmup", type=int, default=128)
    parser.add_argument("--variants", default="empty,empty-b,ipfix,netflow9,two,flowlines,"
                                               "hardump,savestream,jsonudp")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the callgrind dumps here (for callgrind_annotate)")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (Debian: apt-get install valgrind util-linux)")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores: mitmdump on one, load and upstream on the other")
    os.environ["PYTHONHASHSEED"] = "0"  # the same dict layouts in every mitmdump
    os.sched_setaffinity(0, {1})
    upstream = Helper("--serve-upstream")
    sinks = [Helper("--serve-sink"), Helper("--serve-sink")]
    counts: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as confdir:
            empty = Path(confdir) / "empty.py"
            empty.write_text("# hosts no addon: the cost of loading a script at all\n")
            for name in args.variants.split(","):
                counts[name] = measure(name, upstream, sinks, confdir, empty, args.warmup,
                                       args.requests, args.keep)
                print(f"{name:<9} {counts[name]:12,.0f} instructions/request", flush=True)
    finally:
        for sink in sinks:
            sink.finish()
        upstream.process.kill()
    base = counts.get("empty")
    print(f"\n{args.requests} requests per variant after {args.warmup} to warm up, "
          f"{CONNECTIONS} keep-alive connections, callgrind (user space only)")
    print(f"{'variant':<9}{'instr/request':>15}{'vs empty':>10}{'extra/request':>15}")
    for name, count in counts.items():
        line = f"{name:<9}{count:>15,.0f}"
        if base:
            line += f"{count / base:>10.4f}{count - base:>+15,.0f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
