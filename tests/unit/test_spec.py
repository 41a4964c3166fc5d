"""The example sites load, defaults apply, and the rules that are not file-shaped hold."""

from __future__ import annotations

import random
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufleet.errors import UserError
from gpufleet.model import cluster_from_data, load_cluster
from gpufleet.spec import BUILTIN_PROFILES
from gpufleet.spec.compat import check_versions
from gpufleet.spec.loader import parse_yaml, resolve_spec_path
from gpufleet.spec.models import Versions

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "tests" / "data" / "specs" / "minimal-ib.yaml"
SITES = ["example-ib", "example-roce", "lab"]


def minimal() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MINIMAL.read_text())
    return data


@pytest.mark.parametrize("site", SITES)
def test_example_sites_are_valid(site: str) -> None:
    cluster = load_cluster(ROOT / "inventories" / site)
    assert cluster.site.name == site
    assert cluster.nodes_by_role("head")
    assert len(cluster.nodes_by_role("lb")) % 2 == 0


def test_example_ib_shape() -> None:
    cluster = load_cluster(ROOT / "inventories" / "example-ib" / "cluster.yaml")
    counts = {r: len(cluster.nodes_by_role(r)) for r in ("gpu", "head", "lb", "monitoring")}
    assert counts == {"gpu": 32, "head": 2, "lb": 2, "monitoring": 1}
    assert cluster.fabric is not None
    assert cluster.fabric.type == "infiniband"
    assert len(cluster.fabric.rails) == 8
    assert {n.profile_name for n in cluster.nodes_by_role("gpu")} == {"hgx-h100-8gpu-ib"}


def test_example_roce_shape() -> None:
    cluster = load_cluster(ROOT / "inventories" / "example-roce")
    assert len(cluster.nodes_by_role("gpu")) == 4
    fabric = cluster.fabric
    assert fabric is not None and fabric.roce is not None
    assert (fabric.roce.traffic_class, fabric.roce.dscp, fabric.roce.pfc_priority) == (106, 26, 3)


def test_lab_lives_in_the_benchmark_range() -> None:
    cluster = load_cluster(ROOT / "inventories" / "lab")
    counts = {r: len(cluster.nodes_by_role(r)) for r in ("gpu", "head", "lb", "monitoring")}
    assert counts == {"gpu": 3, "head": 1, "lb": 2, "monitoring": 1}
    assert {n.profile_name for n in cluster.nodes} == {"lab"}
    lab_range = IPv4Network("198.18.0.0/15")
    assert cluster.fabric is not None and len(cluster.fabric.rails) == 2
    assert len(cluster.subnets) == 4  # oob, frontend, rail0, rail1
    for subnet in cluster.subnets:
        assert subnet.cidr.subnet_of(lab_range)
    for n in cluster.nodes:
        assert n.bmc.url.startswith("http://127.0.0.1:")
        assert n.bmc.url.endswith(f"/redfish/v1/Systems/{n.name}")
        assert n.bmc.password.env == "GPUFLEET_LAB_BMC_PASSWORD"


def test_defaults_fill_profile_and_bmc_credentials() -> None:
    cluster = cluster_from_data(minimal())
    gpu = cluster.node("gpu001")
    assert gpu.profile_name == "hgx-h100-8gpu-ib"
    assert gpu.profile is BUILTIN_PROFILES["hgx-h100-8gpu-ib"]
    assert gpu.bmc.username == "admin"
    assert gpu.bmc.password.as_dict() == {"env": "BMC_PASSWORD"}
    assert cluster.node("head01").profile_name == "cpu-server"


def test_node_values_override_defaults() -> None:
    data = minimal()
    data["nodes"][3]["bmc"]["username"] = "root"
    data["nodes"][3]["bmc"]["password"] = {"secret": "rack2/bmc"}
    gpu = cluster_from_data(data).node("gpu001")
    assert gpu.bmc.username == "root"
    assert gpu.bmc.password.as_dict() == {"secret": "rack2/bmc"}


def test_all_problems_are_collected_in_one_pass() -> None:
    data = minimal()
    data["nodes"][0]["bmc"]["url"] = "ftp://x/redfish/v1/Systems/1"
    data["nodes"][1]["boot_mac"] = "nope"
    data["site"]["domian"] = "typo.example.net"
    with pytest.raises(UserError) as info:
        cluster_from_data(data)
    paths = {p.path for p in info.value.problems}
    assert {"nodes[0].bmc.url", "nodes[1].boot_mac", "site.domian"} <= paths


def test_cross_field_problems_are_collected_together() -> None:
    data = minimal()
    data["networks"]["frontend"]["vips"][0]["address"] = "10.9.9.9"
    data["versions"]["fabric_manager"] = "550.54.14"
    data["nodes"] = [n for n in data["nodes"] if n["name"] != "lb02"]
    with pytest.raises(UserError) as info:
        cluster_from_data(data)
    paths = [p.path for p in info.value.problems]
    assert paths.count("networks.frontend.vips[0].address") == 1
    assert "versions.fabric_manager" in paths
    assert "nodes" in paths


def test_validation_does_not_depend_on_node_order() -> None:
    data = minimal()
    cluster_a = cluster_from_data(data)
    random.Random(7).shuffle(data["nodes"])
    cluster_b = cluster_from_data(data)
    assert cluster_a == cluster_b


def test_pin_moves_one_node_only() -> None:
    data = minimal()
    data["nodes"][4]["addresses"] = {"frontend": "10.1.0.9"}
    cluster = cluster_from_data(data)
    assert str(cluster.node("gpu002").frontend.address) == "10.1.0.9"
    assert cluster.node("gpu002").frontend.pinned
    assert str(cluster.node("gpu001").frontend.address) == "10.1.0.101"


def test_custom_profile_is_usable() -> None:
    data = minimal()
    data["profiles"] = {
        "dgx-h100": {
            "gpu_count": 8,
            "gpu_model": "H100-SXM5-80GB",
            "fabric_nics": 8,
            "fabric_link": "infiniband",
            "nvswitch": True,
            "fabric_manager": True,
        }
    }
    data["nodes"][3]["profile"] = "dgx-h100"
    cluster = cluster_from_data(data)
    assert cluster.node("gpu001").profile.gpu_count == 8
    assert cluster.node("gpu001").profile_name == "dgx-h100"
    assert sorted(cluster.profiles) == ["cpu-server", "dgx-h100", "hgx-h100-8gpu-ib"]


def test_builtin_profiles_state_their_hardware() -> None:
    ib = BUILTIN_PROFILES["hgx-h100-8gpu-ib"]
    roce = BUILTIN_PROFILES["hgx-h100-8gpu-roce"]
    lab = BUILTIN_PROFILES["lab"]
    assert (ib.gpu_count, ib.fabric_nics, ib.fabric_link, ib.nvswitch, ib.fabric_manager) == (
        8,
        8,
        "infiniband",
        True,
        True,
    )
    assert (ib.pcie_gen, ib.pcie_width) == (5, 16)
    assert roce.fabric_link == "roce" and roce.fabric_nics == 8
    assert lab.container and lab.gpu_count == 0 and not lab.fabric_manager


def _versions(**over: Any) -> Versions:
    base: dict[str, Any] = minimal()["versions"]
    base.update(over)
    return Versions.model_validate(base)


def test_version_lock_of_minimal_spec_is_sound() -> None:
    assert check_versions(_versions(), {"x": BUILTIN_PROFILES["hgx-h100-8gpu-ib"]}) == []


def test_fabric_manager_optional_without_nvswitch() -> None:
    v = _versions(fabric_manager=None)
    assert check_versions(v, {"lab": BUILTIN_PROFILES["lab"]}) == []
    problems = check_versions(v, {"hgx-h100-8gpu-roce": BUILTIN_PROFILES["hgx-h100-8gpu-roce"]})
    assert [p.path for p in problems] == ["versions.fabric_manager"]


@pytest.mark.parametrize(
    ("cuda", "branch", "ok"),
    [
        ("12.4.1", "525", True),
        ("12.8.1", "535", True),
        ("12.0.0", "520", False),
        ("13.0.0", "580", True),
    ],
)
def test_cuda_major_needs_driver_branch(cuda: str, branch: str, ok: bool) -> None:
    version = f"{branch}.100.01"
    v = _versions(
        cuda_toolkit=cuda,
        nvidia_driver={"branch": branch, "version": version},
        fabric_manager=version,
        dcgm="3.3.9",
    )
    paths = [p.path for p in check_versions(v, {})]
    assert ("versions.cuda_toolkit" not in paths) is ok


def test_parse_yaml_rejects_duplicate_keys_with_line() -> None:
    with pytest.raises(UserError) as info:
        parse_yaml("a: 1\nb: 2\na: 3\n")
    assert str(info.value.problems[0]).startswith("line 3: duplicate key 'a' (first at line 1)")


def test_resolve_site_by_name_and_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    by_name = resolve_spec_path("example-ib")
    by_dir = resolve_spec_path("inventories/example-ib")
    assert by_name.resolve() == by_dir.resolve() == (ROOT / "inventories/example-ib/cluster.yaml")
    with pytest.raises(UserError) as info:
        resolve_spec_path("example-ibb")
    assert "known sites" in str(info.value)
