"""Action `gpufleet_known_vars`: refuse `<role>_*` variables the role's argument specs do not know.

Ansible's argument-spec validation checks the variables a role knows and ignores
the others, so a misspelt `base_ntp_server` is silently dropped and the default
wins. Every gpufleet role runs this as the first task of its preflight:

    - name: Reject unknown base_* variables (argument specs ignore typos)
      gpufleet_known_vars:

It reads the running role's meta/argument_specs.yml (the options of every entry
point), takes the variables named `<role>_...` from the task's variables (the
same set `query('varnames')` sees: inventory, play, role and extra vars) and
fails, naming them and the known ones, if any is unknown. With `internal: true`
(roles that only work when included by another role, such as apt_packages) it
also refuses to run without a parent role, and the message names the parent that
passed the unknown variables. `internal` may instead be the text that says how to
include the role ("a package role (include_role with tasks_from ...)"), which the
refusal then uses. Runs on the controller only; changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):  # type: ignore[misc]  # ansible: untyped
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset({"internal"})
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        result["changed"] = False
        task_vars = task_vars or {}
        role = self._task._role
        if role is None:
            result.update(failed=True, msg="gpufleet_known_vars runs only inside a role")
            return result
        name = role.get_name()
        parents = list(task_vars.get("ansible_parent_role_names") or [])
        internal = self._task.args.get("internal")
        if internal and not parents:
            how = internal if isinstance(internal, str) else "a role (include_role)"
            result.update(
                failed=True,
                msg=f"{name} is an internal role: include it from {how};"
                " it does not run on its own.",
            )
            return result
        specs = yaml.safe_load((Path(role._role_path) / "meta" / "argument_specs.yml").read_text())
        known = sorted(
            {opt for entry in specs["argument_specs"].values() for opt in entry.get("options", {})}
        )
        prefix = f"{name}_"
        unknown = sorted(k for k in task_vars if k.startswith(prefix) and k not in known)
        result["unknown"] = unknown
        if unknown:
            result["failed"] = True
            if internal:
                result["msg"] = (
                    f"{parents[0]} passes unknown variable(s) {', '.join(unknown)} to {name},"
                    f" which knows {', '.join(known)}"
                )
            else:
                result["msg"] = (
                    f"Unknown variable(s) {', '.join(unknown)}: the {name} role knows"
                    f" {', '.join(known)}"
                )
        return result
