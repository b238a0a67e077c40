"""The addon's own path per HTTP exchange, in instructions (callgrind), for one or more
checkouts side by side.

    .venv/bin/python -m benchmarks.addon_path                     # this checkout, ~6 min
    .venv/bin/python -m benchmarks.addon_path --checkout /tmp/old --checkout .
    .venv/bin/python -m benchmarks.addon_path --variants ipfix --shifts 0,300,1000

Why: `benchmarks.instructions` counts the whole of mitmdump, and there the same code
measured twice differs by up to ~10,000 instructions per request (timers and garbage
collection fall differently). A change of a few thousand needs the addon's path alone.

What runs: one Python process plays mitmproxy without a network. mitmproxy's Master and
addon manager, the script loaded through mitmproxy's script loader as `mitmdump -s` does,
the options of a reverse proxy; a pool of 10 completed HTTP/1.1 exchanges shaped like
those of `benchmarks.instructions` (one per keep-alive connection there). Each exchange's
events (requestheaders, request, responseheaders, response) go through the addon manager
as the proxy hands them over, then the event loop turns once (the addon builds its
records there); every 128 records the exporter's task wakes, encodes them and sends the
datagrams to UDP sockets of this process that nobody reads (the kernel drops what does
not fit; the sends cost what they cost). At the end the records since the last batch are
encoded too, so every record is paid for in full.

How it counts: each variant runs twice under callgrind, with N and 3N exchanges;
(I(3N) - I(N)) / 2N is the cost of one exchange: start-up, imports, the warm-up of
caches and the first templates fall out. `empty` (an empty script) is the driver's own
cost and mitmproxy's dispatch of the hooks (about 500,000 instructions: 4 events and 4
update events, each through the addon manager's generic machinery); each other variant
beside it is the addon's path: hooks, record, encoding and sending. Long flush, template
and statistics intervals keep the exporter's timers out of both runs: they go by the
wall clock, which callgrind stretches, so they would fire a different number of times.

Layout: the count is exact for one process, but not for the code alone. CPython finds a
type's attributes through a cache of 4096 entries indexed by the type's version tag and
the name's address; which lookups collide there depends on what was created before, and
a miss costs a walk of the type's MRO. Code that only adds modules, types or names moves
the count of an unchanged path that way: ten layouts of each of two commits spanned
2,800 and 4,600 instructions per exchange (IPFIX, about 593,000). `--shifts` shows it:
each value is a number of throwaway classes created before the script loads, i.e.
another layout; compare checkouts over several shifts, not at one.

Another checkout (a worktree of an older commit) runs with PYTHONPATH pointing at it
(its `ipfix`, with `_speedups` built in place, and its `addon/`), and this file is run by
path in it, so the measured process imports nothing of this checkout. Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mitmproxy import connection, eventsequence, hooks, http, master
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.addons.script import ScriptLoader
from mitmproxy.options import Options
from mitmproxy.proxy.mode_specs import ProxyMode

ROOT = Path(__file__).resolve().parents[1]
EXCHANGES = 10  # distinct flows, as the 10 keep-alive connections of benchmarks.instructions
UPSTREAM = 8000  # the reverse proxy's upstream port (nothing listens: no network here)
LISTEN = 8080
VARIANTS = "empty,ipfix,netflow9,two"
TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)
# no timer of the exporter's fires within a run: datagrams fill up to their size, and
# templates and statistics go at start only (and every 100 messages, the same each run)
QUIET = {"flowexport_flush_interval_ms": 3_600_000, "flowexport_template_refresh_s": 3600,
         "flowexport_statistics_interval_s": 3600}


# -- the measured process: run by path as `addon_path.py --child ...` ----------------------

def exchanges(now: float) -> list[Any]:
    """EXCHANGES completed GETs as mitmproxy has them in reverse mode (Host rewritten to
    the upstream), the request and response of `benchmarks.instructions`."""
    mode = ProxyMode.parse(f"reverse:http://127.0.0.1:{UPSTREAM}")
    flows = []
    for index in range(EXCHANGES):
        client = connection.Client(peername=("127.0.0.1", 40000 + index),
                                   sockname=("127.0.0.1", LISTEN), timestamp_start=now,
                                   proxy_mode=mode)
        server = connection.Server(address=("127.0.0.1", UPSTREAM),
                                   peername=("127.0.0.1", UPSTREAM),
                                   sockname=("127.0.0.1", 50000 + index), timestamp_start=now)
        flow = http.HTTPFlow(client, server, live=True)
        flow.request = http.Request(
            "127.0.0.1", UPSTREAM, b"GET", b"http", b"", b"/api/items?page=2", b"HTTP/1.1",
            http.Headers(((b"Host", f"127.0.0.1:{UPSTREAM}".encode()),
                          (b"Accept-Encoding", b"identity"), (b"User-Agent", b"bench/1.0"),
                          (b"Accept", b"*/*"))),
            b"", None, now, now + 0.0001)
        flow.response = http.Response(
            b"HTTP/1.1", 200, b"OK",
            http.Headers(((b"Content-Length", b"2"), (b"Content-Type", b"text/plain"))),
            b"ok", None, now + 0.0005, now + 0.0006)
        flows.append(flow)
    return flows


async def drive(script: Path, options: dict[str, Any], count: int) -> dict[str, Any]:
    """`count` exchanges through the addon manager with `script` loaded; what the addon
    counted, to check that every exchange became a record."""
    # mitmproxy's addon API carries few types: Any from here
    proxy: Any = master.Master(Options(), event_loop=asyncio.get_running_loop())
    scripts = ScriptLoader()  # type: ignore[no-untyped-call]
    # the proxy server's options (keep_host_header...); its servers start only in
    # Master.run, which never runs here
    proxy.addons.add(Proxyserver(), scripts)  # type: ignore[no-untyped-call]
    # as `mitmdump --mode ... --set NAME=VALUE -s SCRIPT`: the addon's options wait until
    # the script declares them; the loader loads it one loop turn later
    proxy.options.update(mode=[f"reverse:http://127.0.0.1:{UPSTREAM}"])
    proxy.options.update_defer(**options)
    proxy.options.update(scripts=[str(script)])
    while not scripts.addons[0].addons:
        await asyncio.sleep(0)
    await proxy.addons.trigger_event(hooks.RunningHook())  # type: ignore[no-untyped-call]
    flows = exchanges(time.time())
    for index in range(count):
        for event in eventsequence.iterate(flows[index % EXCHANGES]):
            await proxy.addons.handle_lifecycle(event)
        await asyncio.sleep(0)  # one turn: the records of this turn's exchanges are built
    exporter = getattr(getattr(scripts.addons[0].ns, "_addon", None), "exporter", None)
    if exporter is not None:
        # The records since the last batch (under 128; how many depends on where batches
        # fell) are encoded too, as the exporter's batch timer would have them, so that
        # every record costs its encoding in both runs. wait_sent wakes the task; it would
        # go on to wait for the flush interval, so it stops when the queue is empty.
        flushing = asyncio.ensure_future(exporter.wait_sent())
        while exporter.queued:
            await asyncio.sleep(0)
        flushing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flushing
    stats = exporter.statistics if exporter is not None else None
    return {"records": stats.records if stats else 0, "dropped": stats.dropped if stats else 0,
            "datagrams": stats.datagrams if stats else 0,
            "ipfix": getattr(sys.modules.get("ipfix"), "__file__", None)}


def shift_layout(classes: int) -> list[type]:
    """Throwaway classes, each looked up once, made before the script loads: every later
    type gets another version tag and every later object another address. CPython's type
    attribute cache (4096 entries) is indexed by both, so which lookups collide there,
    and miss, changes: a few thousand instructions per exchange (see --shifts)."""
    made = []
    for index in range(classes):
        cls = type(f"Shift{index}", (), {"attribute": index})
        getattr(cls, "attribute")  # noqa: B009 (a lookup gives the type its version tag)
        made.append(cls)
    return made


def child(script: Path, options: dict[str, Any], count: int, shift: int) -> None:
    kept = shift_layout(shift)
    print(json.dumps(asyncio.run(drive(script, options, count))), flush=True)
    del kept


# -- the harness -----------------------------------------------------------------------

def variant_options(variant: str, ports: list[int]) -> dict[str, Any]:
    collectors = {"ipfix": [f"127.0.0.1:{ports[0]}"],
                  "netflow9": [f"netflow9://127.0.0.1:{ports[1]}"],
                  "two": [f"127.0.0.1:{ports[0]}", f"netflow9://127.0.0.1:{ports[1]}"]}
    if variant == "empty":
        return {}
    return {"flowexport_collectors": collectors[variant.removesuffix("-python")], **QUIET}


def count_instructions(checkout: Path, variant: str, count: int, ports: list[int],
                       empty: Path, out_dir: Path, shift: int) -> int:
    """All instructions of one process driving `count` exchanges."""
    script = empty if variant == "empty" else checkout / "addon" / "flowexport.py"
    env = dict(os.environ, PYTHONHASHSEED="0",
               PYTHONPATH=os.pathsep.join((str(checkout), str(checkout / "addon"))))
    if variant.endswith("-python"):
        env["FLOWEXPORT_PURE_PYTHON"] = "1"
    out_file = out_dir / f"callgrind.{checkout.name}.{variant}.{shift}.{count}"
    result = subprocess.run(
        ["taskset", "-c", "0", "valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
         sys.executable, __file__, "--child", str(script),
         json.dumps(variant_options(variant, ports)), str(count), str(shift)],
        capture_output=True, text=True, env=env, cwd=checkout, check=True, timeout=3600)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if variant != "empty":  # every exchange a record, sent, by the checkout's own code
        if report["records"] != count or report["dropped"] or not report["datagrams"]:
            raise RuntimeError(f"{variant}: {report} for {count} exchanges")
        if not str(report["ipfix"]).startswith(str(checkout)):
            raise RuntimeError(f"{variant} ran {report['ipfix']}, not the code of {checkout}")
    return max(int(m) for m in TOTALS.findall(out_file.read_bytes()))


def commit_of(checkout: Path) -> str:
    result = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain",
                            "--untracked-files=no", "--", "addon", "ipfix"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return (result.stdout.strip() or "?") + ("+changes" if dirty else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", type=Path, action="append",
                        help="a checkout of the project to measure (repeat; default: this one)")
    parser.add_argument("--exchanges", type=int, default=1024, help="N: runs of N and 3N")
    parser.add_argument("--variants", default=VARIANTS, help=f"default: {VARIANTS}; "
                        "any with -python runs without the C building blocks")
    parser.add_argument("--shifts", default="0", help="comma-separated: throwaway classes "
                        "made first, each value a layout of its own (default 0); their "
                        "spread is what layout alone moves a count")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the callgrind dumps here (for callgrind_annotate)")
    args = parser.parse_args()
    for tool in ("valgrind", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (Debian: apt-get install valgrind util-linux)")
    checkouts = [c.resolve() for c in args.checkout or [ROOT]]
    for checkout in checkouts:
        if not (checkout / "addon" / "flowexport.py").is_file():
            sys.exit(f"{checkout}: no addon/flowexport.py")
    variants = args.variants.split(",")
    shifts = [int(shift) for shift in args.shifts.split(",")]
    small, large = args.exchanges, 3 * args.exchanges
    sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    per_exchange: dict[tuple[Path, int, str], float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = args.keep or Path(scratch)
        out_dir.mkdir(parents=True, exist_ok=True)
        empty = Path(scratch) / "empty.py"
        empty.write_text("# hosts no addon: the driver's and mitmproxy's own cost\n")
        for sink in sinks:
            sink.bind(("127.0.0.1", 0))
        ports = [int(sink.getsockname()[1]) for sink in sinks]
        for checkout in checkouts:
            for shift in shifts:
                for variant in variants:
                    low, high = (count_instructions(checkout, variant, n, ports, empty,
                                                    out_dir, shift) for n in (small, large))
                    value = per_exchange[checkout, shift, variant] = (high - low) / (large - small)
                    print(f"{commit_of(checkout):<15} shift {shift:<5} {variant:<15} "
                          f"{low:>15,} {high:>15,} {value:>10,.0f} instructions/exchange",
                          flush=True)
    for sink in sinks:
        sink.close()
    report(per_exchange, checkouts, shifts, variants, small, large)
    return 0


def report(per_exchange: dict[tuple[Path, int, str], float], checkouts: list[Path],
           shifts: list[int], variants: list[str], small: int, large: int) -> None:
    print(f"\nper exchange: (I({large}) - I({small})) / {large - small}, callgrind "
          f"(user space only); beyond empty: the addon's path")
    first = checkouts[0]
    header = f"{'checkout':<15}{'shift':>6}  {'variant':<15}{'instr/exchange':>16}"
    header += f"{'beyond empty':>14}"
    print(header + (f"{'vs ' + commit_of(first):>20}" if len(checkouts) > 1 else ""))
    for checkout in checkouts:
        for shift in shifts:
            base = per_exchange.get((checkout, shift, "empty"))
            for variant in variants:
                value = per_exchange[checkout, shift, variant]
                line = f"{commit_of(checkout):<15}{shift:>6}  {variant:<15}{value:>16,.0f}"
                line += f"{value - base:>+14,.0f}" if base is not None else f"{'':>14}"
                if len(checkouts) > 1:
                    line += f"{value - per_exchange[first, shift, variant]:>+20,.0f}"
                print(line)
    if len(shifts) > 1:
        print("\nover the shifts (layouts): lowest - highest per exchange")
        for checkout in checkouts:
            for variant in variants:
                values = [per_exchange[checkout, shift, variant] for shift in shifts]
                print(f"{commit_of(checkout):<15}{variant:<15}{min(values):>12,.0f} - "
                      f"{max(values):,.0f} (spread {max(values) - min(values):,.0f})")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(main())
