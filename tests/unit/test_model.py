"""The resolved cluster: profiles as objects, defaults applied once, leaves, derived facts."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufleet.inventory import derived_facts
from gpufleet.model import Cluster, cluster_from_data, load_cluster
from gpufleet.spec import BUILTIN_PROFILES

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "tests" / "data" / "specs" / "minimal-ib.yaml"


def minimal() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MINIMAL.read_text())
    return data


def test_example_ib_has_32_gpu_nodes_on_8_rails_and_16_leaves() -> None:
    cluster = load_cluster(ROOT / "inventories" / "example-ib")
    gpus = cluster.nodes_by_role("gpu")
    assert len(gpus) == 32
    assert cluster.fabric is not None
    assert len(cluster.fabric.rails) == 8 and cluster.fabric.spines == 8
    assert cluster.fabric.leaves == tuple(f"su{u}-leaf{r}" for u in (1, 2) for r in range(8))
    # Rail-optimized: NIC r of every node of a scalable unit on that unit's leaf r.
    for node in gpus:
        unit = "su1" if node.rack in ("r01", "r02", "r03", "r04") else "su2"
        assert [r.leaf for r in node.rails] == [f"{unit}-leaf{r}" for r in range(8)]
        assert [r.rail for r in node.rails] == list(range(8))
    per_leaf = Counter(r.leaf for n in gpus for r in n.rails)
    assert set(per_leaf.values()) == {16}
    assert all(not n.rails for n in cluster.nodes if n.role != "gpu")


def test_profiles_are_objects_and_defaults_apply_once() -> None:
    cluster = load_cluster(ROOT / "inventories" / "example-roce")
    gpu = cluster.node("gpu1")
    assert gpu.profile is BUILTIN_PROFILES["hgx-h100-8gpu-roce"]
    assert gpu.bmc.username == "root"  # defaults.bmc.username
    assert gpu.bmc.password.as_dict() == {"secret": "example-roce/bmc"}
    assert gpu.bmc.verify_tls is True
    assert sorted(cluster.profiles) == ["cpu-server", "hgx-h100-8gpu-roce"]
    assert cluster.versions.nvidia_driver_version == cluster.versions.fabric_manager


def test_the_model_is_frozen() -> None:
    cluster = load_cluster(ROOT / "inventories" / "lab")
    node = cluster.nodes[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.rails[0].leaf = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cluster.profiles["x"] = BUILTIN_PROFILES["lab"]  # type: ignore[index]


def test_lab_rails_carry_the_names_the_lab_gives_them() -> None:
    cluster = load_cluster(ROOT / "inventories" / "lab")
    for node in cluster.nodes:
        assert [(r.netdev, r.leaf) for r in node.rails] == [
            ("eth1", "lab-leaf0"),
            ("eth2", "lab-leaf1"),
        ]


def _with_topology(data: dict[str, Any], units: list[dict[str, Any]]) -> dict[str, Any]:
    data["networks"]["fabric"]["topology"] = {"units": units}
    return data


def test_a_node_override_beats_the_rule() -> None:
    data = _with_topology(minimal(), [{"name": "su1", "racks": ["r2"]}])
    data["nodes"][4]["fabric_leaves"] = [f"spare{r}" for r in range(8)]
    cluster = cluster_from_data(data)
    assert [r.leaf for r in cluster.node("gpu001").rails] == [f"su1-leaf{r}" for r in range(8)]
    assert [r.leaf for r in cluster.node("gpu002").rails] == [f"spare{r}" for r in range(8)]
    assert cluster.fabric is not None and len(cluster.fabric.leaves) == 16


def test_leaves_are_optional_and_then_absent() -> None:
    cluster = cluster_from_data(minimal())
    assert cluster.fabric is not None and cluster.fabric.leaves == ()
    node = cluster.node("gpu001")
    assert {r.leaf for r in node.rails} == {None}
    assert derived_facts(cluster, node)["gpufleet_fabric_leaves"] == []


def test_adding_or_reordering_nodes_moves_no_leaf() -> None:
    units = [{"name": "a", "racks": ["r2"]}, {"name": "b", "racks": ["r3"]}]
    data = _with_topology(minimal(), units)
    before = _leaves(cluster_from_data(data))
    grown = _with_topology(minimal(), units)
    new = dict(grown["nodes"][4], name="gpu003", rack="r3", position=1)
    new["boot_mac"], new["bmc"] = (
        "02:00:00:00:01:03",
        {"url": "https://10.0.0.103/redfish/v1/Systems/1"},
    )
    grown["nodes"].insert(0, new)
    random.Random(5).shuffle(grown["nodes"])
    after = _leaves(cluster_from_data(grown))
    assert {k: v for k, v in after.items() if k in before} == before
    assert after["gpu003"] == tuple(f"b-leaf{r}" for r in range(8))


def _leaves(cluster: Cluster) -> dict[str, tuple[str | None, ...]]:
    return {n.name: tuple(r.leaf for r in n.rails) for n in cluster.nodes}


@pytest.mark.parametrize(
    ("site", "node", "expected"),
    [
        (
            "example-ib",
            "gpu001",
            {
                "gpufleet_has_gpus": True,
                "gpufleet_gpu_count": 8,
                "gpufleet_container": False,
                "gpufleet_hardware_checks": True,
                "gpufleet_nvswitch": True,
                "gpufleet_fabric_manager": True,
                "gpufleet_fabric_type": "infiniband",
                "gpufleet_rdma": True,
                "gpufleet_fabric_interfaces": [],
                "gpufleet_fabric_leaves": [f"su1-leaf{r}" for r in range(8)],
                "gpufleet_pcie_gen": 5,
                "gpufleet_pcie_width": 16,
                "gpufleet_nvlinks_per_gpu": 18,
            },
        ),
        (
            "example-ib",
            "head01",
            {
                "gpufleet_has_gpus": False,
                "gpufleet_gpu_count": 0,
                "gpufleet_container": False,
                "gpufleet_hardware_checks": False,
                "gpufleet_nvswitch": False,
                "gpufleet_fabric_manager": False,
                "gpufleet_fabric_type": None,
                "gpufleet_rdma": False,
                "gpufleet_fabric_interfaces": [],
                "gpufleet_fabric_leaves": [],
                "gpufleet_pcie_gen": None,
                "gpufleet_pcie_width": None,
                "gpufleet_nvlinks_per_gpu": None,
            },
        ),
        (
            "example-roce",
            "gpu3",
            {
                "gpufleet_fabric_type": "roce",
                "gpufleet_rdma": True,
                "gpufleet_fabric_leaves": [f"a2-rail{r}" for r in range(8)],
            },
        ),
        (
            "lab",
            "gpu1",
            {
                "gpufleet_has_gpus": False,
                "gpufleet_container": True,
                "gpufleet_hardware_checks": False,
                "gpufleet_fabric_type": "ethernet",
                "gpufleet_rdma": False,
                "gpufleet_fabric_interfaces": ["eth1", "eth2"],
                "gpufleet_fabric_leaves": ["lab-leaf0", "lab-leaf1"],
            },
        ),
    ],
)
def test_derived_facts(site: str, node: str, expected: dict[str, Any]) -> None:
    cluster = load_cluster(ROOT / "inventories" / site)
    facts = derived_facts(cluster, cluster.node(node))
    assert {k: facts[k] for k in expected} == expected
    assert all(k.startswith("gpufleet_") for k in facts)


def test_subnet_manager_defaults_and_opensm_on_head_nodes_with_fabric_nics() -> None:
    """InfiniBand: the switches or UFM run the subnet manager unless the spec says head; only
    InfiniBand has one. A head node on the fabric (constructed: head01 given the GPU profile's
    InfiniBand NICs) may run opensm."""
    ib = load_cluster(ROOT / "inventories" / "example-ib").fabric
    roce = load_cluster(ROOT / "inventories" / "example-roce").fabric
    assert ib is not None and ib.subnet_manager == "fabric"
    assert roce is not None and roce.subnet_manager is None
    data = minimal()
    data["networks"]["fabric"]["subnet_manager"] = "head"
    head = next(n for n in data["nodes"] if n["name"] == "head01")
    head["profile"] = "hgx-h100-8gpu-ib"
    cluster = cluster_from_data(data, MINIMAL)
    assert cluster.fabric is not None and cluster.fabric.subnet_manager == "head"
    facts = derived_facts(cluster, next(n for n in cluster.nodes if n.name == "head01"))
    assert facts["gpufleet_rdma"] is True


def test_the_lock_carries_the_container_toolkit() -> None:
    # A spec written before the toolkit joined the lock gets the default the roles were tested with.
    assert cluster_from_data(minimal()).versions.as_dict()["nvidia_container_toolkit"] == "1.17.3"
    data = minimal()
    data["versions"]["nvidia_container_toolkit"] = "1.17.4"
    assert cluster_from_data(data).versions.nvidia_container_toolkit == "1.17.4"
    assert (
        load_cluster(Path(__file__).resolve().parents[2] / "inventories/lab/cluster.yaml")
        .versions.as_dict()["dcgm"]
        .startswith("4.")
    )
