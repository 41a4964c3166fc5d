"""scripts/molecule-all: own scenarios, scenarios shared through molecule/shared-scenario.yml.

The script runs for real on a constructed roles tree, with a stand-in `molecule` on PATH that
only records where and how it was called.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKE_MOLECULE = """#!/bin/sh
echo "$GPUFLEET_MOLECULE_ROLE $(basename "$PWD") $*" >> "$MOLECULE_CALLS"
"""


@pytest.fixture
def tree(tmp_path):
    """Constructed repository: scripts/molecule-all and roles alpha..delta."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(REPO / "scripts" / "molecule-all", tmp_path / "scripts" / "molecule-all")
    for scenario in ("default", "second"):
        path = tmp_path / "roles" / "alpha" / "molecule" / scenario / "molecule.yml"
        path.parent.mkdir(parents=True)
        path.write_text("# constructed\n")
    for role, target in (("beta", "alpha/default"), ("gamma", "alpha/missing")):
        pointer = tmp_path / "roles" / role / "molecule" / "shared-scenario.yml"
        pointer.parent.mkdir(parents=True)
        pointer.write_text(f"# constructed\nscenario: {target}\n")
    (tmp_path / "roles" / "delta" / "tasks").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "molecule").write_text(FAKE_MOLECULE)
    (bin_dir / "molecule").chmod(0o755)
    return tmp_path


def run(tree: Path, *roles: str) -> tuple[int, str, list[str]]:
    calls = tree / "calls"
    env = dict(os.environ)
    env.update({"PATH": f"{tree / 'bin'}{os.pathsep}{env['PATH']}", "MOLECULE_CALLS": str(calls)})
    proc = subprocess.run(
        [str(tree / "scripts" / "molecule-all"), *roles],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    logged = calls.read_text().splitlines() if calls.exists() else []
    return proc.returncode, proc.stdout + proc.stderr, logged


def test_shared_scenario_runs_once_in_its_role(tree):
    rc, out, calls = run(tree, "alpha", "beta")
    assert rc == 0, out
    assert calls == ["alpha alpha test -s default", "alpha alpha test -s second"]
    assert "=== beta is tested in alpha/default" in out


def test_role_alone_runs_the_scenario_it_points_to(tree):
    rc, out, calls = run(tree, "beta")
    assert rc == 0, out
    assert calls == ["alpha alpha test -s default"]


def test_pointer_to_a_missing_scenario_is_an_error(tree):
    rc, out, calls = run(tree, "gamma")
    assert rc == 1
    assert (
        "molecule-all: gamma/molecule/shared-scenario.yml names 'alpha/missing', "
        "which is no ROLE/SCENARIO with a molecule.yml"
    ) in out
    assert calls == []


def test_role_without_scenario_or_pointer_is_an_error(tree):
    rc, out, calls = run(tree, "delta")
    assert rc == 1
    assert "molecule-all: role 'delta' has no molecule scenario" in out
    assert calls == []
