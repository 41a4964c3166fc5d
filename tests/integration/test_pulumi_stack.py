"""stacks/cluster for real: the pinned Pulumi CLI on a file backend, 4 emulated servers
behind HTTP basic auth, their BMC password a secret of the stack's config.

1. up: power on, a one-time PXE override armed and used by that power-on (the
   emulator models Once), hosts.yml written; a second up with --refresh changes
   nothing and arms nothing.
2. The BMC password is rotated (at the BMCs and with `pulumi config set --secret`):
   the next up updates nothing, the boot overrides are untouched, a refresh
   reaches every BMC with the new password; no password is in the state.
3. An override set by hand at a BMC: refresh shows the drift, up repairs it.
4. A reinstall token for one node arms its override once; a changed boot target
   previews as exactly one update.
5. destroy puts back the overrides found and leaves power alone.
"""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import json_documents, run_pulumi
from redfish_fixtures import REPO, SushyEmulator, site_node_names, write_site

from gpufleet.inventory import render_inventory
from gpufleet.model import load_cluster

OLD_PASSWORD = "e2e-Bmc-Pa55-4c1d"  # constructed: grepped for in the state below
NEW_PASSWORD = "e2e-Rotated-9f7e-Pa55"  # constructed
STACK = REPO / "stacks" / "cluster"


@pytest.fixture
def four_servers(tmp_path):
    emu = SushyEmulator(
        tmp_path / "emu", site_node_names(4), credentials=("admin", OLD_PASSWORD)
    ).start()
    try:
        yield emu
    finally:
        emu.stop()


def _changes(output: str) -> dict[str, int]:
    events = json_documents(output)
    summary = next(e["summaryEvent"] for e in events if "summaryEvent" in e)
    assert summary["result"] == "succeeded", summary
    return dict(summary["resourceChanges"])


def _changed_urns(output: str) -> list[str]:
    """URNs of the resources an `up --json`/`refresh --json` run changed."""
    out = []
    for event in json_documents(output):
        step = (event.get("resOutputsEvent") or {}).get("metadata") or {}
        if step.get("op") in ("update", "replace", "create", "delete"):
            out.append(step["urn"])
    return out


def _overrides(emu: SushyEmulator) -> dict[str, tuple[str, str]]:
    boots = {n: emu.system(n)["Boot"] for n in emu.names}
    return {
        n: (b["BootSourceOverrideTarget"], b["BootSourceOverrideEnabled"]) for n, b in boots.items()
    }


def test_up_rotate_drift_reinstall_destroy(pulumi_env, tmp_path, four_servers):
    emu = four_servers
    site_dir = tmp_path / "site"
    spec_file = write_site(site_dir, emu, password={"secret": "bmcPassword"})
    project = tmp_path / "project"
    shutil.copytree(STACK, project, ignore=shutil.ignore_patterns("Pulumi.*.yaml", "__pycache__"))
    backend = tmp_path / "state"
    backend.mkdir()
    env = {**pulumi_env, "PULUMI_BACKEND_URL": f"file://{backend}", "PYTHONPATH": str(REPO / "src")}

    run_pulumi(env, project, "stack", "init", "e2e")
    for key, value in (
        ("spec", str(spec_file)),
        ("powerTimeout", "60"),
        ("powerPollInterval", "1"),
        ("bmcTimeout", "10"),
        ("bmcRetries", "1"),
    ):
        run_pulumi(env, project, "config", "set", key, value)
    run_pulumi(env, project, "config", "set", "--secret", "bmcPassword", OLD_PASSWORD)

    # 1. up: the one-time PXE override is armed, then used by the power-on.
    run_pulumi(env, project, "up", "--yes")
    for name in emu.names:
        system = emu.system(name)
        assert system["PowerState"] == "On", name
        assert system["Boot"]["BootSourceOverrideTarget"] == "Pxe", name
        assert system["Boot"]["BootSourceOverrideMode"] == "UEFI", name
    assert set(_overrides(emu).values()) == {("Pxe", "Disabled")}  # booted once from PXE
    expected = render_inventory(load_cluster(spec_file))
    assert (site_dir / "hosts.yml").read_text() == expected["hosts.yml"]
    outputs = json.loads(run_pulumi(env, project, "stack", "output", "--json"))
    assert outputs["servers"]["gpu1"]["manufacturer"] == "Sushy Emulator"
    assert outputs["servers"]["gpu1"]["power_state"] == "On"
    assert outputs["vips"][0]["holders"] == ["lb1", "lb2"]
    assert set(outputs["addresses"]) == set(emu.names)

    again = run_pulumi(env, project, "up", "--yes", "--refresh", "--json")
    assert set(_changes(again)) == {"same"}, _changes(again)
    assert set(_overrides(emu).values()) == {("Pxe", "Disabled")}  # used, not armed again

    # 2. Rotate the BMC password: nothing to update, the BMCs left alone.
    emu.set_password("admin", NEW_PASSWORD)
    run_pulumi(env, project, "config", "set", "--secret", "bmcPassword", NEW_PASSWORD)
    before = _overrides(emu)
    rotated = run_pulumi(env, project, "up", "--yes", "--json")
    assert set(_changes(rotated)) == {"same"}, _changes(rotated)
    assert _overrides(emu) == before
    refreshed = run_pulumi(env, project, "refresh", "--yes", "--json")  # every BMC, new password
    assert set(_changes(refreshed)) == {"same"}, _changes(refreshed)
    config_text = (project / "Pulumi.e2e.yaml").read_text()
    assert "bmcPassword:" in config_text and "secure:" in config_text
    exported = run_pulumi(env, project, "stack", "export")
    stored = [p for p in backend.rglob("*") if p.is_file()]
    for secret in (OLD_PASSWORD, NEW_PASSWORD):
        assert secret not in exported and secret not in config_text
        for path in stored:
            assert secret not in path.read_text(errors="replace"), path
    assert '"password"' not in exported  # not even as ciphertext: resources carry a reference
    assert '"password_ref"' in exported and "gpufleet-cluster:bmcPassword" in exported

    # 3. An override set by hand is drift: refresh shows it, up repairs it.
    emu.set_boot("gpu1", Target="Hdd", Enabled="Continuous")
    drift = run_pulumi(env, project, "refresh", "--yes", "--json")
    assert _changes(drift).get("update") == 1, _changes(drift)
    repair = run_pulumi(env, project, "up", "--yes", "--json")
    assert _changes(repair).get("update") == 1, _changes(repair)
    assert [u.rsplit("::", 1)[1] for u in _changed_urns(repair)] == ["gpu1-boot"]
    assert _overrides(emu)["gpu1"][1] == "Disabled"  # cleared: the stack's Once was used
    settled = run_pulumi(env, project, "up", "--yes", "--refresh", "--json")
    assert set(_changes(settled)) == {"same"}, _changes(settled)

    # 4. A reinstall of one node: its override armed once, nothing else touched.
    run_pulumi(env, project, "config", "set", "--path", "nodes.gpu1.reinstall", "2026-12-02")
    reinstall = run_pulumi(env, project, "up", "--yes", "--json")
    assert [u.rsplit("::", 1)[1] for u in _changed_urns(reinstall)] == ["gpu1-boot"]
    overrides = _overrides(emu)
    assert overrides["gpu1"] == ("Pxe", "Once")  # pending until gpu1 next boots
    assert {overrides[n] for n in emu.names if n != "gpu1"} == {("Pxe", "Disabled")}
    run_pulumi(env, project, "config", "set", "--path", "nodes.gpu1.bootTarget", "Hdd")
    preview = json.loads(run_pulumi(env, project, "preview", "--json"))
    changes = preview["changeSummary"]
    assert changes.get("update") == 1 and set(changes) == {"same", "update"}, changes
    updated = [s["urn"] for s in preview["steps"] if s["op"] == "update"]
    assert len(updated) == 1 and updated[0].endswith("::gpu1-boot")
    assert emu.system("gpu1")["Boot"]["BootSourceOverrideTarget"] == "Pxe"  # preview only

    # 5. destroy: the overrides found at the start (none) are put back, power left alone.
    run_pulumi(env, project, "destroy", "--yes")
    for name in emu.names:
        system = emu.system(name)
        assert system["Boot"]["BootSourceOverrideEnabled"] == "Disabled", name
        assert system["PowerState"] == "On", name  # power left alone (docs/pulumi.md)
    state = json.loads(run_pulumi(env, project, "stack", "export"))
    resources = state["deployment"].get("resources")
    assert not resources


def test_adopt_running_servers_without_touching_them(pulumi_env, tmp_path):
    """A rack already running (powered on, no override): with `adopt` each server's
    resources are created by Redfish reads only; no PATCH and no reset reaches a BMC,
    and the next up (with refresh) is a no-op."""
    emu = SushyEmulator(tmp_path / "emu", site_node_names(4), power_state="On").start()
    try:
        spec_file = write_site(tmp_path / "site", emu, password={"env": "ADOPT_BMC_PASSWORD"})
        project = tmp_path / "project"
        shutil.copytree(
            STACK, project, ignore=shutil.ignore_patterns("Pulumi.*.yaml", "__pycache__")
        )
        (tmp_path / "state").mkdir()
        env = {
            **pulumi_env,
            "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
            "PYTHONPATH": str(REPO / "src"),
            "ADOPT_BMC_PASSWORD": "not-checked-by-this-emulator",
        }
        run_pulumi(env, project, "stack", "init", "adopt")
        for key, value in (("spec", str(spec_file)), ("adopt", "true"), ("bmcRetries", "1")):
            run_pulumi(env, project, "config", "set", key, value)
        log = emu.workdir / "emulator.log"
        adopted = run_pulumi(env, project, "up", "--yes", "--json")
        changes = _changes(adopted)
        assert changes.get("create", 0) >= 4 * 3, changes  # inventory, boot, power per server
        assert "update" not in changes and "replace" not in changes, changes
        assert "PATCH /redfish" not in log.read_text()
        assert "ComputerSystem.Reset" not in log.read_text()
        assert set(_overrides(emu).values()) == {("Hdd", "Disabled")}  # as found
        again = run_pulumi(env, project, "up", "--yes", "--refresh", "--json")
        assert set(_changes(again)) == {"same"}, _changes(again)
        assert "PATCH /redfish" not in log.read_text()
    finally:
        emu.stop()
