"""Wireshark's decoder (tshark) as the tests call it: JSON of every decoded flow record, and
the problems it reports (expert infos, malformed packets)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from typing import Any


def tshark_time(ms: int) -> str:
    """A time the way tshark prints it: 'Nov 18, 2026 11:06:40.083000000 UTC'."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return f"{moment:%b} {moment.day:2d}, {moment:%Y %H:%M:%S}.{ms % 1000:03d}000000 UTC"


def tshark_json(*args: str) -> list[dict[str, Any]]:
    result = subprocess.run(["tshark", "-o", "cflow.max_template_fields:0", "-T", "json",
                             "--no-duplicate-keys", *args],
                            capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def tshark_problems(*args: str) -> str:
    """Expert infos of warning level and above, and malformed-packet marks."""
    result = subprocess.run(["tshark", "-o", "cflow.max_template_fields:0", "-T", "fields",
                             "-e", "_ws.malformed", "-e", "_ws.expert.severity",
                             "-e", "_ws.expert.message", *args],
                            capture_output=True, text=True, timeout=120, check=True)
    return "\n".join(line for line in result.stdout.splitlines() if line.strip())


def flows(packets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every data record tshark decoded, in order, as its field dictionary."""
    found = []
    for packet in packets:
        cflow = packet["_source"]["layers"]["cflow"]
        for key, value in cflow.items():
            if key.startswith(("Set ", "FlowSet ")) and isinstance(value, dict):
                found += [v for k, v in value.items() if k.startswith("Flow ")]
    return found


def http_flows(packets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in flows(packets) if "cflow.octets" in f]
