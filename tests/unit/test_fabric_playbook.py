"""playbooks/fabric.yml's variables for the example sites, templated as Ansible would.

Ansible's own inventory, variable manager and templar over the generated inventories (and
one constructed site), so a mistake in the play's Jinja (the IPoIB MTU, who runs opensm at
which priority, where the rail netdevs come from) fails here instead of on a server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import add_all_plugin_dirs, init_plugin_loader
from ansible.template import Templar, trust_as_template
from ansible.vars.manager import VariableManager

from gpufleet.inventory import render_inventory, write_inventory
from gpufleet.model import load_cluster

ROOT = Path(__file__).resolve().parents[2]
PLAYS = yaml.safe_load((ROOT / "playbooks" / "fabric.yml").read_text())
RDMA_VARS, RAIL_VARS = PLAYS[1]["vars"], PLAYS[2]["vars"]
init_plugin_loader()  # once per process; the roles' filters as a play would load them
for _role in ("rdma_stack", "fabric_rails"):
    add_all_plugin_dirs(str(ROOT / "roles" / _role))


def _trust(x: Any) -> Any:
    if isinstance(x, str):
        return trust_as_template(x)
    if isinstance(x, dict):
        return {k: _trust(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_trust(i) for i in x]
    return x


def play_vars(site: Path, host: str, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The RDMA and rail plays' variables for one host, templated."""
    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[str(site / "hosts.yml")])
    vm = VariableManager(loader=loader, inventory=inv)
    hostvars = {h.name: vm.get_vars(host=h) for h in inv.get_hosts()}
    names = [h.name for h in inv.get_hosts()]
    rdma = [n for n in names if hostvars[n].get("gpufleet_rdma")]
    variables = {
        **hostvars[host],
        "inventory_hostname": host,
        "hostvars": hostvars,
        "ansible_play_hosts_all": rdma,
        "ansible_facts": facts or {},
        **_trust(RDMA_VARS),
        **_trust(RAIL_VARS),
    }
    templar = Templar(loader=loader, variables=variables)
    keys = [k for k in (*RDMA_VARS, *RAIL_VARS) if not k.startswith("__")]
    keys.remove("fabric_rails_peers")  # needs the rail play's host list (ring, unit-tested)
    return {k: templar.template(trust_as_template("{{ " + k + " }}")) for k in keys}


def test_infiniband_gpu_node():
    v = play_vars(ROOT / "inventories" / "example-ib", "gpu001")
    # IPoIB datagram mode: the 4096-byte link MTU less the 4-byte IPoIB header.
    assert v["fabric_rails_mtu"] == 4092
    assert v["rdma_stack_fabric_type"] == "infiniband"
    assert v["rdma_stack_subnet_manager"] is False  # the switches or UFM run it (default)
    assert (v["rdma_stack_rails"], v["rdma_stack_rate"]) == (8, 400)
    assert (v["rdma_stack_pcie_width"], v["rdma_stack_pcie_gen"]) == (16, 5)
    assert v["rdma_stack_topology"] is True
    # The H100 profile names no netdevs: without the RDMA play's fact there are none, and
    # fabric_rails refuses to run (rail 0: no interface) rather than guess.
    assert v["rdma_stack_netdevs"] == [] and v["fabric_rails_interfaces"] == []


def test_rail_netdevs_come_from_the_fabric_fact():
    rails = [{"rail": r, "netdev": f"ibp{r}s0", "hca": f"mlx5_{r}"} for r in range(8)]
    v = play_vars(
        ROOT / "inventories" / "example-ib", "gpu001", {"gpufleet_fabric": {"rails": rails}}
    )
    assert v["fabric_rails_interfaces"] == [f"ibp{r}s0" for r in range(8)]


def test_roce_gpu_node():
    v = play_vars(ROOT / "inventories" / "example-roce", "gpu1")
    assert v["fabric_rails_mtu"] == 9000
    assert v["rdma_stack_fabric_type"] == "roce"
    assert v["rdma_stack_subnet_manager"] is False


@pytest.fixture(scope="module")
def opensm_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Constructed: example-ib with subnet_manager: head and the head nodes (rack r00) on the
    fabric, in the first scalable unit."""
    data = yaml.safe_load((ROOT / "inventories" / "example-ib" / "cluster.yaml").read_text())
    data["networks"]["fabric"]["subnet_manager"] = "head"
    data["networks"]["fabric"]["topology"]["units"][0]["racks"].insert(0, "r00")
    data["defaults"]["profiles"]["head"] = "hgx-h100-8gpu-ib"
    site = tmp_path_factory.mktemp("opensm")
    (site / "cluster.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    write_inventory(site, render_inventory(load_cluster(site)))
    return site


@pytest.mark.parametrize(
    ("host", "runs", "priority"),
    [("head01", True, 15), ("head02", True, 14), ("gpu001", False, 15)],
)
def test_opensm_on_head_nodes_first_one_master(opensm_site, host, runs, priority):
    v = play_vars(opensm_site, host)
    assert v["rdma_stack_subnet_manager"] is runs
    if runs:
        assert v["rdma_stack_opensm_priority"] == priority
