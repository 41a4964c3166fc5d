"""`gpufleet verify simulate`: run the fault-isolation planner on a simulated cluster."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from gpufleet.errors import Problem, UserError
from gpufleet.verify.isolation import FabricLayout, rail_optimized_layout, units_layout
from gpufleet.verify.simulate import (
    Fault,
    FaultKind,
    Outcome,
    SimCluster,
    inject_faults,
    run_adaptive,
    run_naive,
)
from gpufleet.verify.site import nodes_per_leaf as site_nodes_per_leaf
from gpufleet.verify.site import site_layout
from gpufleet.verify.verdict import Status


def _hms(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes >= 60 * 24:
        return f"{minutes / 60 / 24:.1f} d"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _check_args(
    nodes: int,
    faults: int,
    rails: int,
    nodes_per_leaf: int,
    kinds: list[str],
    noise: float = 0.025,
) -> None:
    problems: list[Problem] = []
    if nodes < 2:
        problems.append(Problem("--nodes", f"{nodes}", "give at least 2 nodes"))
    if faults < 0:
        problems.append(Problem("--faults", f"{faults}", "give 0 or more faults"))
    elif nodes >= 2 and faults > nodes // 2:
        problems.append(
            Problem("--faults", f"{faults} faults in {nodes} nodes", "inject at most half as many")
        )
    if rails < 1:
        problems.append(Problem("--rails", f"{rails}", "give at least 1 rail"))
    if nodes_per_leaf < 1:
        problems.append(Problem("--nodes-per-leaf", f"{nodes_per_leaf}", "give at least 1"))
    if not 0 <= noise < 0.5:
        problems.append(Problem("--noise", f"{noise}", "give a fraction from 0 to 0.5, e.g. 0.05"))
    known = [k.value for k in FaultKind]
    for kind in kinds:
        if kind not in known:
            problems.append(Problem("--kind", f"unknown kind {kind!r}", f"use one of {known}"))
    if problems:
        raise UserError(problems, title="cannot simulate:")


def _parse_units(text: str | None) -> list[int] | None:
    """--units 1,3,5: leaf group sizes."""
    if text is None:
        return None
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise UserError(
            [Problem("--units", f"{text!r}", "give leaf group sizes of 1 or more, e.g. 1,3,5")],
            title="cannot simulate:",
        )
    return sizes


def _print_outcome(console: Console, outcome: Outcome, show_all: bool) -> None:
    rounds = Table(title=f"{outcome.plan} plan: {len(outcome.rounds)} rounds")
    for col in ("round", "phase", "tests", "nodes", "simulated", "summary"):
        rounds.add_column(col)
    shown = outcome.rounds if len(outcome.rounds) <= 20 else outcome.rounds[:10]
    for rec in shown:
        rounds.add_row(
            str(rec.index),
            rec.phase,
            str(rec.tests),
            str(rec.nodes),
            _hms(rec.seconds),
            rec.summary.split(": ", 1)[-1],
        )
    if len(shown) < len(outcome.rounds):
        rest = outcome.rounds[len(shown) :]
        rounds.add_row(
            "...",
            "pair",
            str(sum(r.tests for r in rest)),
            "2 each",
            _hms(sum(r.seconds for r in rest)),
            f"{len(rest)} more rounds, one pair test each",
        )
    console.print(rounds)
    verdicts = Table(title=f"{outcome.plan} plan: verdicts")
    for col in ("status", "subject", "reason"):
        verdicts.add_column(col, overflow="fold")
    hidden = 0
    for verdict in outcome.verdicts:
        if verdict.status is Status.PASS and not show_all:
            hidden += 1
            continue
        verdicts.add_row(verdict.status.value, verdict.subject, " / ".join(verdict.reasons))
    console.print(verdicts)
    if hidden:
        console.print(f"{hidden} passing verdicts not shown (--all-verdicts shows them)")
    acc = outcome.accuracy
    console.print(
        f"{outcome.plan}: {acc.identified}/{acc.faults} faults identified, "
        f"{len(acc.localized)} localized to candidates, {len(acc.missed)} missed, "
        f"{len(acc.healthy_nodes_blamed)} healthy nodes and "
        f"{len(acc.healthy_leaves_blamed)} healthy leaf switches blamed, "
        f"{outcome.tests} tests in {len(outcome.rounds)} rounds, "
        f"simulated {_hms(outcome.wall_s)}"
    )
    if acc.missed:
        console.print(f"missed: {'; '.join(acc.missed)}")
    if acc.healthy_nodes_blamed:
        console.print(f"healthy nodes blamed: {', '.join(acc.healthy_nodes_blamed[:20])}")


Shape = tuple[int | None, int | None, int | None]  # --nodes, --rails, --nodes-per-leaf


def _layout(
    site: Path | None,
    shape: Shape,
    units: list[int] | None,
    faults: int,
    kinds: list[str],
    noise: float,
) -> tuple[str | None, FabricLayout]:
    """The site's layout (--site), uneven leaf groups (--units), or a rail-optimized
    one of the given shape; the arguments checked, every problem at once."""
    if site is not None or units is not None:
        names = ("--nodes", "--rails", "--nodes-per-leaf")
        given = [name for name, value in zip(names, shape, strict=True) if value is not None]
        if units is not None:
            given = [name for name in given if name != "--rails"]
        if site is not None and units is not None:
            given.append("--units")
        if given:
            what = "--site" if site is not None else "--units"
            raise UserError(
                [Problem(o, f"given together with {what}", f"{what} sets it") for o in given]
            )
    if site is not None:
        name, layout = site_layout(site)
        _check_args(len(layout.nodes), faults, layout.rails, 1, kinds, noise)
        return name, layout
    rails = shape[1] if shape[1] is not None else 8
    if units is not None:
        _check_args(sum(units), faults, rails, 1, kinds, noise)
        return None, units_layout(units, rails=rails)
    nodes = shape[0] if shape[0] is not None else 64
    per_leaf = shape[2] if shape[2] is not None else 32
    _check_args(nodes, faults, rails, per_leaf, kinds, noise)
    return None, rail_optimized_layout(nodes, rails=rails, nodes_per_leaf=per_leaf)


# List and path options' defaults live at module level (ruff B008: no calls in defaults).
_SITE_OPTION = typer.Option(
    None, "--site", help="Plan on this site's GPU nodes, rails and leaf switches."
)
_KIND_OPTION = typer.Option(
    None, "--kind", help="Fault kind to inject (gpu, nic, straggler, leaf); repeatable."
)
_NOISE_OPTION = typer.Option(
    0.025, "--noise", help="Measurement noise of every simulated result (0.05: within 5%)."
)
_UNITS_OPTION = typer.Option(
    None, "--units", help="Leaf group sizes, e.g. 1,3,5 (uneven leaves; instead of --nodes)."
)


def _print_run(
    title: str, injected: list[Fault], adaptive: Outcome, baseline: Outcome | None, show_all: bool
) -> None:
    console = Console()
    table = Table(title=title)
    table.add_column("injected fault")
    for fault in injected:
        table.add_row(fault.describe())
    if not injected:
        table.add_row("(none)")
    console.print(table)
    _print_outcome(console, adaptive, show_all)
    nodes = sum(1 for v in adaptive.verdicts if v.metrics.get("scope") == "node")
    bound = math.log2(max(2, nodes)) + 3
    console.print(f"round bound log2(N)+3 = {bound:.1f}; rounds used: {len(adaptive.rounds)}")
    if baseline is not None:
        acc = baseline.accuracy
        console.print(
            f"naive: {acc.identified}/{acc.faults} faults identified, "
            f"{len(acc.healthy_nodes_blamed)} healthy nodes blamed, "
            f"{len(baseline.rounds)} rounds, simulated {_hms(baseline.wall_s)}"
        )


def register_isolation(verify_app: typer.Typer) -> None:
    """Add `simulate` to the `gpufleet verify` sub-app."""

    @verify_app.command("simulate")
    def simulate(
        nodes: int | None = typer.Option(None, "--nodes", help="Nodes (default 64)."),
        faults: int = typer.Option(4, "--faults", help="Faults to inject (mixed kinds)."),
        seed: int = typer.Option(0, "--seed", help="Seed for faults and noise."),
        rails: int | None = typer.Option(None, "--rails", help="Rails per node (default 8)."),
        nodes_per_leaf: int | None = typer.Option(
            None, "--nodes-per-leaf", help="Nodes under one leaf per rail (default 32)."
        ),
        units: str | None = _UNITS_OPTION,
        site: Path | None = _SITE_OPTION,
        noise: float = _NOISE_OPTION,
        kind: list[str] | None = _KIND_OPTION,
        naive: bool = typer.Option(False, "--naive", help="Also run the naive plan."),
        show_all: bool = typer.Option(False, "--all-verdicts", help="Show passing verdicts too."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
    ) -> None:
        """Inject faults into a simulated cluster and let the isolation planner find them.
        The planner is not told the noise: it estimates it from the results."""
        kind = kind or []
        sizes = _parse_units(units)
        shape = (nodes, rails, nodes_per_leaf)
        name, layout = _layout(site, shape, sizes, faults, kind, noise)
        kinds = tuple(FaultKind(k) for k in kind) or tuple(FaultKind)
        injected = inject_faults(layout, faults, seed, kinds)
        adaptive = run_adaptive(
            SimCluster(layout, injected, seed, noise=noise), include_passing_nics=show_all
        )
        baseline = run_naive(SimCluster(layout, injected, seed, noise=noise)) if naive else None
        per_leaf = site_nodes_per_leaf(layout)
        if not as_json:
            where = f"site {name}: " if name else ""
            title = (
                f"{where}{len(layout.nodes)} nodes, {layout.rails} rails, up to {per_leaf} "
                "nodes per leaf"
            )
            _print_run(title, injected, adaptive, baseline, show_all)
            return
        data: dict[str, object] = {
            "site": name,
            "nodes": len(layout.nodes),
            "rails": layout.rails,
            "nodes_per_leaf": per_leaf,
            "units": sizes,
            "noise": noise,
            "seed": seed,
            "round_bound": round(math.log2(len(layout.nodes)) + 3, 2),
            "faults": [f.to_dict() for f in injected],
            "adaptive": adaptive.to_dict(),
        }
        if baseline is not None:
            data["naive"] = baseline.to_dict(verdicts=False)
        typer.echo(json.dumps(data, indent=2))
