"""`gpufleet lab up | status | down | converge | fault`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from gpufleet.errors import UserError
from gpufleet.lab import core, faults
from gpufleet.lab.converge import converge

lab_app = typer.Typer(help="The lab: container nodes with emulated BMCs on this machine.")
SITE = typer.Option(Path("inventories/lab"), "--site", help="lab site directory or cluster.yaml")
LIMIT = typer.Option(
    None, "--limit", help="only these lab nodes, e.g. gpu1,gpu2 (ansible-playbook --limit)"
)
EXTRA_VAR = typer.Option(
    None, "--extra-var", "-e", help="NAME=VALUE for ansible-playbook -e (repeatable)"
)


@lab_app.command("up")
def up_cmd(
    site: Path = SITE,
    power_on: bool = typer.Option(
        True, "--power-on/--no-power-on", help="power nodes on through their BMCs and install them"
    ),
) -> None:
    """Create networks and nodes, start the BMC emulator, power on through Redfish."""
    console = Console()
    core.up(site, say=lambda m: console.print(f"[bold]lab:[/] {m}"), power_on=power_on)


@lab_app.command("pulumi-up")
def pulumi_up_cmd(site: Path = SITE) -> None:
    """`pulumi up` of stacks/cluster on the lab's stack (BMC power and boot, inventory)."""
    console = Console()
    core.pulumi_up(site, say=lambda m: console.print(f"[bold]lab:[/] {m}"))


@lab_app.command("status")
def status_cmd(site: Path = SITE, as_json: bool = typer.Option(False, "--json")) -> None:
    """Nodes, power state, addresses, BMCs and the last runs."""
    info = core.status(site)
    if as_json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return
    table = Table(title=f"{info['lab']} (BMC emulator {info['bmc_emulator']})")
    for col in ("node", "role", "power", "frontend", "rails", "bmc"):
        table.add_column(col)
    for row in info["nodes"]:
        table.add_row(row["node"], row["role"], row["power"], row["frontend"],
                      " ".join(row["rails"]), row["bmc"])  # fmt: skip
    console = Console()
    console.print(table)
    for what, run in sorted(info["last_runs"].items()):
        details = ", ".join(f"{k}={v}" for k, v in sorted(run.items()) if k != "at")
        console.print(f"last {what}: {run['at']} ({details})")
    verified = info.get("last_verify")
    if verified:
        console.print(f"last verify: {verified['finished_at']}: {verified['line']}")
        console.print(f"verification report: {verified['local_report']}")


@lab_app.command("down")
def down_cmd(site: Path = SITE) -> None:
    """Remove every container, network and emulator process the lab created."""
    console = Console()
    core.down(site, say=lambda m: console.print(f"[bold]lab:[/] {m}"))


@lab_app.command("converge")
def converge_cmd(
    site: Path = SITE,
    playbook: str = typer.Option(
        "site.yml", "--playbook", help="a playbook of this repository, e.g. playbooks/fabric.yml"
    ),
    extra_var: list[str] | None = EXTRA_VAR,
    limit: str | None = LIMIT,
) -> None:
    """Run site.yml (or one phase's playbook) against the lab and print the summary table."""
    extravars = {}
    for item in extra_var or []:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise UserError(f"--extra-var {item!r}: give NAME=VALUE, e.g. haproxy_balance=session")
        extravars[name] = value
    if limit is not None:
        lab, cluster = core.open_lab(site)
        unknown = sorted(set(limit.split(",")) - {n.name for n in cluster.nodes})
        if unknown:
            raise UserError(f"--limit {limit}: {', '.join(unknown)} not in {lab.name}")
    if not converge(site, playbook, extravars=extravars, limit=limit):
        raise typer.Exit(1)


@lab_app.command("fault")
def fault_cmd(
    node: str = typer.Argument(..., help="the lab node to break"),
    site: Path = SITE,
    rail_down: int | None = typer.Option(None, "--rail-down", help="take rail N's interface down"),
    swap_rails: bool = typer.Option(False, "--swap-rails", help="swap the cables of rails 0 and 1"),
    xid: int | None = typer.Option(
        None, "--xid", help="log NVIDIA Xid CODE in the node's kernel log (48, 63, 94, 119)"
    ),
    model_server: str | None = typer.Option(
        None, "--model-server", help="make the node's model servers error, hang, slow or crash"
    ),
    nccl_degraded: bool = typer.Option(
        False, "--nccl-degraded", help="nccl-tests jobs with the node run degraded (all rails)"
    ),
    slow_gpu: bool = typer.Option(
        False, "--slow-gpu", help="cap the node's CPU, so its (CPU) burn-in measures slow"
    ),
    clear: bool = typer.Option(False, "--clear", help="undo every fault set on the node"),
) -> None:
    """Inject a fault into a lab node (the layer's checks must find it), or clear them."""
    given = (rail_down is not None, swap_rails, xid is not None, model_server is not None,
             nccl_degraded, slow_gpu, clear)  # fmt: skip
    if sum(given) != 1:
        raise UserError(
            "give exactly one of --rail-down N, --swap-rails, --xid CODE, --model-server MODE, "
            "--nccl-degraded, --slow-gpu, --clear"
        )
    console = Console()
    say = lambda m: console.print(f"[bold]lab fault:[/] {m}")  # noqa: E731
    if clear:
        faults.clear(str(site), node, say)
    elif swap_rails:
        faults.swap_rails(str(site), node, say)
    elif xid is not None:
        faults.xid(str(site), node, xid, say)
    elif model_server is not None:
        faults.model_server(str(site), node, model_server, say)
    elif nccl_degraded:
        faults.nccl_degraded(str(site), node, say)
    elif slow_gpu:
        faults.slow_gpu(str(site), node, say)
    else:
        faults.rail_down(str(site), node, int(rail_down or 0), say)


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
