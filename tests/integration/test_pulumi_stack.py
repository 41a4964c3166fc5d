"""stacks/cluster for real: the pinned Pulumi CLI on a file backend, 4 emulated servers.

up sets power and boot override (read back over Redfish) and writes hosts.yml ->
a second up changes nothing -> a changed boot target previews as exactly one
update -> destroy completes. The state never holds the BMC password in clear.
"""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import json_documents, run_pulumi
from redfish_fixtures import REPO, SushyEmulator, site_node_names, write_site

from gpufleet.inventory import render_inventory
from gpufleet.model import load_cluster

PASSWORD = "e2e-Bmc-Pa55-4c1d"  # constructed: grepped for in the state below
STACK = REPO / "stacks" / "cluster"


@pytest.fixture
def four_servers(tmp_path):
    emu = SushyEmulator(tmp_path / "emu", site_node_names(4)).start()
    try:
        yield emu
    finally:
        emu.stop()


def test_up_noop_preview_destroy(pulumi_env, tmp_path, four_servers):
    emu = four_servers
    site_dir = tmp_path / "site"
    spec_file = write_site(site_dir, emu)
    project = tmp_path / "project"
    shutil.copytree(STACK, project, ignore=shutil.ignore_patterns("Pulumi.*.yaml", "__pycache__"))
    backend = tmp_path / "state"
    backend.mkdir()
    env = {
        **pulumi_env,
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "GPUFLEET_LAB_BMC_PASSWORD": PASSWORD,
        "PYTHONPATH": str(REPO / "src"),
    }

    run_pulumi(env, project, "stack", "init", "e2e")
    for key, value in (
        ("spec", str(spec_file)),
        ("powerTimeout", "60"),
        ("powerPollInterval", "1"),
        ("bmcTimeout", "10"),
        ("bmcRetries", "1"),
    ):
        run_pulumi(env, project, "config", "set", key, value)

    run_pulumi(env, project, "up", "--yes")
    for name in emu.names:
        system = emu.system(name)
        assert system["PowerState"] == "On", name
        assert system["Boot"]["BootSourceOverrideTarget"] == "Pxe", name
        assert system["Boot"]["BootSourceOverrideMode"] == "UEFI", name
    expected = render_inventory(load_cluster(spec_file))
    assert (site_dir / "hosts.yml").read_text() == expected["hosts.yml"]
    outputs = json.loads(run_pulumi(env, project, "stack", "output", "--json"))
    assert outputs["servers"]["gpu1"]["manufacturer"] == "Sushy Emulator"
    assert outputs["servers"]["gpu1"]["power_state"] == "On"
    assert outputs["vips"][0]["holders"] == ["lb1", "lb2"]
    assert set(outputs["addresses"]) == set(emu.names)

    events = json_documents(run_pulumi(env, project, "up", "--yes", "--json"))
    summary = next(e["summaryEvent"] for e in events if "summaryEvent" in e)
    assert summary["result"] == "succeeded"
    assert set(summary["resourceChanges"]) == {"same"}, summary["resourceChanges"]

    run_pulumi(env, project, "config", "set", "--path", "nodes.gpu1.bootTarget", "Hdd")
    preview = json.loads(run_pulumi(env, project, "preview", "--json"))
    changes = preview["changeSummary"]
    assert changes.get("update") == 1 and set(changes) == {"same", "update"}, changes
    updated = [s["urn"] for s in preview["steps"] if s["op"] == "update"]
    assert len(updated) == 1 and updated[0].endswith("::gpu1-boot")
    assert emu.system("gpu1")["Boot"]["BootSourceOverrideTarget"] == "Pxe"  # preview only

    state_files = [p for p in backend.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in state_files)
    for path in state_files:
        assert PASSWORD not in path.read_text(errors="replace"), path
    exported = run_pulumi(env, project, "stack", "export")
    assert PASSWORD not in exported
    assert '"password"' in exported  # the property is there, as ciphertext

    run_pulumi(env, project, "destroy", "--yes")
    for name in emu.names:
        system = emu.system(name)
        assert system["Boot"]["BootSourceOverrideTarget"] == "Hdd", name  # override restored
        assert system["PowerState"] == "On", name  # power left alone (docs/pulumi.md)
    state = json.loads(run_pulumi(env, project, "stack", "export"))
    resources = state["deployment"].get("resources")
    assert not resources
