"""roles/version_lock refuses to run on its own and refuses bad input from its caller.

ansible-playbook runs for real on the controller (connection local, check mode as a second
safety net). Each case includes version_lock the way a broken caller would; the run must stop
with the case's message before anything is changed or installed.
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
PARENT = "gpufleet_constructed_parent"


def run(tmp_path: Path, play_tasks: list[dict], parent_tasks: list[dict] | None) -> tuple[int, str]:
    """Run one play on localhost; with parent_tasks, through a constructed parent role."""
    roles = tmp_path / "roles"
    if parent_tasks is not None:
        (roles / PARENT / "tasks").mkdir(parents=True)
        (roles / PARENT / "tasks" / "main.yml").write_text(yaml.safe_dump(parent_tasks))
    play = [{"name": "Case", "hosts": "localhost", "gather_facts": False, "tasks": play_tasks}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    (tmp_path / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "localhost": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                        }
                    }
                }
            }
        )
    )
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": f"{roles}{os.pathsep}{REPO / 'roles'}",
            "ANSIBLE_CACHE_PLUGIN": "memory",
            "ANSIBLE_NOCOLOR": "1",
        }
    )
    proc = subprocess.run(
        ["ansible-playbook", "-i", "hosts.yml", "play.yml", "--check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def include(tasks_from: str | None, **variables) -> dict:
    task: dict = {
        "name": "Include version_lock",
        "ansible.builtin.include_role": {"name": "version_lock"},
    }
    if tasks_from:
        task["ansible.builtin.include_role"]["tasks_from"] = tasks_from
    if variables:
        task["vars"] = variables
    return task


def through_parent() -> list[dict]:
    return [
        {"name": "Run the constructed parent", "ansible.builtin.include_role": {"name": PARENT}}
    ]


INSTALL = {
    "version_lock_name": "gpufleet_constructed",
    "version_lock_packages": ["gpufleet-constructed-package"],
    "version_lock_version": "1.0-1",
}

CASES = [
    pytest.param(
        [include("install", **INSTALL)],
        None,
        "version_lock is an internal role: include it from a package role",
        id="included-from-a-play",
    ),
    pytest.param(
        through_parent(),
        [include(None)],
        "version_lock is an internal role with the entry points drift, repository and install",
        id="whole-role",
    ),
    pytest.param(
        through_parent(),
        [
            include(
                "drift",
                version_lock_name="gpufleet_constructed",
                version_lock_drift_acton="fail",
            )
        ],
        f"{PARENT} passes unknown variable(s) version_lock_drift_acton to version_lock",
        id="misspelt-input",
    ),
    pytest.param(
        through_parent(),
        [include("install", version_lock_name="gpufleet_constructed")],
        "missing required arguments: version_lock_packages, version_lock_version",
        id="missing-input",
    ),
    pytest.param(
        through_parent(),
        [
            include(
                "drift",
                version_lock_name="gpufleet_constructed",
                version_lock_requires=["gpufleet_constructed_base"],
            )
        ],
        "/etc/gpufleet/version-lock.d/gpufleet_constructed_base.lock is missing; apply the "
        f"gpufleet_constructed_base role before {PARENT}",
        id="required-lock-missing",
    ),
]


@pytest.mark.parametrize(("play_tasks", "parent_tasks", "message"), CASES)
def test_refuses_before_any_change(tmp_path, play_tasks, parent_tasks, message):
    rc, out = run(tmp_path, play_tasks, parent_tasks)
    assert rc == 2, out[-3000:]
    assert message in " ".join(out.split()), out[-3000:]
    recap = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+).*failed=(\d+)", out)
    assert recap, out[-3000:]
    assert recap.groups() == ("0", "1")
