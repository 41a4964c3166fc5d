"""gpufleet.fabric.filters: what a role's filter plugin gets, on the module's facts.

The `gpufleet_fabric` facts are produced by library/gpufleet_fabric_facts.py's collect() on
the recorded outputs (fakes stand for the tools); Ansible's interface facts are constructed
(named so), in the shape `setup` returns.
"""

from __future__ import annotations

import importlib.util

import jinja2
import pytest
from test_fabric_data import IBDEV_ROCE, IBSTAT_IB, IBSTAT_IB_ETH_DOWN, REPO, TOPO_ROCE, recorded

from gpufleet.fabric.filters import (
    FilterModule,
    gpufleet_fabric_firmware,
    gpufleet_interface_of,
    gpufleet_nccl_conf,
    gpufleet_roce_qos,
)
from gpufleet.fabric.nccl import NcclConfigError, nccl_settings
from gpufleet.fabric.qos import QosError

_spec = importlib.util.spec_from_file_location(
    "gpufleet_fabric_facts", REPO / "library" / "gpufleet_fabric_facts.py"
)
assert _spec and _spec.loader
module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(module)


def _facts(fabric_type: str, rails: int, outputs: dict, tmp_path, **params) -> dict:
    def find(name):
        return f"/usr/bin/{name.rsplit('/', 1)[-1]}" if name.rsplit("/", 1)[-1] in outputs else None

    def run(argv):
        return outputs[argv[0].rsplit("/", 1)[-1]]

    args = {
        "fabric_type": fabric_type,
        "rails": rails,
        "netdevs": [],
        "exclude_netdevs": [],
        "rate": 400,
        "pcie_width": 0,
        "pcie_gen": 0,
        "topology": False,
        "node_name": "gpu1",
        "ibstat": "ibstat",
        "ibdev2netdev": "ibdev2netdev",
        "ibv_devinfo": "ibv_devinfo",
        "nvidia_smi": "nvidia-smi",
        **params,
    }
    return module.collect(args, run, find, root=str(tmp_path))["ansible_facts"]["gpufleet_fabric"]


# constructed: Ansible setup facts of a node whose front end is a bond.
SETUP_FACTS = {
    "interfaces": ["lo", "bond0", "enp25s0np0"],
    "lo": {"device": "lo", "ipv4": {"address": "127.0.0.1"}},
    "bond0": {
        "device": "bond0",
        "ipv4": {"address": "10.1.0.21"},
        "ipv4_secondaries": [{"address": "10.1.0.250"}],
    },
    "enp25s0np0": {"device": "enp25s0np0", "ipv4": {"address": "172.16.0.21"}},
}


def test_interface_of_an_address():
    assert gpufleet_interface_of("10.1.0.21", SETUP_FACTS) == "bond0"
    assert gpufleet_interface_of("10.1.0.250", SETUP_FACTS) == "bond0"
    assert gpufleet_interface_of("172.16.0.21", SETUP_FACTS) == "enp25s0np0"
    assert gpufleet_interface_of("192.0.2.1", SETUP_FACTS) == ""


def test_nccl_conf_from_the_module_facts_of_the_roce_node(tmp_path):
    fabric = _facts(
        "roce",
        8,
        {
            "ibdev2netdev": (0, recorded(IBDEV_ROCE), ""),
            "nvidia-smi": (0, recorded(TOPO_ROCE), ""),
        },
        tmp_path,
        topology=True,
        exclude_netdevs=["bond0"],
    )
    front = gpufleet_interface_of("10.1.0.21", SETUP_FACTS)
    conf = gpufleet_nccl_conf(
        fabric, "roce", "2.26.2-1+cuda12.8", front, roce={"dscp": 26, "traffic_class": 106}
    )
    assert nccl_settings(conf) == {
        "NCCL_IB_HCA": "=mlx5_0:1,mlx5_1:1,mlx5_2:1,mlx5_5:1,mlx5_6:1,mlx5_7:1,mlx5_8:1,mlx5_11:1",
        "NCCL_SOCKET_IFNAME": "=bond0",
        "NCCL_IB_TC": "106",
        "NCCL_NET_GDR_LEVEL": "PXB",
    }
    # Through Jinja, as a template would call it.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters.update(FilterModule().filters())
    text = env.from_string(
        "{{ fabric | gpufleet_nccl_conf('roce', nccl, front, roce=roce,"
        " header='Ansible managed') }}"
    ).render(fabric=fabric, nccl="2.26.2-1", front=front, roce={"dscp": 26})
    assert text.startswith("# Ansible managed\n")
    assert "NCCL_IB_TC=104\n" in text


def test_nccl_conf_refuses_a_node_whose_selection_failed(tmp_path):
    fabric = _facts("infiniband", 8, {}, tmp_path)  # no tool at all: no rails
    with pytest.raises(NcclConfigError, match="no rail HCA selected"):
        gpufleet_nccl_conf(fabric, "infiniband", "2.21.5-1", "eno1")


def test_roce_qos_as_plain_data():
    rails = [{"rail": 0, "hca": "mlx5_0", "port": 1, "netdev": "enp25s0np0"}]
    plan = gpufleet_roce_qos(rails, {"pfc_priority": "3"})
    assert plan["writes"][0] == {
        "path": "/sys/kernel/config/rdma_cm/mlx5_0/ports/1/default_roce_tos",
        "value": "104",
        "required": True,
        "why": "RDMA-CM queue pairs carry ToS 104 (DSCP 26)",
    }
    with pytest.raises(QosError, match="pfc_priority 9 is outside 0-7"):
        gpufleet_roce_qos(rails, {"pfc_priority": 9})


def test_fleet_firmware_over_module_facts(tmp_path):
    new = _facts("infiniband", 8, {"ibstat": (0, recorded(IBSTAT_IB), "")}, tmp_path)
    old = _facts("infiniband", 8, {"ibstat": (0, recorded(IBSTAT_IB_ETH_DOWN), "")}, tmp_path)
    lines = gpufleet_fabric_firmware({"gpu1": new, "gpu2": old, "gpu3": new})
    assert len(lines) == 8
    assert lines[0] == (
        "gpu2 mlx5_0 (MT4129): firmware 28.39.1002, fleet runs 28.41.1000 (16 HCAs on 2 nodes)"
    )
    assert gpufleet_fabric_firmware({"gpu1": new, "gpu3": new}) == []
