"""A thin, typed wrapper over the podman CLI (the lab's only container engine)."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from gpufleet.errors import UserError

LABEL = "io.gpufleet.lab"


class PodmanError(RuntimeError):
    pass


def podman(
    *args: str, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("podman")
    if exe is None:
        raise UserError("podman not found: run scripts/bootstrap (as root) first")
    proc = subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise PodmanError(f"podman {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def container_exists(name: str) -> bool:
    return podman("container", "exists", name, check=False).returncode == 0


def network_exists(name: str) -> bool:
    return podman("network", "exists", name, check=False).returncode == 0


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def is_running(name: str) -> bool:
    proc = podman("inspect", "--format", "{{.State.Running}}", name, check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def inspect(name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(podman("inspect", name).stdout)
    return found[0]


def exec_in(name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return podman("exec", name, *cmd, check=check)


def labelled(kind: str, lab: str) -> list[str]:
    """Names of the containers or networks this lab created (found by label)."""
    flt = f"label={LABEL}={lab}"
    if kind == "container":
        out = podman("ps", "-a", "--filter", flt, "--format", "{{.Names}}").stdout
    else:
        out = podman("network", "ls", "--filter", flt, "--format", "{{.Name}}").stdout
    return sorted(line for line in out.splitlines() if line)
