"""Soak: mitmdump with the addon under steady load for minutes, sampling its resources.

    .venv/bin/python -m benchmarks.soak --minutes 10

Every `--every` seconds it records mitmdump's RSS, open file descriptors, sockets and the
task count from the addon's statistics line, while wrk keeps 20 connections busy
through a reverse proxy to a local upstream; IPFIX goes to a local sink. At the end it
prints the samples and the growth between the first sample after warm-up and the last;
it exits 1 if RSS grew more than --max-rss-growth MiB or descriptors or tasks grew.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.proxy import MITMDUMP, ROOT, Helper, free_port


def sample(pid: int) -> tuple[float, int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]
    fds = list(Path(f"/proc/{pid}/fd").iterdir())
    sockets = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            sockets += str(fd.readlink()).startswith("socket:")
    return rss, len(fds), sockets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--every", type=float, default=30)
    parser.add_argument("--max-rss-growth", type=float, default=32)
    args = parser.parse_args()
    upstream = Helper("--serve-upstream")
    sink = Helper("--serve-sink")
    port = free_port()
    with tempfile.TemporaryDirectory() as confdir:
        log_path = Path(confdir) / "mitmdump.log"
        with log_path.open("w") as log:
            proxy = subprocess.Popen(
                [str(MITMDUMP), "--set", "flow_detail=0", "--listen-host", "127.0.0.1",
                 "-p", str(port),
                 "--mode", f"reverse:http://127.0.0.1:{upstream.port}",
                 "--set", f"confdir={confdir}", "-s", str(ROOT / "addon" / "flowexport.py"),
                 "--set", f"flowexport_collectors=127.0.0.1:{sink.port}",
                 "--set", "flowexport_statistics_interval_s=5"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until mitmdump listens
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        seconds = int(args.minutes * 60)
        load = subprocess.Popen(["wrk", "-t1", "-c20", f"-d{seconds}s",
                                 f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, text=True)
        samples = []
        started = time.monotonic()
        while load.poll() is None:
            time.sleep(args.every)
            rss, fds, sockets = sample(proxy.pid)
            tasks = re.findall(r"(\d+) tasks", log_path.read_text())
            samples.append((time.monotonic() - started, rss, fds, sockets,
                            int(tasks[-1]) if tasks else -1))
            print(f"{samples[-1][0]:6.0f} s  rss {rss:7.1f} MiB  fds {fds:4d}  sockets "
                  f"{sockets:4d}  tasks {samples[-1][4]}", flush=True)
        proxy.terminate()
        proxy.wait(timeout=30)
        lines = [line for line in log_path.read_text().splitlines() if "flowexport:" in line]
    print(load.stdout.read() if load.stdout else "")
    print(lines[-1] if lines else "no statistics line")
    sink.finish()
    upstream.process.kill()
    if len(samples) < 3:
        print("too short to judge")
        return 0
    first, last = samples[1], samples[-1]  # samples[0] is still warming up
    growth = (last[1] - first[1], last[2] - first[2], last[3] - first[3], last[4] - first[4])
    print(f"growth from {first[0]:.0f} s to {last[0]:.0f} s: rss {growth[0]:+.1f} MiB, "
          f"fds {growth[1]:+d}, sockets {growth[2]:+d}, tasks {growth[3]:+d}")
    ok = growth[0] <= args.max_rss_growth and growth[1] <= 2 and growth[3] <= 2
    print("steady" if ok else "GROWING")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
