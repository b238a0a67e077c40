"""The README's main-job command starts a working demo: records reach the collector, the
statistics line shows, and nothing is left behind."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real processes: run by .ci/run, not by -m 'not slow'

ROOT = Path(__file__).resolve().parent.parent


def leftovers() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("flowexport-demo-*"))


def test_demo_prints_records_and_cleans_up() -> None:
    before = leftovers()
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), "--duration", "7",
                             "--client", "--format", "json"], capture_output=True, text=True,
                            timeout=90, check=True, cwd=ROOT)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(records) >= 2, result.stderr
    assert {r["httpRequestHost"] for r in records} == {"demo.example"}
    assert "curl" in result.stderr  # the hint for sending your own requests
    assert "flowexport: " in result.stderr and " records, " in result.stderr  # statistics
    assert "client connect" not in result.stderr  # mitmdump's noise stays out
    assert leftovers() == before  # the confdir, with mitmproxy's CA key, is gone


def test_human_lines_without_the_client() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), "--duration",
                             "3"], capture_output=True, text=True, timeout=90, check=True,
                            cwd=ROOT)
    assert result.stdout == ""  # nobody sent a request: no lines
    assert "demo: try  curl" in result.stderr
