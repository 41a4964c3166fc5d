"""Properties of the address plan over generated valid specs (hypothesis).

- no address appears twice on a network, and every address lies inside its
  subnet as a host address;
- adding a node leaves every existing address unchanged;
- the order of `nodes:` does not change the plan.
"""

from __future__ import annotations

import copy
import random
from ipaddress import IPv4Address
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufleet.model import Cluster, cluster_from_data

# Default pools (head 10, lb 20, monitoring 30, gpu 100) in /24 subnets give
# head and lb 10 slots each, monitoring 70, gpu 155.
ROLE_INDEX_RANGE = {"head": (0, 9), "lb": (0, 9), "monitoring": (0, 69), "gpu": (0, 154)}
PIN_OFFSETS = [6, 7, 8, 9]  # below every pool; .1 is the gateway, .5 the VIP
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _node(role: str, idx: int, pin: int | None = None, frontend_base: int = 1) -> dict[str, Any]:
    code = {"head": 1, "lb": 2, "monitoring": 3, "gpu": 4}[role]
    name = f"{role[:3]}{idx}" if role != "monitoring" else f"mon{idx}"
    node: dict[str, Any] = {
        "name": name,
        "role": role,
        "bmc": {"url": f"https://{name}-bmc.gen.example.net/redfish/v1/Systems/1"},
        "boot_mac": f"02:00:00:{code:02x}:{idx >> 8:02x}:{idx & 0xFF:02x}",
        "rack": f"{role}-{idx // 50}",
        "position": idx % 50 + 1,
    }
    if pin is not None:
        node["addresses"] = {"frontend": f"10.{frontend_base}.0.{pin}"}
    return node


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    rails = draw(st.integers(1, 4))
    with_storage = draw(st.booleans())
    base = draw(st.integers(0, 20)) * 10  # moves every subnet
    counts = {
        "head": draw(st.integers(1, 3)),
        "lb": draw(st.sampled_from([0, 2, 4])),
        "monitoring": draw(st.integers(0, 2)),
        "gpu": draw(st.integers(0, 30)),
    }
    nodes = []
    pins = iter(draw(st.permutations(PIN_OFFSETS)))
    for role, count in counts.items():
        lo, hi = ROLE_INDEX_RANGE[role]
        indices = draw(st.lists(st.integers(lo, hi), min_size=count, max_size=count, unique=True))
        for idx in indices:
            pin = next(pins, None) if draw(st.booleans()) and draw(st.booleans()) else None
            nodes.append(_node(role, idx, pin, base + 1))
    nodes = draw(st.permutations(nodes))
    networks: dict[str, Any] = {
        "oob": {"cidr": f"10.{base}.0.0/24", "gateway": f"10.{base}.0.1"},
        "frontend": {
            "cidr": f"10.{base + 1}.0.0/24",
            "gateway": f"10.{base + 1}.0.1",
            "vips": [{"name": "api", "address": f"10.{base + 1}.0.5"}] if counts["lb"] else [],
        },
        "fabric": {
            "type": "ethernet",
            "mtu": 9000,
            "rails": [f"10.{base + 5 + r}.0.0/24" for r in range(rails)],
        },
    }
    if with_storage:
        networks["storage"] = {"cidr": f"10.{base + 2}.0.0/24", "roles": ["gpu", "head"]}
    return {
        "spec_version": 1,
        "site": {
            "name": "gen",
            "domain": "gen.example.net",
            "ntp_servers": ["ntp.example.net"],
            "admin_cidrs": ["192.0.2.0/24"],
            "ssh": {"user": "ops", "public_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGen x"]},
        },
        "profiles": {"gen-node": {"gpu_count": 0, "fabric_nics": rails, "fabric_link": "ethernet"}},
        "defaults": {
            "profiles": {r: "gen-node" for r in ("gpu", "head", "lb", "monitoring")},
            "bmc": {"username": "admin", "password": {"env": "BMC_PASSWORD"}},
        },
        "networks": networks,
        "versions": {
            "nvidia_driver": {"branch": "550", "version": "550.127.05"},
            "cuda_toolkit": "12.4.1",
            "dcgm": "3.3.9",
            "doca_ofed": "2.9.1",
            "nccl": "2.21.5-1",
            "nccl_tests": "v2.13.11",
            "slurm": "22.05.8-4+deb12u3",
        },
        "nodes": nodes,
    }


def _addresses(plan: Cluster) -> dict[tuple[str, str], IPv4Address]:
    return {(n.name, i.network): i.address for n in plan.nodes for i in n.interfaces}


@SETTINGS
@given(specs())
def test_no_duplicate_and_nothing_outside_its_subnet(data: dict[str, Any]) -> None:
    plan = cluster_from_data(data)
    subnets = {s.name: s for s in plan.subnets}
    for subnet in plan.subnets:
        rows = plan.rows(subnet.name)
        addrs = [iface.address for _, iface in rows]
        if subnet.name == "frontend":
            addrs += [v.address for v in plan.vips]
        if subnet.gateway is not None:
            addrs.append(subnet.gateway)
        assert len(addrs) == len(set(addrs)), subnet.name
        for _, iface in rows:
            assert iface.cidr == subnets[iface.network].cidr
            assert iface.address in iface.cidr
            assert iface.address not in (iface.cidr.network_address, iface.cidr.broadcast_address)
    for node in plan.nodes:
        assert node.on("oob") is not None and node.on("frontend") is not None
        # rail-optimized: NIC r in rail r's subnet, same host offset on every rail
        offsets = {int(r.address) - int(r.cidr.network_address) for r in node.rails}
        assert len(offsets) <= 1
        assert [r.network for r in node.rails] == [f"rail{k}" for k in range(len(node.rails))]


@SETTINGS
@given(specs(), st.data())
def test_adding_a_node_never_renumbers(data: dict[str, Any], draw: st.DataObject) -> None:
    before = _addresses(cluster_from_data(data))
    role = draw.draw(st.sampled_from(["gpu", "monitoring"]))
    used = {n["name"] for n in data["nodes"]}
    lo, hi = ROLE_INDEX_RANGE[role]
    free = [i for i in range(lo, hi + 1) if _node(role, i)["name"] not in used]
    idx = draw.draw(st.sampled_from(free))
    grown = copy.deepcopy(data)
    position = draw.draw(st.integers(0, len(grown["nodes"])))
    grown["nodes"].insert(position, _node(role, idx))  # anywhere in the list
    after = _addresses(cluster_from_data(grown))
    assert {k: v for k, v in after.items() if k in before} == before
    assert len(after) > len(before)


@SETTINGS
@given(specs(), st.integers(0, 2**32 - 1))
def test_node_order_does_not_change_the_plan(data: dict[str, Any], seed: int) -> None:
    plan = cluster_from_data(data)
    shuffled = copy.deepcopy(data)
    random.Random(seed).shuffle(shuffled["nodes"])
    assert cluster_from_data(shuffled) == plan
