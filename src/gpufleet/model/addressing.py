"""The address rule: where each interface of each node sits.

The rule (stable by construction, independent of the order of `nodes:`):

1. Every node has an *index*: `index:` when given, otherwise the decimal
   digits that end its name (`gpu007` -> 7, `lb2` -> 2). Two nodes of the same
   role may not share an index.
2. Every network has *pools*: a start offset per role (defaults: head 10,
   lb 20, monitoring 30, gpu 100). A pool runs up to the next pool's offset;
   the highest pool runs up to the broadcast address. Offsets below the
   lowest pool are left for the gateway and the VIPs.
3. A node's address on a network is `network address + pool offset(role) + index`,
   e.g. gpu007 on 10.1.0.0/22 with the gpu pool at 100 -> 10.1.0.107. The same
   rule holds on every fabric rail: NIC r of a node sits in the rail r subnet
   at the same offset, so rail addresses of one node differ only in the subnet.
4. A pin overrides the rule for one interface: `addresses.<network>` (or
   `addresses.fabric[r]`). On the oob network, a BMC URL whose host is an IP
   address inside the oob subnet is a pin too (the BMC already lives there).

Because an address depends only on the node's own role, index and pins,
adding, removing or reordering other nodes never renumbers a node. A pin may
take a slot that a future node's index would compute; validation then reports
the clash instead of moving anyone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from socket import inet_ntoa
from typing import NamedTuple

from gpufleet.errors import Problem
from gpufleet.spec.models import ClusterSpec, Node, Profile, node_index
from gpufleet.spec.networks import network_defs, pool_bounds


def ip_text(ip: int | IPv4Address) -> str:
    """Dotted text of an address: what str(IPv4Address) gives, in a third of its time
    (the plan and the inventory of a 4,096-node site print 45,000 addresses)."""
    return inet_ntoa(int(ip).to_bytes(4, "big"))


def hostname(node: str, network: str, domain: str) -> str:
    """Host name of one interface: gpu001.<domain> on the frontend, gpu001-<net>.<domain> else."""
    if network == "frontend":
        return f"{node}.{domain}"
    if network == "oob":
        return f"{node}-bmc.{domain}"
    return f"{node}-{network}.{domain}"


def bmc_url_ip(url: str) -> IPv4Address | None:
    """The BMC URL's host when it is an IPv4 address (the URL is already validated)."""
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
    if not host[:1].isdigit():
        return None  # a host name
    try:
        return IPv4Address(host)
    except ValueError:
        return None


class Slot(NamedTuple):
    """One interface address of one node, with the spec path it came from."""

    node: str
    network: str
    address: IPv4Address
    cidr: IPv4Network
    hostname: str
    pinned: bool
    path: str  # where in the spec this address came from (for problem lines)
    ip: int  # the address as an integer: cheap to hash when checking for clashes


def node_networks(spec: ClusterSpec, node: Node, profile: Profile) -> list[str]:
    """Keys of the networks this node has an interface on."""
    keys = ["oob", "frontend"]
    storage = spec.networks.storage
    if storage is not None and node.role in storage.roles:
        keys.append("storage")
    fabric = spec.networks.fabric
    if fabric is not None and profile.fabric_nics > 0:
        keys.extend(f"rail{r}" for r in range(min(len(fabric.rails), profile.fabric_nics)))
    return keys


def assign(
    spec: ClusterSpec, networks: Mapping[int, Sequence[str]]
) -> tuple[dict[int, list[Slot]], list[Problem]]:
    """Compute every node's addresses; report pins outside subnets and exhausted pools.

    `networks` maps the position of each node in `spec.nodes` to the networks
    it is on (`node_networks` of its resolved profile); nodes missing from it
    (their profile, name or index is already reported as a problem) are skipped.
    Returns the slots by node position. Duplicate addresses are left to the
    caller (gpufleet.model.build checks them over all nodes).
    """
    problems: list[Problem] = []
    defs = {d.key: d for d in network_defs(spec)}
    bounds = {k: pool_bounds(d.cidr, d.pools) for k, d in defs.items()}
    # Hot loop (45,000 interfaces at 4,096 GPU nodes): per network, the host-name
    # suffix and, per role, (first address as an integer, pool start, pool end).
    domain = spec.site.domain
    suffix = {k: hostname("", k, domain) for k in defs}
    cidrs = {k: d.cidr for k, d in defs.items()}
    spans = {
        k: {role: (int(d.cidr.network_address), lo, hi) for role, (lo, hi) in bounds[k].items()}
        for k, d in defs.items()
    }
    out: dict[int, list[Slot]] = {}
    oob = spec.networks.oob.cidr
    reported: set[tuple[str, str]] = set()  # one exhaustion line per node and pool set

    for i, node in enumerate(spec.nodes):
        on = networks.get(i)
        index = node_index(node)
        if on is None or index is None:
            continue
        base = f"nodes[{i}]"
        index_path = f"{base}.index" if node.index is not None else f"{base}.name"
        pins: dict[str, tuple[IPv4Address, str]] = {}
        a = node.addresses
        for key in ("oob", "frontend", "storage"):
            pin = getattr(a, key)
            if pin is not None:
                pins[key] = (pin, f"{base}.addresses.{key}")
        if a.fabric is not None:
            for r, pin in enumerate(a.fabric):
                pins[f"rail{r}"] = (pin, f"{base}.addresses.fabric[{r}]")
        url_ip = bmc_url_ip(node.bmc.url)
        if url_ip is not None and not url_ip.is_loopback:
            if url_ip not in oob:
                problems.append(
                    Problem(
                        f"{base}.bmc.url",
                        f"BMC address {url_ip} of {node.name} is outside the oob network {oob}",
                        "fix the URL or networks.oob.cidr",
                    )
                )
            elif "oob" in pins and pins["oob"][0] != url_ip:
                problems.append(
                    Problem(
                        f"{base}.bmc.url",
                        f"URL points at {url_ip} but addresses.oob pins {pins['oob'][0]}",
                        "make them agree or drop addresses.oob",
                    )
                )
            elif "oob" not in pins:
                pins["oob"] = (url_ip, f"{base}.bmc.url")

        slots: list[Slot] = []
        append = slots.append
        for key in on:
            name = node.name + suffix[key]
            if pins and key in pins:
                d = defs[key]
                addr, path = pins[key]
                if addr not in d.cidr:
                    problems.append(
                        Problem(
                            path,
                            f"{addr} is outside {key} {d.cidr}",
                            f"pick an address in {d.cidr}",
                        )
                    )
                    continue
                if addr in (d.cidr.network_address, d.cidr.broadcast_address):
                    problems.append(
                        Problem(
                            path,
                            f"{addr} is the network or broadcast address of {d.cidr}",
                            "pick a host address",
                        )
                    )
                    continue
                slots.append(Slot(node.name, key, addr, d.cidr, name, True, path, int(addr)))
                continue
            base_ip, start, end = spans[key][node.role]
            offset = start + index
            if offset >= end:
                d = defs[key]
                if (index_path, d.pools_path) in reported:
                    continue
                reported.add((index_path, d.pools_path))
                first = d.cidr.network_address + start
                last = d.cidr.network_address + end - 1
                problems.append(
                    Problem(
                        index_path,
                        f"index {index} of {node.name} does not fit the {node.role} pool of "
                        f"{key} {d.cidr} ({first}-{last}, indices 0-{end - start - 1}):"
                        " pool exhausted",
                        f"widen {d.path}, move {d.pools_path}.{node.role}, or pin the address",
                    )
                )
                continue
            ip = base_ip + offset
            append(Slot(node.name, key, IPv4Address(ip), cidrs[key], name, False, index_path, ip))
        out[i] = slots
    return out, problems
