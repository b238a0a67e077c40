"""The optional C building blocks (`_speedups`), or None.

None where no compiler built them, and where FLOWEXPORT_PURE_PYTHON is set (to run or
test the Python references alone). FLOWEXPORT_REQUIRE_NATIVE makes a missing build an
error instead of a silent fallback, for CI.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("FLOWEXPORT_PURE_PYTHON"):
        return None
    try:
        return importlib.import_module(f"{__package__}._speedups")
    except ImportError:  # no compiler where this was installed: the Python code serves
        if os.environ.get("FLOWEXPORT_REQUIRE_NATIVE"):
            raise
        return None


speedups = _load()
