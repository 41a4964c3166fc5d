"""promtool and amtool for the unit tests: on PATH (the Makefile puts scripts/bootstrap's copy
there), else where scripts/bootstrap unpacks them; a test fails, never skips, without them."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def tool(name: str) -> str:
    """The path of promtool or amtool."""
    found = shutil.which(name)
    if found:
        return found
    bootstrap = (REPO / "scripts" / "bootstrap").read_text()
    version = re.search(r"^PROMETHEUS_DEB_VERSION=(\S+)$", bootstrap, re.M)
    assert version, "scripts/bootstrap does not pin PROMETHEUS_DEB_VERSION"
    cache = Path(os.environ.get("GPUFLEET_CACHE", Path.home() / ".cache" / "gpufleet"))
    candidate = cache / "prometheus-tools" / version.group(1) / "bin" / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    pytest.fail(f"{name} not found on PATH nor at {candidate}: run 'scripts/bootstrap promtool'")
