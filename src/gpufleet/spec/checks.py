"""Validation of a whole spec: schema first, then every cross-field rule.

`validate_data` collects problems instead of stopping at the first: the schema
(pydantic) reports every field error in one pass; when the schema holds, the
cross-field checks below run and all of their problems are reported together.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address
from typing import Any

from pydantic import ValidationError

from gpufleet.errors import Problem, UserError
from gpufleet.spec.addressing import (
    Slot,
    assign,
    derived_index,
    network_defs,
    node_index,
    node_networks,
    pool_bounds,
)
from gpufleet.spec.compat import check_versions
from gpufleet.spec.models import ClusterSpec, Node, Profile
from gpufleet.spec.problems import closest, translate
from gpufleet.spec.profiles import BUILTIN_PROFILES


def validate_data(data: Any, source: str = "") -> ClusterSpec:
    """Validate parsed YAML; return the spec with defaults applied, or raise UserError."""
    title = f"{source}: invalid cluster spec" if source else "invalid cluster spec"
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise UserError(
            [
                Problem(
                    "",
                    f"the spec is {kind}, expected a mapping",
                    "start from inventories/lab/cluster.yaml",
                )
            ],
            title=title,
        )
    try:
        spec = ClusterSpec.model_validate(data)
    except ValidationError as err:
        raise UserError(translate(err, ClusterSpec), title=title) from None
    spec, problems = normalize(spec)
    problems += cross_checks(spec)
    if problems:
        raise UserError(_dedupe(problems), title=title)
    return spec


def _dedupe(problems: Iterable[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def known_profiles(spec: ClusterSpec) -> dict[str, Profile]:
    return {**BUILTIN_PROFILES, **spec.profiles}


def normalize(spec: ClusterSpec) -> tuple[ClusterSpec, list[Problem]]:
    """Apply defaults (profile, index, BMC credentials); report what cannot be resolved."""
    problems: list[Problem] = []
    for name in spec.profiles:
        if name in BUILTIN_PROFILES:
            problems.append(
                Problem(
                    f"profiles.{name}", f"'{name}' is a built-in profile", "give yours another name"
                )
            )
    profiles = known_profiles(spec)
    for role, name in spec.defaults.profiles.items():
        if name not in profiles:
            problems.append(
                Problem(
                    f"defaults.profiles.{role}",
                    f"unknown profile '{name}'",
                    closest(name, profiles),
                )
            )
    dbmc = spec.defaults.bmc
    nodes: list[Node] = []
    for i, node in enumerate(spec.nodes):
        base = f"nodes[{i}]"
        update: dict[str, Any] = {}
        if node.profile is None:
            default = spec.defaults.profiles.get(node.role)
            if default is None:
                problems.append(
                    Problem(
                        f"{base}.profile",
                        f"{node.name} has no profile",
                        f"set profile: or defaults.profiles.{node.role}",
                    )
                )
            else:
                update["profile"] = default
        elif node.profile not in profiles:
            problems.append(
                Problem(
                    f"{base}.profile",
                    f"unknown profile '{node.profile}'",
                    closest(node.profile, profiles),
                )
            )
        if node.index is None and derived_index(node.name) is None:
            problems.append(
                Problem(
                    f"{base}.index",
                    f"no index for {node.name}: the name does not end in digits",
                    "set index: N (its slot in the address pool)",
                )
            )
        bmc_update: dict[str, Any] = {}
        if node.bmc.username is None:
            if dbmc.username is None:
                problems.append(
                    Problem(
                        f"{base}.bmc.username", "missing", "set it here or in defaults.bmc.username"
                    )
                )
            else:
                bmc_update["username"] = dbmc.username
        if node.bmc.password is None:
            if dbmc.password is None:
                problems.append(
                    Problem(
                        f"{base}.bmc.password",
                        "missing password reference",
                        "set {env: VAR} or {secret: name} here or in defaults.bmc.password",
                    )
                )
            else:
                bmc_update["password"] = dbmc.password
        if bmc_update:
            update["bmc"] = node.bmc.model_copy(update=bmc_update)
        nodes.append(node.model_copy(update=update) if update else node)
    return spec.model_copy(update={"nodes": nodes}), problems


def _resolved_profiles(spec: ClusterSpec) -> dict[str, Profile]:
    """Node name -> profile, for nodes whose profile resolved."""
    profiles = known_profiles(spec)
    return {n.name: profiles[n.profile] for n in spec.nodes if n.profile in profiles}


def cross_checks(spec: ClusterSpec) -> list[Problem]:
    problems: list[Problem] = []
    problems += _check_unique(spec)
    problems += _check_roles(spec)
    problems += _check_subnets(spec)
    node_profiles = _resolved_profiles(spec)
    problems += _check_fabric(spec, node_profiles)
    in_use = {n.profile: node_profiles[n.name] for n in spec.nodes if n.name in node_profiles}
    problems += check_versions(spec.versions, {k: v for k, v in in_use.items() if k})
    problems += _check_pins(spec, node_profiles)
    slots, addr_problems = assign(spec, _assignable(spec, node_profiles))
    problems += addr_problems
    problems += _check_addresses(spec, slots)
    return problems


def _assignable(spec: ClusterSpec, node_profiles: dict[str, Profile]) -> dict[int, Profile]:
    """Nodes that get addresses: resolved, with a unique name and a unique (role, index)."""
    seen_names: set[str] = set()
    seen_idx: set[tuple[str, int]] = set()
    out: dict[int, Profile] = {}
    for i, n in enumerate(spec.nodes):
        idx = node_index(n)
        if n.name in seen_names or idx is None or (n.role, idx) in seen_idx:
            continue
        seen_names.add(n.name)
        seen_idx.add((n.role, idx))
        if n.name in node_profiles:
            out[i] = node_profiles[n.name]
    return out


def _check_unique(spec: ClusterSpec) -> list[Problem]:
    problems: list[Problem] = []
    tables: dict[str, dict[Any, int]] = {k: {} for k in ("name", "mac", "url", "slot", "index")}

    def dup(i: int, table: str, key: Any, path: str, what: str, fix: str) -> None:
        first = tables[table].setdefault(key, i)
        if first != i:
            other = spec.nodes[first].name
            problems.append(Problem(path, f"{what} is also used by {other} (nodes[{first}])", fix))

    for i, n in enumerate(spec.nodes):
        base = f"nodes[{i}]"
        dup(i, "name", n.name, f"{base}.name", f"name {n.name}", "give every node its own name")
        dup(
            i,
            "mac",
            n.boot_mac,
            f"{base}.boot_mac",
            f"boot MAC {n.boot_mac}",
            "check the NIC label",
        )
        dup(i, "url", n.bmc.url, f"{base}.bmc.url", "this BMC URL", "each node has its own BMC")
        where = f"rack {n.rack} U{n.position}"
        dup(i, "slot", (n.rack, n.position), f"{base}.position", where, "fix rack or position")
        idx = node_index(n)
        if idx is not None:
            path = f"{base}.index" if n.index is not None else f"{base}.name"
            fix = "set a distinct index: (addresses derive from it)"
            dup(i, "index", (n.role, idx), path, f"{n.role} index {idx}", fix)
    return problems


def _check_roles(spec: ClusterSpec) -> list[Problem]:
    problems: list[Problem] = []
    counts = {r: len(spec.nodes_by_role(r)) for r in ("gpu", "head", "lb", "monitoring")}
    if counts["head"] == 0:
        problems.append(
            Problem("nodes", "no head node", "add a node with role: head (Slurm controller, login)")
        )
    if counts["lb"] % 2:
        problems.append(
            Problem(
                "nodes",
                f"{counts['lb']} lb nodes: load balancers run in pairs (active/backup VIPs)",
                "add or remove one lb node",
            )
        )
    if spec.networks.frontend.vips and counts["lb"] == 0:
        problems.append(
            Problem(
                "networks.frontend.vips",
                "VIPs need lb nodes to hold them",
                "add a pair of lb nodes",
            )
        )
    return problems


def _check_subnets(spec: ClusterSpec) -> list[Problem]:
    problems: list[Problem] = []
    defs = network_defs(spec)
    for j, b in enumerate(defs):
        for a in defs[:j]:
            if a.cidr.overlaps(b.cidr):
                problems.append(
                    Problem(
                        b.path,
                        f"{b.cidr} overlaps {a.path} {a.cidr}",
                        "give every network its own subnet",
                    )
                )
    seen_pools: set[str] = set()
    for d in defs:
        last = d.cidr.num_addresses - 1
        if d.pools_path not in seen_pools:
            seen_pools.add(d.pools_path)
            offsets: dict[int, str] = {}
            for role, off in d.pools.offsets().items():
                if off >= last:
                    problems.append(
                        Problem(
                            f"{d.pools_path}.{role}",
                            f"pool offset {off} lies outside {d.cidr}"
                            f" ({d.cidr.num_addresses} addresses)",
                            "lower the offset or widen the subnet",
                        )
                    )
                if off in offsets:
                    problems.append(
                        Problem(
                            f"{d.pools_path}.{role}",
                            f"pool offset {off} is also the {offsets[off]} pool's",
                            "give each role its own offset",
                        )
                    )
                offsets.setdefault(off, role)
        if d.gateway is not None:
            gw_path = d.path.rsplit(".", 1)[0] + ".gateway"
            problems += _check_reserved(d, d.gateway, gw_path, "gateway")
    front = spec.networks.frontend
    names: set[str] = set()
    fdef = next(d for d in defs if d.key == "frontend")
    for k, vip in enumerate(front.vips):
        if vip.name in names:
            problems.append(
                Problem(
                    f"networks.frontend.vips[{k}].name",
                    f"VIP name {vip.name} is used twice",
                    "rename one",
                )
            )
        names.add(vip.name)
        problems += _check_reserved(
            fdef, vip.address, f"networks.frontend.vips[{k}].address", "VIP"
        )
    return problems


def _check_reserved(d: Any, addr: IPv4Address, path: str, what: str) -> list[Problem]:
    """A gateway or VIP: inside the subnet, a host address, below every pool."""
    if addr not in d.cidr:
        return [
            Problem(
                path,
                f"{what} {addr} is outside its subnet {d.cidr}",
                f"pick an address in {d.cidr}",
            )
        ]
    if addr in (d.cidr.network_address, d.cidr.broadcast_address):
        return [
            Problem(
                path, f"{what} {addr} is the network or broadcast address", "pick a host address"
            )
        ]
    offset = int(addr) - int(d.cidr.network_address)
    for role, (start, end) in pool_bounds(d.cidr, d.pools).items():
        if start <= offset < end:
            low = d.cidr.network_address + 1
            high = d.cidr.network_address + min(d.pools.offsets().values()) - 1
            return [
                Problem(
                    path,
                    f"{what} {addr} lies in the {role} address pool",
                    f"pick one of {low}-{high} (below the pools)",
                )
            ]
    return []


def _check_fabric(spec: ClusterSpec, node_profiles: dict[str, Profile]) -> list[Problem]:
    problems: list[Problem] = []
    fabric = spec.networks.fabric
    reported: set[str] = set()
    for n in spec.nodes:
        prof = node_profiles.get(n.name)
        if prof is None or prof.fabric_nics == 0 or n.profile in reported:
            continue
        reported.add(str(n.profile))
        if fabric is None:
            problems.append(
                Problem(
                    "networks.fabric",
                    f"missing: profile {n.profile} ({n.name}) has {prof.fabric_nics} fabric NICs",
                    f"add networks.fabric with {prof.fabric_nics} rails",
                )
            )
            continue
        if len(fabric.rails) != prof.fabric_nics:
            problems.append(
                Problem(
                    "networks.fabric.rails",
                    f"{len(fabric.rails)} rails, but profile {n.profile} ({n.name}) has "
                    f"{prof.fabric_nics} fabric NICs (one rail per NIC)",
                    f"list {prof.fabric_nics} rail subnets",
                )
            )
        if prof.fabric_link != fabric.type:
            problems.append(
                Problem(
                    "networks.fabric.type",
                    f"fabric is {fabric.type}, but profile {n.profile} ({n.name}) has "
                    f"{prof.fabric_link} NICs",
                    f"set type: {prof.fabric_link} or use a matching profile",
                )
            )
    return problems


def _check_pins(spec: ClusterSpec, node_profiles: dict[str, Profile]) -> list[Problem]:
    """Pins for networks a node is not on, and fabric pin lists of the wrong length."""
    problems: list[Problem] = []
    for i, n in enumerate(spec.nodes):
        prof = node_profiles.get(n.name)
        if prof is None:
            continue
        on = set(node_networks(spec, n, prof))
        a = n.addresses
        base = f"nodes[{i}].addresses"
        if a.storage is not None and "storage" not in on:
            problems.append(
                Problem(
                    f"{base}.storage", f"{n.name} is not on the storage network", "remove the pin"
                )
            )
        if a.fabric is not None:
            rails = sorted(k for k in on if k.startswith("rail"))
            if len(a.fabric) != len(rails):
                problems.append(
                    Problem(
                        f"{base}.fabric",
                        f"{len(a.fabric)} fabric addresses for {len(rails)} rails",
                        "pin one address per rail, in rail order",
                    )
                )
    return problems


def _check_addresses(spec: ClusterSpec, slots: dict[str, list[Slot]]) -> list[Problem]:
    """No address twice on one network (nodes, gateways and VIPs together)."""
    problems: list[Problem] = []
    used: dict[tuple[str, IPv4Address], str] = {}
    for d in network_defs(spec):
        if d.gateway is not None:
            used[(d.key, d.gateway)] = f"the gateway ({d.path.rsplit('.', 1)[0]}.gateway)"
    for k, vip in enumerate(spec.networks.frontend.vips):
        used.setdefault(("frontend", vip.address), f"VIP {vip.name} (networks.frontend.vips[{k}])")
    for node_slots in slots.values():
        for s in node_slots:
            key = (s.network, s.address)
            owner = used.get(key)
            if owner is None:
                used[key] = f"{s.node} ({s.path})"
            else:
                problems.append(
                    Problem(
                        s.path,
                        f"{s.address} on {s.network} for {s.node} is already taken by {owner}",
                        "change the pin or the index",
                    )
                )
    return problems
