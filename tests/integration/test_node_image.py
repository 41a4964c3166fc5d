"""The node image built by scripts/bootstrap boots like a server: systemd as PID 1, sshd up."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

IMAGE = "localhost/gpufleet-node:bookworm"


def _podman(podman: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([podman, *args], capture_output=True, text=True, check=check, timeout=120)


@pytest.fixture
def node(podman):
    name = f"gpufleet-imagetest-{uuid.uuid4().hex[:8]}"
    _podman(podman, "run", "-d", "--name", name, "--systemd=always", "--privileged", IMAGE)
    try:
        yield name
    finally:
        _podman(podman, "rm", "-f", "-t", "0", name, check=False)


def _wait_running(podman: str, name: str, timeout: float = 60) -> str:
    state = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _podman(podman, "exec", name, "systemctl", "is-system-running", check=False)
        state = state.stdout.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(1)
    return state


def test_image_carries_recipe_hash(podman):
    label = _podman(
        podman, "image", "inspect", IMAGE, "--format", '{{index .Labels "io.gpufleet.recipe"}}'
    ).stdout.strip()
    assert len(label) == 16, f"image label io.gpufleet.recipe missing or malformed: {label!r}"


def test_systemd_is_pid1_and_sshd_active(podman, node):
    state = _wait_running(podman, node)
    failed = _podman(podman, "exec", node, "systemctl", "--failed", "--no-legend", check=False)
    assert state == "running", f"system state {state!r}; failed units:\n{failed.stdout}"
    assert _podman(podman, "exec", node, "cat", "/proc/1/comm").stdout.strip() == "systemd"
    ssh = _podman(podman, "exec", node, "systemctl", "is-active", "ssh", check=False)
    journal = _podman(podman, "exec", node, "journalctl", "-u", "ssh", "--no-pager", check=False)
    assert ssh.stdout.strip() == "active", journal.stdout
    # sshd answers on port 22 with its protocol banner.
    probe = "import socket; s = socket.create_connection(('127.0.0.1', 22), 5); print(s.recv(64))"
    banner = _podman(podman, "exec", node, "python3", "-c", probe).stdout.strip("b'\n")
    assert banner.startswith("SSH-2.0-OpenSSH"), banner


def test_each_container_gets_its_own_host_keys(podman, node):
    _wait_running(podman, node)
    other = f"gpufleet-imagetest-{uuid.uuid4().hex[:8]}"
    _podman(podman, "run", "-d", "--name", other, "--systemd=always", "--privileged", IMAGE)
    try:
        _wait_running(podman, other)
        cmd = ("cat", "/etc/ssh/ssh_host_ed25519_key.pub")
        first = _podman(podman, "exec", node, *cmd).stdout
        second = _podman(podman, "exec", other, *cmd).stdout
        assert first.startswith("ssh-ed25519 ") and second.startswith("ssh-ed25519 ")
        assert first != second
    finally:
        _podman(podman, "rm", "-f", "-t", "0", other, check=False)


def test_sysctl_files_never_reach_the_host_kernel(podman, node):
    """Privileged nodes have a writable /proc/sys: systemd-sysctl must not apply
    /etc/sysctl.d at boot, or a role's kernel.* settings would change the host."""
    _wait_running(podman, node)
    enabled = _podman(
        podman, "exec", node, "systemctl", "is-enabled", "systemd-sysctl.service", check=False
    )
    assert enabled.stdout.strip() == "masked", enabled.stdout + enabled.stderr
    active = _podman(
        podman, "exec", node, "systemctl", "is-active", "systemd-sysctl.service", check=False
    )
    assert active.stdout.strip() == "inactive", active.stdout
