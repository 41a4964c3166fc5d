"""The spec's networks as a flat list of subnets, and the pool layout inside each.

Both are facts of the spec itself (validation checks overlaps, pool offsets,
gateways and VIPs against them); the address assignment in
`gpufleet.model.addressing` builds on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from gpufleet.spec.models import ClusterSpec, Network, Pools, Role


def pool_bounds(subnet: IPv4Network, pools: Pools) -> dict[Role, tuple[int, int]]:
    """Offset range [start, end) of each role's pool inside subnet."""
    ordered = sorted(pools.offsets().items(), key=lambda kv: kv[1])
    last = subnet.num_addresses - 1  # the broadcast offset
    bounds: dict[Role, tuple[int, int]] = {}
    for i, (role, start) in enumerate(ordered):
        end = ordered[i + 1][1] if i + 1 < len(ordered) else last
        bounds[role] = (start, min(end, last))
    return bounds


@dataclass(frozen=True, slots=True)
class NetDef:
    """One subnet that nodes get addresses on."""

    key: str  # oob, frontend, storage, rail0, rail1, ...
    path: str  # spec path of the subnet
    cidr: IPv4Network
    pools: Pools
    pools_path: str
    gateway: IPv4Address | None
    mtu: int
    vlan: int | None


def network_defs(spec: ClusterSpec) -> list[NetDef]:
    nets = spec.networks

    def plain(key: str, net: Network) -> NetDef:
        p = f"networks.{key}"
        return NetDef(
            key, f"{p}.cidr", net.cidr, net.pools, f"{p}.pools", net.gateway, net.mtu, net.vlan
        )

    out = [plain("oob", nets.oob), plain("frontend", nets.frontend)]
    if nets.storage is not None:
        out.append(plain("storage", nets.storage))
    if nets.fabric is not None:
        fab = nets.fabric
        for r, cidr in enumerate(fab.rails):
            out.append(
                NetDef(
                    f"rail{r}",
                    f"networks.fabric.rails[{r}]",
                    cidr,
                    fab.pools,
                    "networks.fabric.pools",
                    None,
                    fab.mtu,
                    None,
                )
            )
    return out
