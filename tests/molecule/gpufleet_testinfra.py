"""pytest plugin for molecule's testinfra verifier, loaded by every scenario
(.config/molecule/config.yml: `-p gpufleet_testinfra`, this folder on PYTHONPATH).

`check_mode_run`: the scenario's converge.yml replayed with --check --diff, for the tests
that prove a converged node reports no change in check mode.

On a failed test, show what says why: a test module lists shell commands in ON_FAILURE
(apt policy, holds, `journalctl -u UNIT`, ...). When one of its tests that uses testinfra's
`host` fixture fails, each command runs on that host and its output is appended to the
failure report, so a CI log explains the failure without a second run.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def check_mode_run():
    """Replay converge.yml with --check --diff; return (returncode, output, changed count)."""
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    env = dict(os.environ)
    cfg = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "ansible.cfg"
    if cfg.is_file():
        env["ANSIBLE_CONFIG"] = str(cfg)
    proc = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            str(scenario / "converge.yml"),
            "--check",
            "--diff",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    out = proc.stdout + proc.stderr
    changed = sum(int(n) for n in re.findall(r"\bchanged=(\d+)", out))
    return proc.returncode, out, changed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    commands = getattr(getattr(item, "module", None), "ON_FAILURE", ())
    if report.when != "call" or not report.failed or "host" not in getattr(item, "funcargs", {}):
        return
    host = item.funcargs["host"]
    for command in commands:
        result = host.run(command)
        report.sections.append((f"on failure: {command}", result.stdout + result.stderr))
