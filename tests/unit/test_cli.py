"""The command line imports what the command needs: a site command skips verify and the lab."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpufleet import cli

ROOT = Path(__file__).resolve().parents[2]
ALL = cli.COMMAND_MODULES


@pytest.mark.parametrize(
    ("argv", "modules"),
    [
        (["validate", "inventories/lab"], ()),
        (["--debug", "plan", "--json", "x"], ()),
        (["inventory", "--write"], ()),
        (["verify", "nccl", "plan.log"], ("gpufleet.verify.cli",)),
        (["--debug", "lab", "status"], ("gpufleet.lab.cli",)),
        ([], ALL),
        (["--help"], ALL),
        (["no-such-command"], ALL),
    ],
)
def test_modules_for_a_command_line(argv: list[str], modules: tuple[str, ...]) -> None:
    assert cli._modules_for(argv) == modules


def test_a_site_command_does_not_import_verify_or_the_lab() -> None:
    code = (
        "import sys, gpufleet.cli as c; rc = c.main(['validate', 'inventories/lab']); "
        "print(rc, sorted(m for m in sys.modules"
        " if m.startswith(('gpufleet.verify', 'gpufleet.lab'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, check=False
    )
    assert run.stdout.strip().splitlines()[-1] == "0 []", run.stdout + run.stderr


def test_help_still_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("validate", "plan", "inventory", "verify", "lab"):
        assert f" {command} " in out
