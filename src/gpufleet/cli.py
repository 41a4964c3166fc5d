"""The `gpufleet` command line.

The site commands live here: `validate`, `plan` and `inventory` read a site
through `gpufleet.model.load_cluster`. Verification (`gpufleet.verify.cli`)
and the lab (`gpufleet.lab.cli`) register their own sub-commands. `main` turns
`UserError` into one line per problem and exit code 2.

SITE is a site directory (`inventories/example-ib`), a site name
(`example-ib`, looked up under ./inventories) or a path to a cluster.yaml.
Bad input writes nothing.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import typer

from gpufleet.errors import UserError
from gpufleet.inventory import render_inventory, write_inventory
from gpufleet.model import Cluster, load_cluster
from gpufleet.plan import plan_dict, plan_tables
from gpufleet.spec.loader import resolve_spec_path

# Modules that expose `register(app: typer.Typer) -> None`, by the command they add.
COMMAND_MODULES: tuple[str, ...] = (
    "gpufleet.verify.cli",
    "gpufleet.lab.cli",
)
_SUBCOMMAND_OF = {"gpufleet.verify.cli": "verify", "gpufleet.lab.cli": "lab"}
SITE_COMMANDS = ("validate", "plan", "inventory")

DEFAULT_SITE = "inventories/lab"
_SITE_HELP = "Site directory, site name or path to cluster.yaml."
_JSON_HELP = "Machine-readable output."

_DEBUG = {"on": False}


def _load(site: str, as_json: bool) -> Cluster:
    file = resolve_spec_path(site)
    try:
        return load_cluster(file)
    except UserError as err:
        if as_json:
            problems = [
                {"path": p.path, "message": p.message, "hint": p.hint} for p in err.problems
            ]
            typer.echo(json.dumps({"ok": False, "spec": str(file), "problems": problems}, indent=2))
        raise


def _json_rows(data: dict[str, Any]) -> str:
    """JSON with one line per list item: a 4,096-node plan prints in a fraction of the time.

    `json.dumps(indent=...)` falls back to the pure-Python encoder (0.5 s for a
    4,096-node plan); each row here goes through the C encoder, and one node per
    line is also what a person greps for.
    """
    fields = []
    for key, value in data.items():
        name = json.dumps(key)
        if isinstance(value, list) and value:
            rows = ",\n".join("    " + json.dumps(item, separators=(", ", ": ")) for item in value)
            fields.append(f"  {name}: [\n{rows}\n  ]")
        else:
            fields.append(f"  {name}: {json.dumps(value, separators=(', ', ': '))}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def _spec_file(cluster: Cluster) -> Path:
    if cluster.spec_file is None:
        raise UserError("the cluster was not read from a file")
    return cluster.spec_file


def _summary(cluster: Cluster) -> dict[str, Any]:
    roles = {r: len(cluster.nodes_by_role(r)) for r in ("gpu", "head", "lb", "monitoring")}
    fabric = cluster.fabric
    return {
        "ok": True,
        "spec": str(_spec_file(cluster)),
        "site": cluster.site.name,
        "nodes": len(cluster.nodes),
        "roles": roles,
        "fabric": {"type": fabric.type, "rails": len(fabric.rails)} if fabric else None,
        "vips": [v.name for v in cluster.vips],
    }


def validate(
    site: str = typer.Argument(DEFAULT_SITE, help=_SITE_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Validate cluster.yaml: every problem with its path and a fix (exit 2 on errors)."""
    cluster = _load(site, as_json)
    info = _summary(cluster)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    roles = ", ".join(f"{n} {r}" for r, n in info["roles"].items())
    fab = info["fabric"]
    rails = f", {fab['type']} fabric with {fab['rails']} rails" if fab else ""
    typer.echo(
        f"{typer.style('ok', fg='green')} {info['spec']}: site {cluster.site.name},"
        f" {len(cluster.nodes)} nodes ({roles}){rails}"
    )


def plan(
    site: str = typer.Argument(DEFAULT_SITE, help=_SITE_HELP),
    network: str | None = typer.Option(None, "--network", help="Only this network (e.g. rail0)."),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Show the address plan: one table per network."""
    cluster = _load(site, as_json)
    names = [s.name for s in cluster.subnets]
    if network is not None and network not in names:
        raise UserError(f"--network {network}: no such network (known: {', '.join(names)})")
    if as_json:
        sys.stdout.write(_json_rows(plan_dict(cluster, network)))
    else:
        sys.stdout.write(plan_tables(cluster, network))


def inventory(
    site: str = typer.Argument(DEFAULT_SITE, help=_SITE_HELP),
    write: bool = typer.Option(
        False, "--write", help="Write hosts.yml and group_vars next to cluster.yaml."
    ),
    check: bool = typer.Option(
        False, "--check", help="Exit 1 if the written inventory is out of date."
    ),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Render the Ansible inventory (print it, --write it, or --check it is current)."""
    cluster = _load(site, as_json)
    files = render_inventory(cluster)
    site_dir = _spec_file(cluster).parent
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


def _modules_for(argv: Sequence[str] | None) -> tuple[str, ...]:
    """The command modules a command line needs: a command line that names its command
    imports only that module (verify and the lab take about half a second to import,
    a site command needs neither); help and anything unknown get them all."""
    if argv is None:
        return COMMAND_MODULES
    words = [a for a in argv if not a.startswith("-")]
    first = words[0] if words else ""
    if first in SITE_COMMANDS:
        return ()
    named = tuple(m for m in COMMAND_MODULES if _SUBCOMMAND_OF.get(m) == first)
    return named or COMMAND_MODULES


def build_app(argv: Sequence[str] | None = None) -> typer.Typer:
    """The app; with `argv`, only the command modules that command line needs."""
    app = typer.Typer(
        name="gpufleet",
        help="Bare-metal GPU clusters: spec, plan, inventory, lab and verification.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root(
        debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    ) -> None:
        _DEBUG["on"] = debug

    app.command("validate")(validate)
    app.command("plan")(plan)
    app.command("inventory")(inventory)
    for name in _modules_for(argv):
        importlib.import_module(name).register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    app = build_app(args)
    debug = "--debug" in args
    try:
        # With standalone_mode=False click returns the exit code of typer.Exit.
        code = app(args=argv, standalone_mode=False)
    except UserError as err:
        if debug:
            raise
        print(err.render(), file=sys.stderr)
        return err.exit_code
    except typer.Exit as ex:
        return ex.exit_code
    except click.exceptions.ClickException as err:  # usage errors
        err.show()
        return 2
    except click.exceptions.Abort:
        return 130
    except Exception as err:
        if debug:
            raise
        print(f"error: {err} (run with --debug for the traceback)", file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
