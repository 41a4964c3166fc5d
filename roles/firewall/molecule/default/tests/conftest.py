"""Fixtures: the client, monitoring and peer containers.

The check-mode replay and the failure dumps: tests/molecule/gpufleet_testinfra.py.
"""

from __future__ import annotations

import pytest
import testinfra

CLIENT = "gpufleet-mol-firewall-client"
NODE_ADDRESS = "198.19.232.10"


def _get(name):
    return testinfra.get_host(f"podman://{name}")


@pytest.fixture(scope="module")
def client(request):
    """Outside the cluster, inside the admin CIDRs and the load balancer's client CIDR."""
    return _get(CLIENT)


@pytest.fixture(scope="module")
def mon(request):
    """The monitoring node: may scrape exporters, nothing else."""
    return _get("gpufleet-mol-firewall-mon")


@pytest.fixture(scope="module")
def peer(request):
    """The other load-balancer node: VRRP and cluster (Slurm) traffic."""
    return _get("gpufleet-mol-firewall-peer")
