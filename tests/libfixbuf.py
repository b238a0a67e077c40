"""libfixbuf's ipfixDump (CERT; the library behind YAF, super_mediator and SiLK), which
nobody here wrote, reading a file of IPFIX messages: its records and its complaints.

ipfixDump gives an enterprise element a name only from an RFC 5610 type record it
accepted (`--rfc5610`), and a data type only in templates that came after that record;
otherwise it prints `_alienInformationElement` and raw bytes.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import msgspec

_FIELD = re.compile(r"^\t\((\d+)(?:/(\d+))?\)\s*(\w+) : (.*)$")
_TEMPLATE_ID = re.compile(r"tid:\s+(\d+)")
_STRING = re.compile(r"^\(len: (\d+)\) ")


class DumpedRecord(msgspec.Struct):
    template_id: int
    # element name -> value as ipfixDump prints it (strings without their "(len: N)")
    fields: dict[str, str]
    # element name -> (enterprise number, element id)
    keys: dict[str, tuple[int, int]]


def ipfix_dump(path: Path) -> tuple[list[DumpedRecord], str, str]:
    """The data records ipfixDump decodes from `path`, its output and its complaints."""
    result = subprocess.run(["ipfixDump", "--in", str(path), "--rfc5610"], capture_output=True,
                            text=True, timeout=120, check=False, env=dict(os.environ, TZ="UTC"),
                            errors="replace")
    assert result.returncode == 0, result.stderr
    records: list[DumpedRecord] = []
    current: DumpedRecord | None = None
    in_data = False
    for line in result.stdout.splitlines():
        if line.startswith("--- "):
            in_data = line.startswith("--- data record")
            current = None
            continue
        if not in_data:
            continue
        found = _TEMPLATE_ID.search(line)
        if found and current is None:
            current = DumpedRecord(int(found.group(1)), {}, {})
            records.append(current)
            continue
        field = _FIELD.match(line)
        if field and current is not None:
            first, second, name, value = field.groups()
            key = (int(first), int(second)) if second else (0, int(first))
            text = _STRING.match(value)
            if text:
                value = value[text.end():]
            current.fields[name] = value
            current.keys[name] = key
    return records, result.stdout, result.stderr


def dump_time(ms: int) -> str:
    """A dateTimeMilliseconds value the way ipfixDump prints it (UTC)."""
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{ms % 1000:03d}"
