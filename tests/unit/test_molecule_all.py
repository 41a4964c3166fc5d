"""scripts/molecule-all: own scenarios, scenarios shared through molecule/shared-scenario.yml.

The script runs for real on a constructed roles tree, with a stand-in `molecule` on PATH that
only records where and how it was called.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKE_MOLECULE = """#!/bin/sh
strategy=${ANSIBLE_STRATEGY:+ strategy=$ANSIBLE_STRATEGY}
echo "$GPUFLEET_MOLECULE_ROLE $(basename "$PWD") $*$strategy" >> "$MOLECULE_CALLS"
case " $MOLECULE_FAIL " in *" $(basename "$PWD")/$3 "*) echo "constructed failure"; exit 3;; esac
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


def run(tree: Path, *roles: str, jobs: str = "1", fail: str = "") -> tuple[int, str, list[str]]:
    calls = tree / "calls"
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{tree / 'bin'}{os.pathsep}{env['PATH']}",
            "MOLECULE_CALLS": str(calls),
            "GPUFLEET_MOLECULE_JOBS": jobs,
            "MOLECULE_FAIL": fail,
        }
    )
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


def times(tree: Path) -> dict[str, str]:
    rows = json.loads((tree / ".cache" / "molecule-times.json").read_text())
    return {row["scenario"]: row["result"] for row in rows}


def test_scenarios_run_in_parallel_each_once_with_times_and_whole_logs(tree):
    scenario = tree / "roles" / "base" / "molecule" / "default"
    scenario.mkdir(parents=True)
    (scenario / "molecule.yml").write_text("# constructed\n")
    rc, out, calls = run(tree, "alpha", "base", jobs="2")
    assert rc == 0, out
    assert sorted(calls) == [
        "alpha alpha test -s default",
        "alpha alpha test -s second",
        "base base test -s default",
        "base base test -s default strategy=linear",
    ]
    # The plain-strategy run follows the Mitogen run of the same containers.
    assert calls.index("base base test -s default strategy=linear") > calls.index(
        "base base test -s default"
    )
    assert times(tree) == {
        "alpha/default": "passed",
        "alpha/second": "passed",
        "base/default": "passed",
        "base/default (linear strategy)": "passed",
    }
    assert "molecule-all: all 4 scenario runs passed (2 at a time)" in out


def test_a_failed_scenario_fails_the_run_and_its_log_is_printed(tree):
    rc, out, calls = run(tree, "alpha", jobs="2", fail="alpha/second")
    assert rc == 1
    assert len(calls) == 2  # the other scenario still ran
    assert "constructed failure" in out
    assert "=== alpha/second FAILED after" in out
    assert "molecule-all: 1 scenario(s) failed: alpha/second" in out
    assert times(tree) == {"alpha/default": "passed", "alpha/second": "FAILED"}


def test_jobs_must_be_a_positive_integer(tree):
    rc, out, calls = run(tree, "alpha", jobs="0")
    assert rc == 2
    assert "GPUFLEET_MOLECULE_JOBS must be a positive integer, not '0'" in out
    assert calls == []


def test_the_longest_scenarios_start_first(tree):
    order = tree / ".config" / "molecule" / "longest-first"
    order.parent.mkdir(parents=True)
    order.write_text("# constructed\nalpha/second\nnone/such\n")
    rc, out, calls = run(tree, "alpha", jobs="1")
    assert rc == 0, out
    assert calls == ["alpha alpha test -s second", "alpha alpha test -s default"]
