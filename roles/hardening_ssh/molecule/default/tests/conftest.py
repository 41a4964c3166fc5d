"""Fixtures: the client container.

The check-mode replay and the failure dumps: tests/molecule/gpufleet_testinfra.py.
"""

from __future__ import annotations

import pytest
import testinfra

CLIENT = "gpufleet-mol-hardening_ssh-client"
NODE_ADDRESS = "198.19.231.10"


@pytest.fixture(scope="module")
def client(request):
    return testinfra.get_host(f"podman://{CLIENT}")
