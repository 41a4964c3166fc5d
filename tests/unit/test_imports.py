"""Every module imports on its own, first, in a fresh interpreter: no import cycles.

A cycle only shows when a module of the cycle is the first one imported, so
each module gets its own interpreter. A second check keeps gpufleet imports at
module level (a function-local import is how a cycle gets hidden).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import gpufleet

SRC = Path(gpufleet.__file__).resolve().parent

# Function-local gpufleet imports that are not there to break a cycle, with the reason.
LOCAL_IMPORTS_ALLOWED = {
    # Pulumi serializes a dynamic provider by value and runs it in another process:
    # the provider imports what it needs when it runs (docs/pulumi.md).
    "infra/inventory.py",
    # Owned by the verify helper (issue 13 house cleaning), who removes it:
    "verify/cli.py",
}


def _modules() -> list[str]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append(".".join(parts))
    return out


# Runs in a fresh interpreter: before each module, every gpufleet module is dropped
# from sys.modules, so each one is imported first (third-party packages stay loaded:
# importing pulumi or torch once per module would cost half a minute).
_EACH_FIRST = """
import importlib, json, sys, traceback
failed = {}
for module in sys.argv[1:]:
    for name in [m for m in sys.modules if m == "gpufleet" or m.startswith("gpufleet.")]:
        del sys.modules[name]
    try:
        importlib.import_module(module)
    except Exception:
        failed[module] = traceback.format_exc(limit=-3)
print(json.dumps(failed))
"""


def _fresh(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )


def test_the_walk_finds_the_packages() -> None:
    modules = _modules()
    assert {"gpufleet.model", "gpufleet.spec", "gpufleet.cli", "gpufleet.lab.core"} <= set(modules)
    assert len(modules) > 40


def test_every_module_imports_first() -> None:
    run = _fresh(_EACH_FIRST, *_modules())
    assert run.returncode == 0, run.stderr
    failed = json.loads(run.stdout)
    assert not failed, "\n".join(f"{m}:\n{tb}" for m, tb in failed.items())


def test_the_check_sees_a_cycle(tmp_path: Path) -> None:
    """Constructed: two modules that import names from each other fail when imported first."""
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyc.b import B\nA = 1\n")
    (pkg / "b.py").write_text("from cyc.a import A\nB = 2\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    code = _EACH_FIRST.replace('"gpufleet"', '"cyc"').replace('"gpufleet."', '"cyc."')
    run = subprocess.run(
        [sys.executable, "-c", code, "cyc.a", "cyc.b"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert sorted(json.loads(run.stdout)) == ["cyc.a", "cyc.b"]


def test_entry_points_import_alone() -> None:
    for module in ("gpufleet.model", "gpufleet.cli", "gpufleet.spec", "gpufleet.inventory"):
        run = _fresh(f"import {module}")
        assert run.returncode == 0, (module, run.stderr[-600:])


def test_gpufleet_imports_sit_at_module_level() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in LOCAL_IMPORTS_ALLOWED:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                if any(n == "gpufleet" or n.startswith("gpufleet.") for n in names):
                    found.append(f"{rel}:{node.lineno} in {func.name}()")
    assert not found, found


def test_src_finds_nothing_by_walking_up_to_the_repository() -> None:
    """Package data comes through importlib.resources; repository paths are explicit."""
    found = [
        f"{path.relative_to(SRC)}:{n}"
        for path in sorted(SRC.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "parents[" in line
    ]
    assert not found, found
