"""site.yml's phases in order: AIDE's first database after every phase that installs files, the
verification's FAIL verdict after that database; and the lab's AIDE nodes.

Loads the real site.yml and roles with Ansible's own playbook loader; the lab inventory is the
one `gpufleet lab up` renders from inventories/lab/cluster.yaml.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.playbook import Playbook
from ansible.playbook.block import Block
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template
from ansible.vars.manager import VariableManager

from gpufleet.errors import UserError
from gpufleet.inventory import render_inventory, write_inventory
from gpufleet.lab import core
from gpufleet.model import load_cluster

REPO = Path(__file__).resolve().parents[2]
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the loader may already be set up by another test module
    init_plugin_loader()


def _plays(inventory: str) -> tuple[list, VariableManager]:
    loader = DataLoader()
    manager = VariableManager(
        loader=loader, inventory=InventoryManager(loader=loader, sources=[inventory])
    )
    playbook = Playbook.load(str(REPO / "site.yml"), variable_manager=manager, loader=loader)
    return playbook.get_plays(), manager


def _tasks(play) -> list:
    """Every task of the play, blocks of roles and of blocks flattened."""

    def flat(items: list) -> list:
        out = []
        for item in items:
            if isinstance(item, Block):
                out.extend(flat(item.block + item.rescue + item.always))
            elif item.action != "meta":  # compile() adds the implicit handler flushes
                out.append(item)
        return out

    return flat(play.compile())


def _includes_role(play, role: str) -> list[dict]:
    """The include_role arguments of the play's tasks that include `role`."""
    return [t.args for t in _tasks(play)
            if t.action in ("ansible.builtin.include_role", "include_role")
            and t.args.get("name") == role]  # fmt: skip


def test_aide_baseline_follows_every_phase_and_the_verdict_follows_the_baseline():
    plays, _ = _plays(str(REPO / "inventories/lab/hosts.yml"))
    names = [p.get_name() for p in plays]
    integrity = [i for i, n in enumerate(names) if n.startswith("Integrity")]
    assert len(integrity) == 1, names
    at = integrity[0]
    # The database after every phase that installs something (the verification's tools on the
    # GPU nodes and its driver on the head node included); only the verdict comes after it.
    assert names[at + 1 :] == ["Verify | the verdict"], names
    assert any(n.startswith("Verify | burn-in") for n in names[:at]), names
    baseline = _includes_role(plays[at], "hardening_os")
    assert [a.get("tasks_from") for a in baseline] == ["aide_init.yml"]
    # The hardening phase leaves the database to it. The verdict is one play
    # (playbooks/verify-verdict.yml): verify.yml's copy of it is deferred, the last one is not.
    for play in plays[:at]:
        if play.get_name().startswith(("Harden", "Hardening")):
            assert play.vars.get("hardening_os_aide_init") is False, play.get_name()
        if play.get_name().startswith("Verify"):
            assert play.vars.get("gpufleet_verify_defer_verdict") is True, play.get_name()
    verdicts = [p for p in plays if p.get_name() == "Verify | the verdict"]
    assert len(verdicts) == 2 and verdicts[-1] is plays[-1]
    assert "gpufleet_verify_defer_verdict" not in plays[-1].vars
    fail = _tasks(plays[-1])
    assert [t.action for t in fail] == ["ansible.builtin.fail"]
    assert "not (gpufleet_verify_defer_verdict | default(false))" in fail[0].when
    assert any("'fail'" in w for w in fail[0].when)
    # No other play fails on the verdict.
    others = [t for p in plays[:-1] if p is not verdicts[0] for t in _tasks(p)
              if t.action == "ansible.builtin.fail"
              and "gpufleet_verify_summary" in str(t.args.get("msg", ""))]  # fmt: skip
    assert others == []


def test_verify_alone_ends_with_the_verdict_it_does_not_defer():
    """playbooks/verify.yml by itself (`gpufleet verify run`) fails on a FAIL verdict."""
    playbook = Playbook.load(
        str(REPO / "playbooks/verify.yml"),
        loader=DataLoader(),
        variable_manager=_plays(str(REPO / "inventories/lab/hosts.yml"))[1],
    )
    plays = playbook.get_plays()
    assert plays[-1].get_name() == "Verify | the verdict"
    assert not any("gpufleet_verify_defer_verdict" in p.vars for p in plays)


def test_the_role_alone_still_creates_the_database_at_its_end():
    """Outside site.yml (molecule, playbooks/hardening.yml alone) hardening_os_aide_init keeps
    its default, true, and the role's integrity tasks import aide_init.yml under it."""
    defaults = yaml.safe_load((REPO / "roles/hardening_os/defaults/main.yml").read_text())
    assert defaults["hardening_os_aide_init"] is True
    tasks = yaml.safe_load((REPO / "roles/hardening_os/tasks/integrity.yml").read_text())
    imports = [t for t in tasks if t.get("ansible.builtin.import_tasks") == "aide_init.yml"]
    assert len(imports) == 1 and imports[0]["when"] == "hardening_os_aide_init"
    init = yaml.safe_load((REPO / "roles/hardening_os/tasks/aide_init.yml").read_text())
    assert init[0]["ansible.builtin.command"]["creates"] == "/var/lib/aide/aide.db"


def _lab_aide(tmp_path: Path, monkeypatch, value: str | None) -> dict[str, bool]:
    """hardening_os_aide_enabled per host of the lab inventory, with lab_aide_vars() written
    beside it as `gpufleet lab up` does."""
    if value is None:
        monkeypatch.delenv("GPUFLEET_LAB_AIDE", raising=False)
    else:
        monkeypatch.setenv("GPUFLEET_LAB_AIDE", value)
    site = tmp_path / "lab"
    write_inventory(site, render_inventory(load_cluster(REPO / "inventories/lab/cluster.yaml")))
    (site / core.CONNECTION_FILE).write_text(core.lab_aide_vars())
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(site / "hosts.yml")])
    manager = VariableManager(loader=loader, inventory=inventory)
    out = {}
    for host in inventory.get_hosts():
        hostvars = manager.get_vars(host=host)
        raw = hostvars.get("hardening_os_aide_enabled", True)
        templar = Templar(loader=loader, variables=hostvars)
        out[host.name] = templar.template(trust_as_template(raw) if isinstance(raw, str) else raw)
    return out


def test_the_lab_runs_aide_on_its_first_gpu_and_head_node(tmp_path, monkeypatch):
    enabled = _lab_aide(tmp_path, monkeypatch, None)
    assert {h for h, on in enabled.items() if on} == {"gpu1", "head1"}, enabled
    assert len(enabled) == 7


def test_gpufleet_lab_aide_all_runs_it_on_every_node(tmp_path, monkeypatch):
    enabled = _lab_aide(tmp_path, monkeypatch, "all")
    assert len(enabled) == 7 and all(v is True for v in enabled.values()), enabled


@pytest.mark.parametrize("value", ["ALL", "gpu1", "none", " all"])
def test_a_wrong_gpufleet_lab_aide_is_named(monkeypatch, value):
    monkeypatch.setenv("GPUFLEET_LAB_AIDE", value)
    with pytest.raises(UserError) as err:
        core.lab_aide_vars()
    assert f"GPUFLEET_LAB_AIDE={value!r}" in str(err.value)
    assert "'all'" in str(err.value)
