"""plugins/action/gpufleet_known_vars: every role's first preflight task refuses a misspelt
`<role>_*` variable (argument specs let it through silently), and an internal role refuses
to run on its own. Real ansible-playbook on the controller, check mode, nothing changed."""

from __future__ import annotations

import pytest
from test_version_lock import PARENT, run


def include(role: str, **variables: object) -> dict:
    task = {"name": f"Include {role}", "ansible.builtin.include_role": {"name": role}}
    return {**task, "vars": variables}


@pytest.mark.parametrize(
    ("play_tasks", "parent_tasks", "message"),
    [
        pytest.param(
            [include("base", base_ntp_server=["ntp.example.net"])],
            None,
            "Unknown variable(s) base_ntp_server: the base role knows base_",
            id="role-typo",
        ),
        pytest.param(
            [include("hardening_ssh", hardening_ssh_admin_key=["ssh-ed25519 AAAA"])],
            None,
            "Unknown variable(s) hardening_ssh_admin_key: the hardening_ssh role knows",
            id="another-role-typo",
        ),
        pytest.param(
            [include("apt_packages", apt_packages_present=["chrony"])],
            None,
            "apt_packages is an internal role: include it from a role",
            id="internal-role-alone",
        ),
        pytest.param(
            [{"name": "Parent", "ansible.builtin.include_role": {"name": PARENT}}],
            [include("apt_packages", apt_packages_present=["chrony"], apt_packages_pakages=["x"])],
            f"{PARENT} passes unknown variable(s) apt_packages_pakages to apt_packages, which",
            id="internal-role-typo-from-parent",
        ),
    ],
)
def test_refused_before_anything_runs(tmp_path, play_tasks, parent_tasks, message) -> None:
    rc, out = run(tmp_path, play_tasks, parent_tasks)
    assert rc != 0, out
    assert message in out, out
    assert "changed=0" in out  # refused by the first task: nothing ran
