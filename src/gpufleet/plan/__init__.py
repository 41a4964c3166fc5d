"""The address plan: every interface of every node, derived once from a valid spec.

    from gpufleet.spec import load_spec
    from gpufleet.plan import build_plan
    plan = build_plan(load_spec("inventories/example-ib"))

The allocation rule is documented in `gpufleet.spec.addressing` (index + role
pools + pins): an address depends only on its node's role, index and pins, so
adding a node never renumbers another. Nodes in the plan are sorted by name,
so the plan (and everything rendered from it) does not depend on the order of
`nodes:` in cluster.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from gpufleet.errors import UserError
from gpufleet.spec.addressing import assign, hostname, network_defs, node_index, pool_bounds
from gpufleet.spec.checks import known_profiles
from gpufleet.spec.models import ClusterSpec, Role

__all__ = ["AddressPlan", "Interface", "NodePlan", "SubnetPlan", "VipPlan", "build_plan"]


@dataclass(frozen=True, slots=True)
class Interface:
    network: str  # oob, frontend, storage, rail0 ... railN-1
    address: IPv4Address
    cidr: IPv4Network
    hostname: str
    pinned: bool

    @property
    def with_prefix(self) -> str:
        return f"{self.address}/{self.cidr.prefixlen}"


@dataclass(frozen=True, slots=True)
class NodePlan:
    name: str
    role: Role
    index: int
    profile: str
    interfaces: tuple[Interface, ...]

    def on(self, network: str) -> Interface | None:
        for iface in self.interfaces:
            if iface.network == network:
                return iface
        return None

    @property
    def frontend(self) -> Interface:
        iface = self.on("frontend")
        assert iface is not None  # every node has one (spec rule)
        return iface

    @property
    def oob(self) -> Interface:
        iface = self.on("oob")
        assert iface is not None
        return iface

    @property
    def rails(self) -> tuple[Interface, ...]:
        return tuple(i for i in self.interfaces if i.network.startswith("rail"))


@dataclass(frozen=True, slots=True)
class SubnetPlan:
    name: str
    cidr: IPv4Network
    gateway: IPv4Address | None
    mtu: int
    pools: tuple[tuple[Role, IPv4Address, IPv4Address], ...]  # role, first, last


@dataclass(frozen=True, slots=True)
class VipPlan:
    name: str
    address: IPv4Address
    cidr: IPv4Network
    hostname: str


@dataclass(frozen=True, slots=True)
class AddressPlan:
    site: str
    domain: str
    subnets: tuple[SubnetPlan, ...]
    nodes: tuple[NodePlan, ...]
    vips: tuple[VipPlan, ...]

    def node(self, name: str) -> NodePlan:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def rows(self, network: str) -> list[tuple[NodePlan, Interface]]:
        """Nodes on one network with their interface there, sorted by address."""
        out = [(n, i) for n in self.nodes for i in n.interfaces if i.network == network]
        return sorted(out, key=lambda ni: int(ni[1].address))

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "domain": self.domain,
            "subnets": [
                {
                    "name": s.name,
                    "cidr": str(s.cidr),
                    "gateway": str(s.gateway) if s.gateway else None,
                    "mtu": s.mtu,
                    "pools": {r: [str(a), str(b)] for r, a, b in s.pools},
                }
                for s in self.subnets
            ],
            "vips": [
                {"name": v.name, "address": str(v.address), "hostname": v.hostname}
                for v in self.vips
            ],
            "nodes": [
                {
                    "name": n.name,
                    "role": n.role,
                    "index": n.index,
                    "profile": n.profile,
                    "interfaces": {
                        i.network: {
                            "address": str(i.address),
                            "prefix": i.cidr.prefixlen,
                            "hostname": i.hostname,
                            "pinned": i.pinned,
                        }
                        for i in n.interfaces
                    },
                }
                for n in self.nodes
            ],
        }


def build_plan(spec: ClusterSpec) -> AddressPlan:
    """Derive the address plan of a spec returned by `gpufleet.spec.load_spec`.

    Pure: no I/O. Raises UserError if the spec was not validated and its
    addresses do not work out (load_spec reports the same problems earlier).
    """
    profiles = known_profiles(spec)
    node_profiles = {
        i: profiles[n.profile or spec.defaults.profiles[n.role]] for i, n in enumerate(spec.nodes)
    }
    slots, problems = assign(spec, node_profiles)
    if problems:
        raise UserError(problems, title="the address plan does not work out")
    subnets = []
    for d in network_defs(spec):
        bounds = pool_bounds(d.cidr, d.pools)
        pools = tuple(
            (role, d.cidr.network_address + a, d.cidr.network_address + b - 1)
            for role, (a, b) in sorted(bounds.items(), key=lambda kv: kv[1])
        )
        subnets.append(SubnetPlan(d.key, d.cidr, d.gateway, d.mtu, pools))
    nodes = []
    for n in sorted(spec.nodes, key=lambda x: x.name):
        idx = node_index(n)
        assert idx is not None  # a validated spec resolves every index
        ifaces = tuple(
            Interface(s.network, s.address, s.cidr, s.hostname, s.pinned) for s in slots[n.name]
        )
        nodes.append(
            NodePlan(n.name, n.role, idx, n.profile or spec.defaults.profiles[n.role], ifaces)
        )
    front = spec.networks.frontend
    vips = tuple(
        VipPlan(v.name, v.address, front.cidr, hostname(v.name, "frontend", spec.site.domain))
        for v in front.vips
    )
    return AddressPlan(spec.site.name, spec.site.domain, tuple(subnets), tuple(nodes), vips)
