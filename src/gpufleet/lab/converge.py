"""Run site.yml against the lab through ansible-runner and summarise it."""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gpufleet.lab import core


def runner_env(repo: Path) -> dict[str, str]:
    """Environment for ansible-runner with this checkout's ansible.cfg. ansible-runner sets
    ANSIBLE_CALLBACK_PLUGINS for its own event callback, which hides ansible.cfg's
    callback_plugins (gpufleet's controller caches); it appends its folder to a value given."""
    return {
        "ANSIBLE_CONFIG": str(repo / "ansible.cfg"),
        "ANSIBLE_CALLBACK_PLUGINS": str(repo / "plugins" / "callback"),
        "PATH": os.environ["PATH"],
    }


def converge(
    site: str | Path,
    playbook: str = "site.yml",
    console: Console | None = None,
    extravars: dict[str, str] | None = None,
    limit: str | None = None,
) -> bool:
    # ansible-runner takes a third of a second to import; only `lab converge` needs it.
    import ansible_runner

    console = console or Console()
    lab, cluster = core.open_lab(site)
    repo = core.repo_root()
    inventory = lab.site_dir.resolve() / "hosts.yml"
    roles: dict[str, set[str]] = defaultdict(set)

    def on_event(event: dict[str, Any]) -> bool:
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok" and data.get("role") and data.get("host"):
            roles[data["host"]].add(data["role"])
        return True

    with tempfile.TemporaryDirectory(prefix="gpufleet-runner-") as tmp:
        result = ansible_runner.run(
            private_data_dir=tmp,
            project_dir=str(repo),
            playbook=str(repo / playbook),
            inventory=str(inventory),
            envvars={**runner_env(repo), **lab.ansible_env()},
            # ansible-runner points the fact cache into its (temporary) artifacts directory
            # unless told otherwise; an absolute path keeps the lab's cache between runs.
            fact_cache=str(lab.facts_dir.resolve()),
            extravars=extravars or {},
            limit=limit,
            event_handler=on_event,
            quiet=False,
        )
        stats = result.stats or {}
        rc = result.rc
    table = Table(title=f"{lab.name}: ansible-playbook {playbook}")
    for col in ("node", "roles applied", "ok", "changed", "failed", "unreachable"):
        table.add_column(col)
    failed_total = 0
    changed_total = 0
    for node in cluster.nodes:
        h = node.name
        failed = stats.get("failures", {}).get(h, 0) + stats.get("dark", {}).get(h, 0)
        failed_total += failed
        changed_total += stats.get("changed", {}).get(h, 0)
        table.add_row(
            h, ", ".join(sorted(roles[h])) or "-", str(stats.get("ok", {}).get(h, 0)),
            str(stats.get("changed", {}).get(h, 0)), str(stats.get("failures", {}).get(h, 0)),
            str(stats.get("dark", {}).get(h, 0)),
        )  # fmt: skip
    console.print(table)
    ok = rc == 0 and failed_total == 0
    verdict = "PASSED" if ok else "FAILED"
    note = "no changes (idempotent)" if changed_total == 0 else f"{changed_total} changes"
    console.print(f"{Path(playbook).name} {verdict}: {len(cluster.nodes)} nodes, {note}")
    core.record_run(site, "converge", {"result": verdict.lower(), "changed": changed_total,
                                       "failed": failed_total})  # fmt: skip
    return ok
