"""The munge and slurm roles' secrets and restart wiring, read from their task files.

- Every task of roles/munge that holds the key (it names munge_key, __munge_source or
  __munge_local, or reads or writes the key file's content) is no_log.
- Each Slurm file installed under /etc/slurm notifies exactly the daemons that read it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
KEY_WORDS = ("munge_key |", "__munge_source", "__munge_local", "__munge_wanted")


def _tasks(path: Path) -> list[dict]:
    out = []
    for task in yaml.safe_load(path.read_text()) or []:
        out.extend(task.get("block", [])) if "block" in task else out.append(task)
    return out


def _holds_key(task: dict) -> bool:
    """A slurp of the key, or a task whose arguments or vars name the key's variables."""
    body = yaml.safe_dump({k: v for k, v in task.items() if k not in ("name", "when")})
    return "ansible.builtin.slurp" in task or any(word in body for word in KEY_WORDS)


def test_every_task_holding_the_munge_key_is_no_log():
    tasks = _tasks(ROLES / "munge" / "tasks" / "key.yml")
    holding = [t for t in tasks if _holds_key(t)]
    names = {t["name"] for t in holding}
    assert {
        "Read the cluster key from the key host",
        "Read this node's key",
        "Install the cluster key where it differs",
    } <= names
    for task in holding:
        assert task.get("no_log") is True, task["name"]


def test_each_slurm_file_notifies_the_daemons_that_read_it():
    tasks = _tasks(ROLES / "slurm" / "tasks" / "configure.yml")
    notify = {}
    for t in tasks:
        copy = t.get("ansible.builtin.copy")
        if copy and str(copy.get("dest", "")).startswith("/etc/slurm/"):
            n = t.get("notify")
            notify[copy["dest"]] = sorted([n] if isinstance(n, str) else n)
    assert notify == {
        "/etc/slurm/slurm.conf": ["Restart slurmctld", "Restart slurmd"],
        "/etc/slurm/partitions.conf": ["Reconfigure slurm"],
        "/etc/slurm/topology.conf": ["Restart slurmctld"],
        "/etc/slurm/{{ item }}": ["Restart slurmd"],
    }


def test_handlers_run_in_daemon_order():
    handlers = yaml.safe_load((ROLES / "slurm" / "handlers" / "main.yml").read_text())
    assert [h["name"] for h in handlers] == [
        "Restart mariadb",
        "Restart slurmdbd",
        "Wait for slurmdbd",
        "Restart slurmctld",
        "Restart slurmd",
        "Reconfigure slurm",
    ]
