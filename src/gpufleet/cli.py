"""The `gpufleet` command line.

Each area of the product registers its own commands: spec/plan/inventory
(`gpufleet.spec.cli`), verification (`gpufleet.verify.cli`), the lab
(`gpufleet.lab.cli`). This module only wires them together and turns
`UserError` into one line per problem and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

from gpufleet.errors import UserError

# Modules that expose `register(app: typer.Typer) -> None`.
COMMAND_MODULES: tuple[str, ...] = (
    "gpufleet.spec.cli",
    "gpufleet.verify.cli",
    "gpufleet.lab.cli",
)

_DEBUG = {"on": False}


def build_app() -> typer.Typer:
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

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    app = build_app()
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
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
    except Exception as err:  # click usage errors and the like
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            return 2
        if isinstance(err, click.exceptions.Abort):
            return 130
        if debug:
            raise
        print(f"error: {err} (run with --debug for the traceback)", file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
