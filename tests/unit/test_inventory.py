"""The generated inventory: ansible-inventory accepts it, bytes are stable, no secrets."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gpufleet.inventory import GROUP_VARS_FILE, HOSTS_FILE, render_inventory, write_inventory
from gpufleet.model import cluster_from_data, load_cluster

ROOT = Path(__file__).resolve().parents[2]
SITES = ["example-ib", "example-roce", "lab"]
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"


def _render(site: str) -> dict[str, str]:
    return render_inventory(load_cluster(ROOT / "inventories" / site))


@pytest.mark.parametrize("site", SITES)
def test_committed_inventory_is_current_and_byte_stable(site: str) -> None:
    first = _render(site)
    second = _render(site)
    assert first == second
    assert sorted(first) == sorted([HOSTS_FILE, GROUP_VARS_FILE])
    for rel, text in first.items():
        committed = (ROOT / "inventories" / site / rel).read_bytes()
        assert committed == text.encode("utf-8"), f"{site}/{rel}: run gpufleet inventory --write"


def test_node_order_does_not_change_the_bytes() -> None:
    path = ROOT / "inventories/example-ib/cluster.yaml"
    data = yaml.safe_load(path.read_text())
    reference = render_inventory(cluster_from_data(data))
    random.Random(3).shuffle(data["nodes"])
    assert render_inventory(cluster_from_data(data)) == reference


@pytest.mark.parametrize("site", SITES)
def test_ansible_inventory_accepts_it(site: str) -> None:
    hosts = ROOT / "inventories" / site / HOSTS_FILE
    run = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(hosts), "--list"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    assert "WARNING" not in run.stderr.upper(), run.stderr
    data = json.loads(run.stdout)
    plan = load_cluster(ROOT / "inventories" / site)
    for group, role in (
        ("gpu_nodes", "gpu"),
        ("head_nodes", "head"),
        ("lb_nodes", "lb"),
        ("monitoring_nodes", "monitoring"),
    ):
        expected = sorted(n.name for n in plan.nodes if n.role == role)
        assert sorted(data.get(group, {}).get("hosts", [])) == expected
    hostvars = data["_meta"]["hostvars"]
    assert sorted(hostvars) == sorted(n.name for n in plan.nodes)
    for node in plan.nodes:
        hv = hostvars[node.name]
        assert hv["ansible_host"] == str(node.frontend.address)
        assert hv["gpufleet_bmc"]["address"] == str(node.oob.address)
        assert [r["address"] for r in hv["gpufleet_fabric_rails"]] == [
            str(r.address) for r in node.rails
        ]
        # group_vars/all next to hosts.yml reach every host
        assert hv["gpufleet_site"] == site
        assert hv["gpufleet_versions"]["fabric_manager"] == plan.versions.fabric_manager


def test_bmc_password_never_leaves_the_reference(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "inventories/lab/cluster.yaml").read_text())
    data["defaults"]["bmc"]["password"] = {"env": "SITE_BMC_PW"}
    files = render_inventory(cluster_from_data(data))
    hosts = yaml.safe_load(files[HOSTS_FILE])
    gpu1 = hosts["all"]["children"]["gpu_nodes"]["hosts"]["gpu1"]
    assert gpu1["gpufleet_bmc"]["password_ref"] == {"env": "SITE_BMC_PW"}
    assert "password:" not in files[HOSTS_FILE]


def test_write_inventory_only_rewrites_changes(tmp_path: Path) -> None:
    files = _render("lab")
    first = write_inventory(tmp_path, files)
    assert [changed for _, changed in first] == [True, True]
    second = write_inventory(tmp_path, files)
    assert [changed for _, changed in second] == [False, False]
    assert (tmp_path / HOSTS_FILE).read_text() == files[HOSTS_FILE]
