"""Shared fixtures: the client container, the check-mode replay, journal dumps on failure."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import testinfra

CLIENT = "gpufleet-mol-hardening_ssh-client"
NODE_ADDRESS = "198.19.231.10"


@pytest.fixture(scope="module")
def client(request):
    return testinfra.get_host(f"podman://{CLIENT}")


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
    if report.when == "call" and report.failed and "host" in item.funcargs:
        journal = item.funcargs["host"].run("journalctl -u ssh --no-pager -n 40").stdout
        report.sections.append(("journalctl -u ssh", journal))
