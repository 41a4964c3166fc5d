"""Every supported target x every driver branch of the lock's supported set: the repository line,
key and package lists the GPU roles render equal the documented ones.

The roles' own vars/main.yml expressions and the version_lock templates are rendered with
Ansible's templar (roles_render.py), with the facts a node of each target reports. The table
below is written from the documents, not from the roles:

- NVIDIA Driver Installation Guide (docs.nvidia.com/datacenter/tesla/driver-installation-guide/):
  repository https://developer.download.nvidia.com/compute/cuda/repos/<distro><release>/<arch>/
  with the key 3bf863cc.pub (fingerprint EB69 3B30 35CD 5710 E231 E123 A4B4 6996 3BF8 63CC);
  the compute-only route from R560.
- NVIDIA's Ubuntu driver packaging (github.com/NVIDIA/ubuntu-packaging-nvidia-driver,
  debian/templates/control.in): nvidia-headless-<branch>[-open] for systems without X,
  nvidia-utils-<branch> (nvidia-smi), nvidia-compute-utils-<branch> (nvidia-persistenced);
  revision 0ubuntu1 in NVIDIA's repository.
- NVIDIA's Ansible role (github.com/NVIDIA/ansible-role-nvidia-driver): cuda-drivers-<branch> from
  the CUDA repository on Debian.
- NVIDIA Fabric Manager User Guide: nvidia-fabricmanager-<branch> and libnvidia-nscq-<branch>, at
  the driver's version; revision 1 in NVIDIA's repository on Ubuntu as on Debian.
- NVIDIA DCGM documentation, "Install DCGM": datacenter-gpu-manager-4-cuda<major> on
  datacenter-gpu-manager-4-core, epoch 1 (1:4.x.y-1); DCGM 3: datacenter-gpu-manager 1:3.x.y.
- CUDA Installation Guide for Linux: cuda-toolkit-X-Y, revision 1; NCCL Installation Guide:
  libnccl2 and libnccl-dev at <nccl>+cuda<X.Y>.
- NVIDIA Container Toolkit install guide: one flat repository at
  nvidia.github.io/libnvidia-container/stable/deb/$(ARCH), four packages at one version, revision 1.
"""

from __future__ import annotations

from typing import Any

import pytest
from roles_render import ROLES, render, render_file, role_vars, task_named, templar

from gpufleet.spec.compat import SUPPORTED_DRIVER_BRANCHES

CUDA_REPOS = "https://developer.download.nvidia.com/compute/cuda/repos"
CUDA_KEY_FPR = "EB693B3035CD5710E231E123A4B469963BF863CC"

# What `setup` reports on each target (ansible_facts), and the repository directory NVIDIA names.
TARGETS: dict[str, tuple[dict[str, str], str]] = {
    # Debian reports its point release as distribution_version ("12.11"): not the directory.
    "debian12": (
        {
            "distribution": "Debian",
            "distribution_version": "12.11",
            "distribution_major_version": "12",
        },
        "debian12",
    ),
    "ubuntu2204": (
        {
            "distribution": "Ubuntu",
            "distribution_version": "22.04",
            "distribution_major_version": "22",
        },
        "ubuntu2204",
    ),
    "ubuntu2404": (
        {
            "distribution": "Ubuntu",
            "distribution_version": "24.04",
            "distribution_major_version": "24",
        },
        "ubuntu2404",
    ),
}
# One exact release per branch (any release of the branch renders the same names).
RELEASES = {"550": "550.127.05", "570": "570.133.20", "580": "580.95.05"}


def documented_driver(target: str, branch: str) -> tuple[list[str], str]:
    """(packages, revision) of the compute-only open-module driver, from the sources above."""
    if target == "debian12":
        base = "nvidia-driver-cuda" if int(branch) >= 560 else f"cuda-drivers-{branch}"
        return [base, "nvidia-kernel-open-dkms", "nvidia-persistenced"], "1"
    return [
        f"nvidia-headless-{branch}-open",
        f"nvidia-utils-{branch}",
        f"nvidia-compute-utils-{branch}",
    ], "0ubuntu1"


MATRIX = [(t, b) for t in TARGETS for b in SUPPORTED_DRIVER_BRANCHES]


def facts(target: str) -> dict[str, str]:
    return {**TARGETS[target][0], "architecture": "x86_64", "kernel": "6.8.0-48-generic"}


def driver_vars(target: str, branch: str, **over: Any) -> dict[str, Any]:
    return {
        **role_vars("nvidia_driver"),
        "ansible_facts": facts(target),
        "nvidia_driver_branch": branch,
        "nvidia_driver_version": RELEASES[branch],
        **over,
    }


def test_the_role_knows_exactly_the_lock_s_supported_branches():
    assert role_vars("nvidia_driver")["__nvidia_driver_supported_branches"] == list(
        SUPPORTED_DRIVER_BRANCHES
    )
    assert sorted(RELEASES) == sorted(SUPPORTED_DRIVER_BRANCHES)


@pytest.mark.parametrize(("target", "branch"), MATRIX)
def test_repository_line_and_key(target, branch):
    v = driver_vars(target, branch)
    url = f"{CUDA_REPOS}/{TARGETS[target][1]}/x86_64/"
    assert render(v, "__nvidia_driver_repo_url") == url
    assert render(v, "__nvidia_driver_key_url") == url + "3bf863cc.pub"
    assert v["nvidia_driver_repo_key_fingerprint"] == CUDA_KEY_FPR
    # The apt source version_lock writes with these values (the repository line).
    lock = {
        **role_vars("version_lock"),
        "ansible_facts": {**facts(target), "os_family": "Debian"},
        "ansible_parent_role_names": ["nvidia_driver"],
        "version_lock_repo_name": "nvidia-cuda",
        "version_lock_repo_description": "NVIDIA CUDA repository",
        "version_lock_repo_url": render(v, "__nvidia_driver_repo_url"),
    }
    source = render_file(
        lock, ROLES / "version_lock/templates/etc/apt/sources.list.d/flat.sources.j2"
    )
    lines = [ln for ln in source.splitlines() if ln and not ln.startswith("#")]
    assert lines == [
        "Types: deb",
        f"URIs: {url}",
        "Suites: /",
        "Signed-By: /etc/apt/keyrings/gpufleet-nvidia-cuda.asc",
    ]


@pytest.mark.parametrize(("target", "branch"), MATRIX)
def test_driver_packages_and_version(target, branch):
    packages, revision = documented_driver(target, branch)
    v = driver_vars(target, branch)
    assert render(v, "__nvidia_driver_package_list") == packages
    assert render(v, "__nvidia_driver_full_version") == f"{RELEASES[branch]}-{revision}"
    proprietary = [p.replace("-open-dkms", "-dkms").removesuffix("-open") for p in packages]
    v = driver_vars(target, branch, nvidia_driver_open_kernel_modules=False)
    assert render(v, "__nvidia_driver_package_list") == proprietary


@pytest.mark.parametrize(("target", "branch"), MATRIX)
def test_driver_pin_covers_the_packages_the_metapackages_pull_in(target, branch):
    # The Debian-named libraries of the driver (libglx-nvidia0, ...) do not match nvidia-* or
    # libnvidia-*: the pin names them (roles/nvidia_driver/vars/main.yml).
    glob = render(driver_vars(target, branch), "__nvidia_driver_pin_glob").split()
    assert {"nvidia-*", "libnvidia-*", "cuda-drivers-*"} <= set(glob)
    if target == "debian12":
        assert {"libglx-nvidia0", "libegl-nvidia0", "libcuda1", "firmware-nvidia-gsp"} <= set(glob)
    else:
        assert "libcuda1-*" in glob


@pytest.mark.parametrize(("target", "branch"), MATRIX)
def test_fabric_manager_and_nscq(target, branch):
    v = {
        **role_vars("nvidia_fabricmanager"),
        "ansible_facts": facts(target),
        "nvidia_fabricmanager_version": RELEASES[branch],
    }
    assert render(v, "__nvidia_fabricmanager_package_list") == [
        f"nvidia-fabricmanager-{branch}",
        f"libnvidia-nscq-{branch}",
    ]
    # NVIDIA's revision 1 on Ubuntu too, not the driver packages' 0ubuntu1.
    assert render(v, "__nvidia_fabricmanager_full_version") == f"{RELEASES[branch]}-1"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    ("version", "cuda", "packages", "full"),
    [
        (
            "4.2.3",
            12,
            ["datacenter-gpu-manager-4-core", "datacenter-gpu-manager-4-cuda12"],
            "1:4.2.3-1",
        ),
        (
            "4.2.3",
            13,
            ["datacenter-gpu-manager-4-core", "datacenter-gpu-manager-4-cuda13"],
            "1:4.2.3-1",
        ),
        ("3.3.9", 12, ["datacenter-gpu-manager"], "1:3.3.9"),
    ],
)
def test_dcgm(target, version, cuda, packages, full):
    v = {
        **role_vars("dcgm"),
        "ansible_facts": facts(target),
        "dcgm_version": version,
        "dcgm_cuda_major": cuda,
    }
    assert render(v, "__dcgm_package_list") == packages
    assert render(v, "__dcgm_full_version") == full
    assert render(v, "__dcgm_exporter_packages") == ["datacenter-gpu-manager-exporter"]


def test_dcgm_4_is_the_default():
    assert role_vars("dcgm")["dcgm_version"].startswith("4.")


@pytest.mark.parametrize("target", TARGETS)
def test_cuda_toolkit_and_nccl(target):
    v = {
        **role_vars("cuda_toolkit"),
        "ansible_facts": facts(target),
        "cuda_toolkit_version": "12.8.1",
    }
    assert render(v, "__cuda_toolkit_package_list") == ["cuda-toolkit-12-8"]
    assert render(v, "__cuda_toolkit_full_version") == "12.8.1-1"
    assert render(v, "__cuda_toolkit_nccl_packages") == ["libnccl2", "libnccl-dev"]


@pytest.mark.parametrize("target", TARGETS)
def test_container_toolkit(target):
    v = {**role_vars("nvidia_container_toolkit"), "ansible_facts": facts(target)}
    assert v["nvidia_container_toolkit_repo_url"] == (
        "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)"
    )
    assert render(v, "__nvidia_container_toolkit_package_list") == [
        "nvidia-container-toolkit",
        "nvidia-container-toolkit-base",
        "libnvidia-container-tools",
        "libnvidia-container1",
    ]
    assert render(v, "__nvidia_container_toolkit_full_version") == "1.17.3-1"


# --- preflight: the real assert expressions of roles/nvidia_driver/tasks/preflight.yml ---------

PREFLIGHT = ROLES / "nvidia_driver" / "tasks" / "preflight.yml"


def _preflight_passes(task: str, variables: dict[str, Any]) -> bool:
    that = task_named(PREFLIGHT, task)["ansible.builtin.assert"]["that"]
    conditions = that if isinstance(that, list) else [that]
    return all(render(variables, f"({c}) | bool") for c in conditions)


@pytest.mark.parametrize("target", TARGETS)
def test_preflight_accepts_the_supported_targets(target):
    assert _preflight_passes("Require a supported distribution release", driver_vars(target, "550"))


@pytest.mark.parametrize(
    "os_facts",
    [
        {
            "distribution": "Debian",
            "distribution_version": "11.11",
            "distribution_major_version": "11",
        },
        {
            "distribution": "Ubuntu",
            "distribution_version": "20.04",
            "distribution_major_version": "20",
        },
        {
            "distribution": "Ubuntu",
            "distribution_version": "22.10",
            "distribution_major_version": "22",
        },
        {"distribution": "Rocky", "distribution_version": "9.4", "distribution_major_version": "9"},
    ],
    ids=["debian11", "ubuntu2004", "ubuntu2210", "rocky9"],
)
def test_preflight_refuses_other_targets_with_a_clear_message(os_facts):
    v = driver_vars("debian12", "550", ansible_facts={**facts("debian12"), **os_facts})
    assert not _preflight_passes("Require a supported distribution release", v)
    fail_msg = task_named(PREFLIGHT, "Require a supported distribution release")[
        "ansible.builtin.assert"
    ]["fail_msg"]
    rendered = templar({**v, "inventory_hostname": "gpu001"}).template(fail_msg)
    assert rendered.startswith(
        f"gpu001 runs {os_facts['distribution']} {os_facts['distribution_version']};"
    )
    assert "supports Debian 12, Ubuntu 22.04, Ubuntu 24.04 only" in rendered


def test_preflight_refuses_an_unknown_branch_unless_packages_are_named():
    task = "Require a branch whose package names are known, or an explicit package list"
    v = driver_vars("debian12", "550", nvidia_driver_branch="535", nvidia_driver_version="535.1.2")
    assert not _preflight_passes(task, v)
    assert _preflight_passes(task, {**v, "nvidia_driver_packages": ["nvidia-driver"]})
