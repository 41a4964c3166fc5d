"""Render a role's own variables and templates with Ansible's templar, as a play would.

The GPU roles keep their per-target data in vars/main.yml as Jinja expressions; these helpers load
a role's defaults/main.yml and vars/main.yml (trusted as templates, the way Ansible loads them),
lay the caller's variables over them and evaluate an expression or a template file, so tests check
the expressions the roles really run, not a re-implementation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"
_LOADER = DataLoader()


def load_yaml(path: Path) -> Any:
    """A YAML file of the repository, its strings trusted as templates (as Ansible loads roles)."""
    return _LOADER.load_from_file(str(path), trusted_as_template=True)


def role_vars(role: str) -> dict[str, Any]:
    """defaults/main.yml, then vars/main.yml over it (Ansible's precedence between the two)."""
    out: dict[str, Any] = {}
    for part in ("defaults", "vars"):
        path = ROLES / role / part / "main.yml"
        if path.is_file():
            out.update(load_yaml(path) or {})
    return out


def templar(variables: dict[str, Any]) -> Templar:
    return Templar(loader=_LOADER, variables=variables)


def render(variables: dict[str, Any], expression: str) -> Any:
    """The value of one Jinja expression, e.g. render(v, "__nvidia_driver_package_list")."""
    return templar(variables).template(trust_as_template("{{ " + expression + " }}"))


def render_file(variables: dict[str, Any], path: Path) -> str:
    """A template file of a role, rendered with `variables` (plus ansible_managed)."""
    text = trust_as_template(path.read_text())
    return str(templar({"ansible_managed": "managed by gpufleet", **variables}).template(text))


def task_named(path: Path, name: str) -> dict[str, Any]:
    """The task called `name` in a task file (trusted as templates, as Ansible loads it)."""
    for task in load_yaml(path) or []:
        if task.get("name") == name:
            return dict(task)
    raise KeyError(f"{path}: no task named {name!r}")
