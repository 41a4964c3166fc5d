"""The scenario's two nodes as testinfra hosts: `head` (munge, MariaDB, slurmdbd, slurmctld)
and `gpu` (munge, slurmd with 8 GPUs)."""

import pytest
import testinfra

HEAD = "gpufleet-mol-slurm-default-head"
GPU = "gpufleet-mol-slurm-default-gpu1"


@pytest.fixture(scope="session")
def head():
    return testinfra.get_host(f"podman://{HEAD}")


@pytest.fixture(scope="session")
def gpu():
    return testinfra.get_host(f"podman://{GPU}")
