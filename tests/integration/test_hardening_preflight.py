"""playbooks/hardening.yml refuses breaking input before it changes anything.

The playbook runs for real (connection local, check mode as a second safety net)
against a constructed one-node inventory; each case breaks one input. The first
play runs every role's preflight on every host, so the failure must come from it,
with its message, before the play that changes nodes starts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleOnlyReplaceWithYourOwnPublicKey00 ops@example"

# constructed: the variables `gpufleet inventory` generates, for one GPU node.
CONSTRUCTED_NODE_VARS = {
    "ansible_connection": "local",
    "ansible_python_interpreter": sys.executable,
    "gpufleet_profile": "lab",
    "gpufleet_profiles": {"lab": {"container": True}},
    "gpufleet_admin_cidrs": ["198.18.0.0/15"],
    "gpufleet_ssh_user": "gpufleet",
    "gpufleet_ssh_public_keys": [KEY],
    "gpufleet_networks": {"frontend": {"cidr": "198.18.1.0/24"}},
    "gpufleet_interfaces": {"frontend": {"address": "198.18.1.31", "prefix": 24}},
    "gpufleet_fabric_rails": [],
    # The host facts the inventory derives from the profile (gpufleet.inventory), which the
    # playbooks read instead of computing them.
    "gpufleet_has_gpus": False,
    "gpufleet_gpu_count": 0,
    "gpufleet_container": True,
    "gpufleet_hardware_checks": False,
    "gpufleet_nvswitch": False,
    "gpufleet_fabric_manager": False,
    "gpufleet_fabric_type": None,
    "gpufleet_rdma": False,
    "gpufleet_fabric_interfaces": [],
    "gpufleet_fabric_leaves": [],
}


def run_playbook(tmp_path: Path, overrides: dict, ssh_client: str) -> tuple[int, str]:
    inventory = {
        "all": {
            "children": {"gpu_nodes": {"hosts": {"node1": {**CONSTRUCTED_NODE_VARS, **overrides}}}}
        }
    }
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump(inventory))
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_CACHE_PLUGIN": "memory",
            "ANSIBLE_NOCOLOR": "1",
            # The controller's address as seen by the node (ansible_env.SSH_CLIENT).
            "SSH_CLIENT": ssh_client,
        }
    )
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(inv), "playbooks/hardening.yml", "--check", "--diff"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


CASES = [
    pytest.param(
        {"gpufleet_ssh_public_keys": []},
        "198.18.1.1 50000 22",
        "hardening_ssh_admin_keys is empty",
        id="empty-admin-keys",
    ),
    pytest.param(
        {"gpufleet_ssh_public_keys": ["not-a-key AAAA"]},
        "198.18.1.1 50000 22",
        "are not OpenSSH public keys",
        id="malformed-admin-key",
    ),
    pytest.param(
        {},
        "203.0.113.7 50000 22",
        "The controller reaches node1 from 203.0.113.7, which is in none of firewall_admin_cidrs",
        id="admin-cidrs-lock-out-controller",
    ),
    pytest.param(
        {"gpufleet_admin_cidrs": ["198.18.0.0/33"]},
        "198.18.1.1 50000 22",
        "Malformed address/CIDR 198.18.0.0/33",
        id="malformed-cidr",
    ),
    pytest.param(
        {"gpufleet_admin_cidrs": ["198.18.1.7/24"]},
        "198.18.1.1 50000 22",
        "have host bits set: use the network address (e.g. 198.18.1.0/24)",
        id="cidr-with-host-bits",
    ),
    pytest.param(
        {"gpufleet_admin_cidrs": []},
        "198.18.1.1 50000 22",
        "firewall_admin_cidrs is empty",
        id="no-admin-cidrs",
    ),
]


@pytest.mark.parametrize(("overrides", "ssh_client", "message"), CASES)
def test_breaking_input_fails_before_any_change(tmp_path, overrides, ssh_client, message):
    rc, out = run_playbook(tmp_path, overrides, ssh_client)
    assert rc == 2, out[-3000:]
    assert message in " ".join(out.split()), out[-3000:]
    assert "PLAY [Harden every node]" not in out
    recap = re.search(r"node1\s*:\s*ok=\d+\s+changed=(\d+).*failed=(\d+)", out)
    assert recap, out[-3000:]
    assert recap.groups() == ("0", "1")
