"""pmacct's nfacctd as the tests run it: the configuration and primitives files we ship,
with only addresses, ports and paths changed."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ipfix.session import ExportFormat

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "pmacct"
PRIMITIVES = {ExportFormat.IPFIX: DEPLOY / "primitives-ipfix.lst",
              ExportFormat.NETFLOW9: DEPLOY / "primitives-netflow9.lst"}

def primitive_names(path: Path) -> list[str]:
    return [line.split()[0].removeprefix("name=") for line in path.read_text().splitlines()
            if line.startswith("name=")]


def start_nfacctd(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """nfacctd with `config`, once it says it is waiting for data."""
    with log.open("w") as log_file:
        process = subprocess.Popen(["nfacctd", "-f", str(config)], stdout=log_file,
                                   stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while "waiting for" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "waiting for" in log.read_text(), log.read_text()
    return process


def shipped_config(tmp_path: Path, fmt: ExportFormat, port: int) -> tuple[Path, Path]:
    """The committed nfacctd config, with only address, port and paths changed for the test."""
    flavour = "ipfix" if fmt is ExportFormat.IPFIX else "netflow9"
    output = tmp_path / "flows.json"
    replace = {"nfacctd_ip": "127.0.0.1", "nfacctd_port": str(port),
               "aggregate_primitives": str(PRIMITIVES[fmt]), "print_output_file": str(output),
               "print_refresh_time": "1"}
    lines = []
    for line in (DEPLOY / f"nfacctd-{flavour}.conf").read_text().splitlines():
        key = line.split(":", 1)[0]
        lines.append(f"{key}: {replace[key]}" if key in replace else line)
    config = tmp_path / "nfacctd.conf"
    config.write_text("\n".join(lines) + "\n")
    return config, output




def replay(tmp_path: Path, port: int, fmt: ExportFormat, datagrams: Iterable[bytes]
           ) -> list[dict[str, Any]]:
    """What nfacctd, run with the shipped configuration, prints for these datagrams."""
    config, output = shipped_config(tmp_path, fmt, port)
    log = tmp_path / "nfacctd.log"
    process = start_nfacctd(config, log)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for datagram in datagrams:
                sock.sendto(datagram, ("127.0.0.1", port))
                time.sleep(0.0005)
        time.sleep(2.5)  # one print refresh
    finally:
        process.send_signal(signal.SIGINT)  # flushes the cache to the file
        process.wait(timeout=15)
    text = output.read_text() if output.exists() else ""
    assert text, log.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
