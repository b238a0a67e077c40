"""The README's main-job command starts a working demo: records reach the collector."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real processes: run by .ci/run, not by -m 'not slow'

ROOT = Path(__file__).resolve().parent.parent


def test_demo_prints_records() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), "--duration", "4",
                             "--format", "json"], capture_output=True, text=True, timeout=90,
                            check=True, cwd=ROOT)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(records) >= 2, result.stderr
    assert {r["httpRequestHost"] for r in records} == {"demo.example"}
    assert "curl" in result.stderr  # the hint for sending your own requests
