"""Filters of the fabric_rails role: the rail plan of a node and the problems with it.

Pure functions over the inventory's values and the JSON of `ip -j` (iproute2), so the
same checks run before a change (refuse a config that cannot work, keep the old one)
and after it (what the kernel holds), and are unit-tested without a node
(tests/unit/test_fabric_rails_filters.py).
"""

from __future__ import annotations

import ipaddress
from typing import Any

MTU_MIN, MTU_MAX = 576, 9216  # IPv4 minimum; the largest jumbo frame common switches carry


def rail_plan(
    rails: list[dict[str, Any]],
    interfaces: list[str],
    cidrs: list[str],
    table_base: int = 100,
    priority_base: int = 1000,
) -> list[dict[str, Any]]:
    """One entry per rail: netdev, address/prefix, subnet, routing table and rule priority."""
    plan = []
    for i, rail in enumerate(rails):
        r = int(rail["rail"])
        plan.append(
            {
                "rail": r,
                "netdev": interfaces[i] if i < len(interfaces) else None,
                "address": str(rail["address"]),
                "prefix": int(rail["prefix"]),
                "cidr": cidrs[i] if i < len(cidrs) else None,
                "table": table_base + r,
                "priority": priority_base + r,
            }
        )
    return plan


def rail_problems(plan: list[dict[str, Any]], mtu: Any, links: list[dict[str, Any]]) -> list[str]:
    """What stops this rail config from working, before anything is written.

    `links` is `ip -d -j link show` of the node. One line per problem, naming the rail."""
    out: list[str] = []
    if not plan:
        return ["no rails: fabric_rails_rails is empty (the inventory's gpufleet_fabric_rails)"]
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not MTU_MIN <= mtu <= MTU_MAX:
        out.append(f"fabric_rails_mtu {mtu!r} is not an MTU between {MTU_MIN} and {MTU_MAX}")
        mtu = None
    by_name = {link.get("ifname"): link for link in links}
    seen_dev: dict[str, int] = {}
    for p in plan:
        r, dev = p["rail"], p["netdev"]
        if dev is None:
            out.append(f"rail {r}: no interface (fabric_rails_interfaces is too short)")
        elif dev in seen_dev:
            out.append(f"rail {r}: interface {dev} is already rail {seen_dev[dev]}'s")
        elif dev not in by_name:
            names = ", ".join(sorted(n for n in by_name if n and n != "lo")) or "none"
            out.append(f"rail {r}: interface {dev} does not exist on this node (it has: {names})")
        else:
            seen_dev[dev] = r
            top = by_name[dev].get("max_mtu")
            if mtu is not None and isinstance(top, int) and mtu > top:
                out.append(f"rail {r}: MTU {mtu} is above {dev}'s maximum {top}")
        try:
            iface = ipaddress.ip_interface(f"{p['address']}/{p['prefix']}")
        except ValueError as err:
            out.append(f"rail {r}: address {p['address']}/{p['prefix']} is not valid: {err}")
            continue
        if p["cidr"] is None:
            out.append(f"rail {r}: no subnet (fabric_rails_cidrs has fewer entries than rails)")
            continue
        net = ipaddress.ip_network(p["cidr"], strict=False)
        if iface.ip not in net or iface.network.prefixlen != net.prefixlen:
            out.append(f"rail {r}: {iface} is not an address of rail {r}'s subnet {net}")
    return out


def _addresses(addr_json: list[dict[str, Any]]) -> dict[str, set[str]]:
    return {
        link.get("ifname"): {
            f"{a.get('local')}/{a.get('prefixlen')}"
            for a in link.get("addr_info", [])
            if a.get("family") == "inet"
        }
        for link in addr_json
    }


def rail_state_problems(
    plan: list[dict[str, Any]],
    mtu: int,
    addr_json: list[dict[str, Any]],
    rule_json: list[dict[str, Any]],
    routes: dict[str, list[dict[str, Any]]],
    policy_routing: bool = True,
) -> list[str]:
    """What the kernel holds against the plan: `ip -j addr`, `ip -j rule`, and per table
    `ip -j route show table T` (keys are the table numbers as strings)."""
    out: list[str] = []
    addrs = _addresses(addr_json)
    links = {link.get("ifname"): link for link in addr_json}
    for p in plan:
        r, dev, want = p["rail"], p["netdev"], f"{p['address']}/{p['prefix']}"
        link = links.get(dev)
        if link is None:
            out.append(f"rail {r}: interface {dev} is gone")
            continue
        if "UP" not in link.get("flags", []) or link.get("operstate") == "DOWN":
            out.append(f"rail {r}: {dev} is down (operstate {link.get('operstate')})")
        if want not in addrs.get(dev, set()):
            have = ", ".join(sorted(addrs.get(dev, set()))) or "none"
            out.append(f"rail {r}: {dev} does not hold {want} (it holds: {have})")
        if link.get("mtu") != mtu:
            out.append(f"rail {r}: {dev} has MTU {link.get('mtu')}, not {mtu}")
        if not policy_routing:
            continue
        rule = [
            x
            for x in rule_json
            if x.get("src") == p["address"] and str(x.get("table")) == str(p["table"])
        ]
        if not rule:
            out.append(f"rail {r}: no rule 'from {p['address']} lookup {p['table']}'")
        net = str(ipaddress.ip_network(p["cidr"], strict=False)) if p["cidr"] else None
        table = routes.get(str(p["table"]), [])
        if not any(rt.get("dst") == net and rt.get("dev") == dev for rt in table):
            out.append(f"rail {r}: table {p['table']} has no route to {net} on {dev}")
    return out


def probe_problems(node: str, results: list[dict[str, Any]], mtu: int) -> list[str]:
    """Rail reachability from the probe results, one line per problem.

    Each result: {rail, peer, address, ok (the DF ping at the rail MTU answered),
    small_ok (a small ping answered), seen_on (rails whose peers answered ARP on this
    rail's interface)}. A rail whose interface hears another rail's peers is cabled
    to that rail's network: reported as a swap."""
    out: list[str] = []
    for res in results:
        r, peer = res["rail"], res["peer"]
        if res.get("ok"):
            continue
        seen = [s for s in res.get("seen_on", []) if s != r]
        if seen:
            where = ", ".join(f"rail {s}" for s in seen)
            out.append(
                f"{node} rail {r}: {peer} ({res['address']}) does not answer; {node}'s rail {r} "
                f"interface hears the peers of {where}: its cable is on {where}'s network "
                "(rails swapped)"
            )
        elif res.get("small_ok"):
            out.append(
                f"{node} rail {r}: {peer} ({res['address']}) answers small pings but not "
                f"{mtu}-byte packets with don't-fragment set: an MTU below {mtu} on the path"
            )
        else:
            out.append(f"{node} rail {r}: {peer} ({res['address']}) does not answer on rail {r}")
    return out


def ring_peers(
    me: str, hosts: list[str], rails: list[list[dict[str, Any]]], count: int = 32
) -> list[dict[str, Any]]:
    """The probe peers of `me`: the next `count` hosts in name order, wrapping around.

    `rails[i]` is hosts[i]'s rails ({rail, address, ...}). Every host probes its successors
    and is probed by its predecessors, so each neighbouring pair is probed both ways and
    the probes grow as N * count, not N squared."""
    ring = sorted(zip(hosts, rails, strict=True))
    names = [h for h, _ in ring]
    i = names.index(me)
    n = len(ring)
    out = []
    for k in range(1, min(count, n - 1) + 1):
        host, host_rails = ring[(i + k) % n]
        peer_rails = [{"rail": int(r["rail"]), "address": str(r["address"])} for r in host_rails]
        out.append({"name": host, "rails": peer_rails})
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "fabric_rail_plan": rail_plan,
            "fabric_rail_problems": rail_problems,
            "fabric_rail_state_problems": rail_state_problems,
            "fabric_rail_probe_problems": probe_problems,
            "fabric_rail_ring_peers": ring_peers,
        }
