"""version_lock's install on a node whose package lists lack the locked version.

A real node container from the node image and the real role over podman. The image's lists
were read by debootstrap (the release only), so a version from the security suite is not in
them; the test also makes them look fresh (an apt run a minute ago), which is what a node
built or updated less than an hour before the converge looks like. The lock is haproxy's in
the spec (a security update on Debian 12):

1. the install refreshes the lists because they lack the version, whatever their age, and
   installs it (before, the apt module read the young lists and found no candidate);
2. a version that no source has, even after the refresh, stops the run with a message that
   names the package, the version and what to do, before apt is asked to install it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from gpufleet.lab import podman as pm
from gpufleet.spec.models import Versions

REPO = Path(__file__).resolve().parents[2]
NODE_IMAGE = "localhost/gpufleet-node:bookworm"
NODE = "gpufleet-test-version-lock-lists"
PARENT = "gpufleet_constructed_parent"
LOCKED = Versions.model_fields["haproxy"].default

pytestmark = pytest.mark.system

# Young lists without the security suite: its files removed, the lists directory (what the apt
# module dates the cache by, with no update stamp) touched.
YOUNG_LISTS = (
    "rm -f /var/lib/apt/lists/*security* /var/lib/apt/periodic/update-success-stamp"
    " && touch /var/lib/apt/lists"
)


def _converge(tmp: Path, version: str) -> subprocess.CompletedProcess[str]:
    """version_lock's drift and install entry points through a constructed parent role."""
    tasks = [
        {"name": "Drift", "ansible.builtin.include_role": {"name": "version_lock",
         "tasks_from": "drift"}, "vars": {"version_lock_name": "haproxy"}},
        {"name": "Install", "ansible.builtin.include_role": {"name": "version_lock",
         "tasks_from": "install"}, "vars": {"version_lock_name": "haproxy",
         "version_lock_packages": ["haproxy"], "version_lock_version": version}},
    ]  # fmt: skip
    parent = tmp / "roles" / PARENT / "tasks"
    parent.mkdir(parents=True, exist_ok=True)
    (parent / "main.yml").write_text(yaml.safe_dump(tasks, sort_keys=False))
    play = [{"name": "Lock haproxy", "hosts": "all", "gather_facts": True,
             "roles": [PARENT]}]  # fmt: skip
    (tmp / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_ROLES_PATH": f"{tmp / 'roles'}{os.pathsep}{REPO / 'roles'}"}  # fmt: skip
    return subprocess.run(
        [str(REPO / ".venv/bin/ansible-playbook"), "-i", f"{NODE},", "-c",
         "containers.podman.podman", "-e", "ansible_python_interpreter=/usr/bin/python3",
         str(tmp / "play.yml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def _installed(name: str) -> str:
    query = ("dpkg-query", "-W", "-f", "${Status} ${Version}", name)
    run = subprocess.run(["podman", "exec", NODE, *query], capture_output=True, text=True,
                         check=False)  # fmt: skip
    return run.stdout if run.returncode == 0 else ""


@pytest.fixture
def node(podman: str):
    run = [podman, "run", "-d", "--name", NODE, "--privileged", "--systemd=always", "--no-hosts"]
    subprocess.run([*run, NODE_IMAGE, "/sbin/init"], check=True, capture_output=True)
    try:
        yield NODE
    finally:
        pm.podman("rm", "-f", "-t", "0", NODE)


def test_install_finds_a_version_its_young_lists_lack_and_names_one_no_source_has(node, tmp_path):
    pm.exec_in(node, "sh", "-c", YOUNG_LISTS)
    policy = pm.exec_in(node, "apt-cache", "policy", "haproxy").stdout
    assert LOCKED not in policy, f"the precondition: the lists must lack {LOCKED}\n{policy}"

    first = _converge(tmp_path, LOCKED)
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-4000:]
    refreshed = re.search(r"TASK \[version_lock : Refresh the package lists\] \**\n(\w+):", out)
    assert refreshed and refreshed.group(1) == "changed", out[-4000:]
    assert _installed("haproxy") == f"hold ok installed {LOCKED}"

    absent = "2.6.12-0gpufleet.absent1"
    second = _converge(tmp_path, absent)
    out = second.stdout + second.stderr
    assert second.returncode != 0, out[-4000:]
    said = " ".join(out.split())
    assert (
        f"haproxy: version {absent} of haproxy is not in this node's apt sources, even after a "
        "refresh of the package lists"
    ) in said, out[-4000:]
    assert "point the node at a mirror or snapshot that keeps it" in said
    assert (
        "TASK [version_lock : Install the packages at exactly the locked version (apt)]"
        not in (
            out.split("Stop where the node's sources do not have the locked version", 1)[0].split(
                "TASK [Install]", 1
            )[-1]
        )
    )
    assert _installed("haproxy") == f"hold ok installed {LOCKED}"
