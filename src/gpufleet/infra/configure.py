"""Configure: runs site.yml through ansible-runner against the generated inventory
(`gpufleet:configure:Configure`, optional, off by default: stack config `configure: true`).

The child `<name>-run` (a dynamic resource) runs the playbook on create, and
again on update when one of its triggers changes: the digests of the inventory
files and a digest of the Ansible content (site.yml, playbooks/, roles/,
library/, ansible.cfg). Progress goes line by line to the provider's stderr
and to ansible-runner's artifacts directory; a failed run fails the update
with one line per failed or unreachable host and task. `delete` does nothing:
configuration is not undone by a destroy.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

CONTENT = ("site.yml", "ansible.cfg", "playbooks", "roles", "library", "plugins")


def content_digest(root: Path, entries: Iterable[str] = CONTENT) -> str:
    """sha256 over the paths and bytes of every file under the given entries (sorted)."""
    h = hashlib.sha256()
    for entry in entries:
        base = root / entry
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or ".molecule" in path.parts:
                continue
            h.update(str(path.relative_to(root)).encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def failure_summary(events: Iterable[dict[str, Any]]) -> list[str]:
    """One line per failed or unreachable host/task, from ansible-runner events."""
    out: list[str] = []
    for ev in events:
        kind = ev.get("event")
        if kind not in ("runner_on_failed", "runner_on_unreachable"):
            continue
        data = ev.get("event_data") or {}
        if kind == "runner_on_failed" and data.get("ignore_errors"):
            continue
        res = data.get("res") or {}
        msg = str(res.get("msg") or res.get("stderr") or "").strip().splitlines()
        what = "unreachable" if kind == "runner_on_unreachable" else "failed"
        out.append(
            f"{data.get('host', '?')}: {what} in task '{data.get('task', '?')}'"
            + (f": {msg[0]}" if msg else "")
        )
    return out


def _progress(ev: dict[str, Any]) -> bool:
    data = ev.get("event_data") or {}
    kind = ev.get("event", "")
    if kind == "playbook_on_task_start":
        print(f"[ansible] TASK {data.get('task', '')}", file=sys.stderr, flush=True)
    elif kind.startswith("runner_on_"):
        print(f"[ansible]   {data.get('host', '?')}: {kind[10:]}", file=sys.stderr, flush=True)
    return True


class AnsibleRunProvider(ResourceProvider):
    serialize_as_secret_always = False

    def _run(self, props: dict[str, Any]) -> dict[str, Any]:
        import ansible_runner

        # ansible-runner sets ANSIBLE_CALLBACK_PLUGINS for its own event callback, which hides
        # ansible.cfg's callback_plugins (gpufleet's controller caches); it appends to this value.
        callbacks = Path(props["project_dir"]) / "plugins" / "callback"
        runner = ansible_runner.run(
            private_data_dir=props["private_data_dir"],
            project_dir=props["project_dir"],
            playbook=props["playbook"],
            inventory=props["inventory"],
            envvars={"ANSIBLE_CALLBACK_PLUGINS": str(callbacks)} if callbacks.is_dir() else None,
            event_handler=_progress,
            quiet=True,
        )
        if runner.status != "successful":
            lines = failure_summary(runner.events) or [f"ansible-runner status {runner.status}"]
            raise RuntimeError(f"{props['playbook']} failed (rc {runner.rc}):\n" + "\n".join(lines))
        return {**{k: v for k, v in props.items() if k != "__provider"}, "rc": runner.rc}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"ansible:{props['playbook']}", self._run(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("playbook", "inventory", "project_dir", "triggers")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[])

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._run(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class AnsibleRun(Resource, module="configure", name="AnsibleRun"):
    rc: pulumi.Output[int]

    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(AnsibleRunProvider(), name, {**props, "rc": None}, opts)


@dataclass(frozen=True)
class ConfigureArgs:
    ansible_root: Path  # holds site.yml
    inventory_dir: Path
    triggers: dict[str, pulumi.Input[Any]]
    playbook: str = "site.yml"
    private_data_dir: Path | None = None
    after: list[pulumi.Resource] = field(default_factory=list)


class Configure(pulumi.ComponentResource):
    rc: pulumi.Output[int]

    def __init__(
        self, name: str, args: ConfigureArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gpufleet:configure:Configure", name, None, opts)
        private = args.private_data_dir or (args.ansible_root / ".cache" / "ansible-runner")
        self.run = AnsibleRun(
            f"{name}-run",
            {
                "playbook": args.playbook,
                "project_dir": str(args.ansible_root),
                "inventory": str(args.inventory_dir / "hosts.yml"),
                "private_data_dir": str(private),
                "triggers": args.triggers,
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        self.rc = self.run.rc
        self.register_outputs({"rc": self.rc})
