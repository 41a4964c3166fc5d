"""Inventory: writes inventories/<site>/hosts.yml and group_vars (`gpufleet:inventory:Inventory`).

The text is rendered by gpufleet.inventory.render_inventory, the same function
behind `gpufleet inventory --write`, so both paths give the same bytes. The
component's child `<name>-files` (a dynamic resource) writes the files when
their content changes; it depends on the BareMetalNodes, so the inventory is
written once the servers have converged. `delete` leaves the files: the
inventory is reviewed in git and used by Ansible with or without Pulumi.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult


def digests(files: dict[str, str]) -> dict[str, str]:
    return {rel: hashlib.sha256(text.encode()).hexdigest() for rel, text in sorted(files.items())}


class InventoryFilesProvider(ResourceProvider):
    serialize_as_secret_always = False

    def _write(self, props: dict[str, Any]) -> dict[str, Any]:
        from gpufleet.inventory import write_inventory

        write_inventory(Path(props["site_dir"]), dict(props["files"]))
        return {
            "site_dir": props["site_dir"],
            "files": props["files"],
            "digests": digests(dict(props["files"])),
        }

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"inventory:{props['site_dir']}", self._write(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in ("site_dir", "files") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[k for k in changed if k == "site_dir"])

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._write(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # the generated inventory stays (module docstring)


class InventoryFiles(Resource, module="inventory", name="InventoryFiles"):
    digests: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        name: str,
        site_dir: str,
        files: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"site_dir": site_dir, "files": files, "digests": None}
        super().__init__(InventoryFilesProvider(), name, props, opts)


@dataclass(frozen=True)
class InventoryArgs:
    site_dir: Path
    files: dict[str, str]  # relative path -> text, from gpufleet.inventory.render_inventory
    after: list[pulumi.Resource] = field(default_factory=list)


class Inventory(pulumi.ComponentResource):
    hosts_file: pulumi.Output[str]
    digests: pulumi.Output[dict[str, str]]

    def __init__(
        self, name: str, args: InventoryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gpufleet:inventory:Inventory", name, None, opts)
        self.files = InventoryFiles(
            f"{name}-files",
            str(args.site_dir),
            dict(args.files),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        self.hosts_file = pulumi.Output.from_input(str(args.site_dir / "hosts.yml"))
        self.digests = self.files.digests
        self.register_outputs({"hosts_file": self.hosts_file, "digests": self.digests})
