"""Every role keeps the house contract: defaults == argument specs == README table."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gpufleet import roledocs

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())


def test_there_are_roles():
    assert ROLES, "no roles found under roles/"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_match_argument_specs(role):
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    options = roledocs.load_options(role)
    assert set(defaults) == set(options), (
        f"only in defaults: {sorted(set(defaults) - set(options))}; "
        f"only in argument_specs: {sorted(set(options) - set(defaults))}"
    )
    for name, opt in options.items():
        assert name.startswith(f"{role.name}_"), f"{name} does not start with {role.name}_"
        assert opt.get("description"), f"{name} has no description"
        assert opt.get("type"), f"{name} has no type"
        assert opt.get("default") == defaults[name], f"{name}: spec default differs from defaults"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_layout(role):
    for part in ("README.md", "meta/main.yml", "tasks/main.yml", "tasks/preflight.yml"):
        assert (role / part).is_file(), f"{role.name} lacks {part}"
    scenarios = list((role / "molecule").glob("*/molecule.yml"))
    assert scenarios, f"{role.name} has no molecule scenario"
    preflight = (role / "tasks" / "preflight.yml").read_text()
    assert "varnames" in preflight, f"{role.name} preflight does not reject unknown variables"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_readme_variables_table_is_current(role):
    current, wanted = roledocs.updated_readme(role)
    assert current == wanted, f"run: python -m gpufleet.roledocs  ({role.name}/README.md is stale)"
