"""Shared fixtures: the client container, the check-mode replay, journal dumps on failure."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import testinfra

CLIENT = "gpufleet-mol-firewall-client"
NODE_ADDRESS = "198.19.232.10"


def _get(request, name):
    return testinfra.get_host(f"podman://{name}")


@pytest.fixture(scope="module")
def client(request):
    """Outside the cluster, inside the admin CIDRs and the load balancer's client CIDR."""
    return _get(request, CLIENT)


@pytest.fixture(scope="module")
def mon(request):
    """The monitoring node: may scrape exporters, nothing else."""
    return _get(request, "gpufleet-mol-firewall-mon")


@pytest.fixture(scope="module")
def peer(request):
    """The other load-balancer node: VRRP and cluster (Slurm) traffic."""
    return _get(request, "gpufleet-mol-firewall-peer")


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
        journal = item.funcargs["host"].run("journalctl -u nftables --no-pager -n 40").stdout
        report.sections.append(("journalctl -u nftables", journal))
