"""Compatibility rules of the version lock.

Public sources of the tables below:

- CUDA toolkit vs driver: NVIDIA CUDA Toolkit Release Notes, "CUDA Driver"
  section, Table 2 (minimum driver for each CUDA major under minor-version
  compatibility: CUDA 11.x >= 450.80.02, CUDA 12.x >= 525.60.13, CUDA 13.x
  >= 580) and Table 3 (toolkit driver versions, e.g. CUDA 12.4 GA >= 550.54.14).
  https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/
  Only the major rule is enforced: within a major, minor-version
  compatibility lets a newer toolkit run on an older driver of the same major
  family (with the documented PTX limits).
- Fabric Manager vs driver: NVIDIA Fabric Manager User Guide ("the Fabric
  Manager and the driver must be the same version"); the failure it prevents
  is recorded in /work/shared/reference/hardware/
  systemctl-status-nvidia-fabricmanager-akash-docs-version-mismatch.txt
  ("fabric manager NVIDIA GPU driver interface version 550.127.05 don't match
  with driver version 550.120").
- DCGM vs driver: DCGM 2.0 release notes (on NVSwitch systems a minimum of
  R450); DCGM user guide, Supported Platforms (DCGM 3.x: "NVIDIA Driver
  R450+"). DCGM 4 ships one build per CUDA major
  (datacenter-gpu-manager-4-cuda11/-cuda12/-cuda13); HGX H100 sites use the
  cuda12 or cuda13 build, whose driver floor is CUDA 12's (R525, table above).
- Open GPU kernel modules: first published with driver R515 (NVIDIA
  open-gpu-kernel-modules repository, first tag 515.43.04).
"""

from __future__ import annotations

from collections.abc import Mapping

from gpufleet.errors import Problem
from gpufleet.spec.models import Profile, Versions

# CUDA major -> lowest driver branch that supports it (release notes, Table 2).
CUDA_MIN_DRIVER_BRANCH: dict[int, int] = {11: 450, 12: 525, 13: 580}

# DCGM major -> lowest driver branch it supports on NVSwitch systems.
DCGM_MIN_DRIVER_BRANCH: dict[int, int] = {2: 450, 3: 450, 4: 525}

OPEN_MODULES_MIN_BRANCH = 515

# Driver branches whose package names, revisions and repository layout the GPU roles know
# (roles/nvidia_driver/vars/main.yml, with their sources); the role refuses another branch unless
# nvidia_driver_packages names the packages. tests/unit/test_gpu_package_matrix.py renders every
# supported target with each of these. Ubuntu's packages were renamed from R590 (NVIDIA Driver
# Installation Guide, "Ubuntu 590 and later packages"): not known yet.
SUPPORTED_DRIVER_BRANCHES: tuple[str, ...] = ("550", "570", "580")


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


def check_versions(v: Versions, profiles_in_use: Mapping[str, Profile]) -> list[Problem]:
    """Return every broken compatibility rule of the version lock (empty when sound)."""
    problems: list[Problem] = []
    drv = v.nvidia_driver
    branch = int(drv.branch)
    base = "versions"

    if drv.version.split(".", 1)[0] != drv.branch:
        problems.append(
            Problem(
                f"{base}.nvidia_driver.version",
                f"driver {drv.version} is not on branch {drv.branch}",
                f'set branch: "{drv.version.split(".", 1)[0]}" or pick a {drv.branch}.x version',
            )
        )

    uses_fm = sorted(name for name, prof in profiles_in_use.items() if prof.fabric_manager)
    if v.fabric_manager is None:
        if uses_fm:
            problems.append(
                Problem(
                    f"{base}.fabric_manager",
                    f"missing: profile {uses_fm[0]} runs NVSwitch Fabric Manager",
                    f'add fabric_manager: "{drv.version}" (it must equal the driver version)',
                )
            )
    elif v.fabric_manager != drv.version:
        problems.append(
            Problem(
                f"{base}.fabric_manager",
                f"Fabric Manager {v.fabric_manager} differs from driver {drv.version};"
                " Fabric Manager refuses to start on a mismatch",
                f'set fabric_manager: "{drv.version}"',
            )
        )

    cuda_major = _major(v.cuda_toolkit)
    need = CUDA_MIN_DRIVER_BRANCH.get(cuda_major)
    if need is None:
        known = ", ".join(f"{m}.x" for m in CUDA_MIN_DRIVER_BRANCH)
        problems.append(
            Problem(
                f"{base}.cuda_toolkit",
                f"CUDA {v.cuda_toolkit} is not in the compatibility table (knows {known})",
                "pick a listed CUDA major or extend gpufleet.spec.compat with its source",
            )
        )
    elif branch < need:
        problems.append(
            Problem(
                f"{base}.cuda_toolkit",
                f"CUDA {cuda_major}.x needs driver branch {need} or newer; the lock has {branch}",
                f"raise nvidia_driver to R{need}+ or use an older CUDA major",
            )
        )

    dcgm_major = _major(v.dcgm)
    need = DCGM_MIN_DRIVER_BRANCH.get(dcgm_major)
    if need is None:
        known = ", ".join(f"{m}.x" for m in DCGM_MIN_DRIVER_BRANCH)
        problems.append(
            Problem(
                f"{base}.dcgm",
                f"DCGM {v.dcgm} is not in the compatibility table (knows {known})",
                "pick a listed DCGM major",
            )
        )
    elif branch < need:
        problems.append(
            Problem(
                f"{base}.dcgm",
                f"DCGM {dcgm_major}.x needs driver branch {need} or newer; the lock has {branch}",
                f"use DCGM 3.x with R{branch} or raise the driver to R{need}+",
            )
        )

    if "+cuda" in v.nccl:
        nccl_cuda = _major(v.nccl.split("+cuda", 1)[1])
        if nccl_cuda != cuda_major:
            problems.append(
                Problem(
                    f"{base}.nccl",
                    f"NCCL build {v.nccl} is for CUDA {nccl_cuda},"
                    f" the toolkit is CUDA {cuda_major}",
                    f"pick the +cuda{cuda_major}.x build of NCCL",
                )
            )

    if drv.open_kernel_modules and branch < OPEN_MODULES_MIN_BRANCH:
        problems.append(
            Problem(
                f"{base}.nvidia_driver.open_kernel_modules",
                f"open kernel modules first shipped with R{OPEN_MODULES_MIN_BRANCH};"
                f" branch is {branch}",
                "set open_kernel_modules: false or raise the driver branch",
            )
        )
    return problems
