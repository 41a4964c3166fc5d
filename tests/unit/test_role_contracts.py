"""Every role keeps the house contract: defaults == argument specs == README table.

Internal roles (roles/version_lock) may have several entry points and required inputs; a role
tested inside another role's scenario says so in molecule/shared-scenario.yml.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gpufleet import roledocs

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
POINTER = Path("molecule") / "shared-scenario.yml"
# The version-lock machinery lives in roles/version_lock only (issue 13): no other role writes
# apt pins or lock files, dnf version locks, or ships or runs the drift checker itself.
LOCK_MACHINERY = re.compile(
    r"gpufleet-version-drift|version-lock\.d|preferences\.d|yum_versionlock"
)


def test_there_are_roles():
    assert ROLES, "no roles found under roles/"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_match_argument_specs(role):
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    options = roledocs.load_options(role)
    optional = {name for name, opt in options.items() if not opt.get("required")}
    assert set(defaults) == optional, (
        f"only in defaults: {sorted(set(defaults) - optional)}; "
        f"only in argument_specs (and not required): {sorted(optional - set(defaults))}"
    )
    for name, opt in options.items():
        assert name.startswith(f"{role.name}_"), f"{name} does not start with {role.name}_"
        assert opt.get("description"), f"{name} has no description"
        assert opt.get("type"), f"{name} has no type"
        if name in optional:
            assert opt.get("default") == defaults[name], (
                f"{name}: spec default differs from defaults"
            )
        else:
            assert "default" not in opt, f"{name} is required and has a default"


def _scenario_target(role: Path) -> str | None:
    pointer = role / POINTER
    if not pointer.is_file():
        return None
    return (yaml.safe_load(pointer.read_text()) or {}).get("scenario")


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_layout(role):
    for part in ("README.md", "meta/main.yml", "tasks/main.yml", "tasks/preflight.yml"):
        assert (role / part).is_file(), f"{role.name} lacks {part}"
    scenarios = list((role / "molecule").glob("*/molecule.yml"))
    assert scenarios or _scenario_target(role), (
        f"{role.name} has no molecule scenario and no {POINTER} naming the one that tests it"
    )
    preflight = (role / "tasks" / "preflight.yml").read_text()
    assert "gpufleet_known_vars:" in preflight, (
        f"{role.name} preflight does not reject unknown variables (gpufleet_known_vars)"
    )


def _role_includes(role: Path) -> list[tuple[str, dict]]:
    """(task file, include_role/import_role arguments) of every such task of a role."""
    found = []
    for path in sorted((role / "tasks").glob("*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            for key in ("ansible.builtin.include_role", "ansible.builtin.import_role"):
                if isinstance(task, dict) and key in task:
                    found.append((path.name, task[key]))
    return found


def _included_roles(role: Path) -> set[str]:
    """Roles that a role's task files include or import by name."""
    return {args["name"] for _, args in _role_includes(role)}


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_included_entry_points_have_argument_specs(role):
    # Ansible checks an entry point's argument specs only when tasks_from equals its name
    # exactly: `tasks_from: install.yml` would skip the checks of entry point `install`.
    for path, args in _role_includes(role):
        target = REPO / "roles" / args["name"]
        entry = args.get("tasks_from", "main")
        specs = yaml.safe_load((target / "meta" / "argument_specs.yml").read_text())
        assert entry in specs["argument_specs"], (
            f"{role.name}/tasks/{path}: tasks_from {entry!r} of {args['name']} is not an entry"
            f" point of its meta/argument_specs.yml ({', '.join(specs['argument_specs'])})"
        )


def _converged_roles(converge: Path) -> set[str]:
    listed = {
        entry["role"] if isinstance(entry, dict) else entry
        for play in yaml.safe_load(converge.read_text())
        for entry in play.get("roles", [])
    }
    return listed | {inner for name in listed for inner in _included_roles(REPO / "roles" / name)}


@pytest.mark.parametrize("role", [r for r in ROLES if (r / POINTER).exists()], ids=lambda p: p.name)
def test_shared_scenario_exists_and_converges_the_role(role):
    target = _scenario_target(role)
    assert isinstance(target, str) and re.fullmatch(r"[a-z0-9_]+/[a-z0-9_-]+", target), (
        f"{role.name}/{POINTER}: 'scenario' must be ROLE/SCENARIO, not {target!r}"
    )
    host, scenario = target.split("/")
    assert not list((role / "molecule").glob("*/molecule.yml")), (
        f"{role.name} has its own scenario and a {POINTER}: keep one"
    )
    directory = REPO / "roles" / host / "molecule" / scenario
    assert (directory / "molecule.yml").is_file(), f"{role.name}: {target} has no molecule.yml"
    assert role.name in _converged_roles(directory / "converge.yml"), (
        f"{target}/converge.yml does not converge {role.name} (directly or through a role it lists)"
    )


@pytest.mark.parametrize(
    "role", [r for r in ROLES if r.name != "version_lock"], ids=lambda p: p.name
)
def test_only_version_lock_carries_the_lock_machinery(role):
    found = [
        str(path.relative_to(role))
        for path in sorted(p for p in role.rglob("*") if p.is_file() and "molecule" not in p.parts)
        if LOCK_MACHINERY.search(path.relative_to(role).as_posix())
        or (path.suffix in {".yml", ".j2"} and LOCK_MACHINERY.search(path.read_text()))
    ]
    assert not found, (
        f"{role.name} carries version-lock machinery (use roles/version_lock): {found}"
    )


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_readme_variables_table_is_current(role):
    current, wanted = roledocs.updated_readme(role)
    assert current == wanted, f"run: python -m gpufleet.roledocs  ({role.name}/README.md is stale)"
