"""`gpufleet validate`, `gpufleet plan`, `gpufleet inventory`.

SITE_OR_PATH is a site directory (`inventories/example-ib`), a site name
(`example-ib`, looked up under ./inventories) or a path to a cluster.yaml.
Bad input raises UserError: one line per problem on stderr, exit code 2, and
nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from gpufleet.errors import UserError
from gpufleet.spec import ClusterSpec, validate_data
from gpufleet.spec.loader import read_spec_data, resolve_spec_path

DEFAULT_SITE = "inventories/lab"

_SITE_HELP = "Site directory, site name or path to cluster.yaml."


def _load(site: str, as_json: bool) -> tuple[Path, ClusterSpec]:
    file = resolve_spec_path(site)
    try:
        return file, validate_data(read_spec_data(file), str(file))
    except UserError as err:
        if as_json:
            problems = [
                {"path": p.path, "message": p.message, "hint": p.hint} for p in err.problems
            ]
            typer.echo(json.dumps({"ok": False, "spec": str(file), "problems": problems}, indent=2))
        raise


def _summary(file: Path, spec: ClusterSpec) -> dict[str, Any]:
    roles = {r: len(spec.nodes_by_role(r)) for r in ("gpu", "head", "lb", "monitoring")}
    fabric = spec.networks.fabric
    return {
        "ok": True,
        "spec": str(file),
        "site": spec.site.name,
        "nodes": len(spec.nodes),
        "roles": roles,
        "fabric": {"type": fabric.type, "rails": len(fabric.rails)} if fabric else None,
        "vips": [v.name for v in spec.networks.frontend.vips],
    }


def validate(
    site: str = typer.Argument(DEFAULT_SITE, help=_SITE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Validate cluster.yaml: every problem with its path and a fix (exit 2 on errors)."""
    file, spec = _load(site, as_json)
    info = _summary(file, spec)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    roles = ", ".join(f"{n} {r}" for r, n in info["roles"].items())
    fab = info["fabric"]
    rails = f", {fab['type']} fabric with {fab['rails']} rails" if fab else ""
    Console().print(
        f"[green]ok[/green] {file}: site {spec.site.name}, {len(spec.nodes)} nodes ({roles}){rails}"
    )


def plan(
    site: str = typer.Argument(DEFAULT_SITE, help=_SITE_HELP),
    network: str | None = typer.Option(None, "--network", help="Only this network (e.g. rail0)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show the address plan: one table per network."""
    from gpufleet.plan import build_plan

    _, spec = _load(site, as_json)
    address_plan = build_plan(spec)
    names = [s.name for s in address_plan.subnets]
    if network is not None and network not in names:
        raise UserError(f"--network {network}: no such network (known: {', '.join(names)})")
    if as_json:
        data = address_plan.to_dict()
        if network is not None:
            data["subnets"] = [s for s in data["subnets"] if s["name"] == network]
            for n in data["nodes"]:
                n["interfaces"] = {k: v for k, v in n["interfaces"].items() if k == network}
        typer.echo(json.dumps(data, indent=2))
        return
    console = Console()
    for subnet in address_plan.subnets:
        if network is not None and subnet.name != network:
            continue
        gw = f", gateway {subnet.gateway}" if subnet.gateway else ""
        table = Table(
            title=f"{subnet.name} {subnet.cidr} (MTU {subnet.mtu}{gw})", title_justify="left"
        )
        for col in ("address", "hostname", "node", "role", "source"):
            table.add_column(col)
        if subnet.name == "frontend":
            for vip in address_plan.vips:
                table.add_row(str(vip.address), vip.hostname, "-", "vip", "spec")
        for node, iface in address_plan.rows(subnet.name):
            table.add_row(
                str(iface.address),
                iface.hostname,
                node.name,
                node.role,
                "pin" if iface.pinned else f"index {node.index}",
            )
        console.print(table)


def inventory(
    site: str = typer.Argument(DEFAULT_SITE, help=_SITE_HELP),
    write: bool = typer.Option(
        False, "--write", help="Write hosts.yml and group_vars next to cluster.yaml."
    ),
    check: bool = typer.Option(
        False, "--check", help="Exit 1 if the written inventory is out of date."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Render the Ansible inventory (print it, --write it, or --check it is current)."""
    from gpufleet.inventory import render_inventory, write_inventory
    from gpufleet.plan import build_plan

    file, spec = _load(site, as_json)
    files = render_inventory(spec, build_plan(spec))
    site_dir = file.parent
    if check:
        stale = [
            rel
            for rel, text in sorted(files.items())
            if not (site_dir / rel).is_file() or (site_dir / rel).read_bytes() != text.encode()
        ]
        if as_json:
            typer.echo(json.dumps({"ok": not stale, "stale": stale}, indent=2))
        else:
            for rel in stale:
                typer.echo(
                    f"out of date: {site_dir / rel} (run gpufleet inventory --write {site})",
                    err=True,
                )
        if stale:
            raise typer.Exit(1)
        return
    if write:
        results = write_inventory(site_dir, files)
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "written": [str(p) for p, c in results if c],
                        "unchanged": [str(p) for p, c in results if not c],
                    },
                    indent=2,
                )
            )
        else:
            for path, changed in results:
                typer.echo(f"{'wrote' if changed else 'unchanged'} {path}")
        return
    if as_json:
        typer.echo(json.dumps({"files": files}, indent=2))
        return
    for rel, text in sorted(files.items()):
        typer.echo(f"# ==> {site_dir / rel} <==")
        typer.echo(text, nl=False)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("plan")(plan)
    app.command("inventory")(inventory)
