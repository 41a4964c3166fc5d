"""Validation of the spec as written: the schema first, then the cross-field rules.

`parse_spec` checks the schema (pydantic reports every field error in one
pass). `spec_problems` then returns every broken rule that the document shows
by itself: duplicates, role counts, subnets, pools, gateways and VIPs,
profile names, the fabric topology. Rules that need resolved values (a node's
profile, its addresses, its leaf switches) run while `gpufleet.model` builds
the cluster; `gpufleet.model.load_cluster` reports both kinds together.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from pydantic import ValidationError

from gpufleet.errors import Problem, UserError
from gpufleet.slurm import controller_problems, gres_problems, partition_problems
from gpufleet.spec.models import ClusterSpec, bmc_endpoint, node_index
from gpufleet.spec.networks import NetDef, network_defs, pool_bounds
from gpufleet.spec.problems import closest, translate
from gpufleet.spec.profiles import BUILTIN_PROFILES, known_profiles, profile_name


def spec_title(source: str) -> str:
    return f"{source}: invalid cluster spec" if source else "invalid cluster spec"


def parse_spec(data: Any, source: str = "") -> ClusterSpec:
    """The schema: return the spec as written, or raise UserError with every field problem."""
    title = spec_title(source)
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
        return ClusterSpec.model_validate(data)
    except ValidationError as err:
        raise UserError(translate(err, ClusterSpec), title=title) from None


def spec_problems(spec: ClusterSpec) -> list[Problem]:
    """Every cross-field rule the document breaks by itself (empty when it holds)."""
    problems = _check_site(spec)
    problems += _check_profile_names(spec)
    problems += _check_node_references(spec)
    problems += _check_unique(spec)
    problems += _check_roles(spec)
    problems += _check_subnets(spec)
    problems += _check_topology(spec)
    problems += _check_slurm(spec)
    problems += _check_serving(spec)
    return problems


def _check_site(spec: ClusterSpec) -> list[Problem]:
    """admin_cidrs open to everyone only when the spec says so in as many words."""
    if spec.site.allow_admin_from_anywhere:
        return []
    return [
        Problem(
            f"site.admin_cidrs[{k}]",
            f"{cidr} lets every address on the internet reach SSH and the BMCs",
            "list your admin subnets, or set site.allow_admin_from_anywhere: true if that is"
            " really meant",
        )
        for k, cidr in enumerate(spec.site.admin_cidrs)
        if cidr.prefixlen == 0
    ]


def _check_profile_names(spec: ClusterSpec) -> list[Problem]:
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
    return problems


def _check_node_references(spec: ClusterSpec) -> list[Problem]:
    """Each node names a known profile (itself or by role), an index and BMC credentials."""
    problems: list[Problem] = []
    profiles = known_profiles(spec)
    dbmc = spec.defaults.bmc
    for i, node in enumerate(spec.nodes):
        base = f"nodes[{i}]"
        if node.profile is None:
            if profile_name(spec, node) is None:
                problems.append(
                    Problem(
                        f"{base}.profile",
                        f"{node.name} has no profile",
                        f"set profile: or defaults.profiles.{node.role}",
                    )
                )
        elif node.profile not in profiles:
            problems.append(
                Problem(
                    f"{base}.profile",
                    f"unknown profile '{node.profile}'",
                    closest(node.profile, profiles),
                )
            )
        if node_index(node) is None:
            problems.append(
                Problem(
                    f"{base}.index",
                    f"no index for {node.name}: the name does not end in digits",
                    "set index: N (its slot in the address pool)",
                )
            )
        if node.bmc.username is None and dbmc.username is None:
            problems.append(
                Problem(
                    f"{base}.bmc.username", "missing", "set it here or in defaults.bmc.username"
                )
            )
        if node.bmc.password is None and dbmc.password is None:
            problems.append(
                Problem(
                    f"{base}.bmc.password",
                    "missing password reference",
                    "set {env: VAR} or {secret: name} here or in defaults.bmc.password",
                )
            )
    return problems


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
        # One BMC, however its URL is spelt (case, default port, trailing slash).
        endpoint = bmc_endpoint(n.bmc.url)
        first = tables["url"].get(endpoint)
        if first is not None and spec.nodes[first].bmc.url != n.bmc.url:
            other = spec.nodes[first]
            problems.append(
                Problem(
                    f"{base}.bmc.url",
                    f"this BMC URL names the same BMC as {other.name}'s {other.bmc.url}"
                    f" (nodes[{first}]), spelt differently",
                    "each node has its own BMC",
                )
            )
        else:
            dup(i, "url", endpoint, f"{base}.bmc.url", "this BMC URL", "each node has its own BMC")
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
    addresses: dict[IPv4Address, str] = {}
    fdef = next(d for d in defs if d.key == "frontend")
    for k, vip in enumerate(front.vips):
        path = f"networks.frontend.vips[{k}]"
        if vip.name in names:
            problems.append(
                Problem(f"{path}.name", f"VIP name {vip.name} is used twice", "rename one")
            )
        names.add(vip.name)
        if vip.address == front.gateway:
            problems.append(
                Problem(
                    f"{path}.address",
                    f"VIP {vip.address} is the frontend gateway",
                    "give the VIP its own address below the pools",
                )
            )
        elif vip.address in addresses:
            problems.append(
                Problem(
                    f"{path}.address",
                    f"VIP {vip.address} is also VIP {addresses[vip.address]}'s address",
                    "give each VIP its own address",
                )
            )
        else:
            problems += _check_reserved(fdef, vip.address, f"{path}.address", "VIP")
        addresses.setdefault(vip.address, vip.name)
    return problems


def _check_reserved(d: NetDef, addr: IPv4Address, path: str, what: str) -> list[Problem]:
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


def _check_topology(spec: ClusterSpec) -> list[Problem]:
    """Scalable units: distinct names, each rack in at most one unit."""
    fabric = spec.networks.fabric
    if fabric is None:
        return [
            Problem(
                f"nodes[{i}].fabric_leaves",
                f"{n.name} names leaf switches but the site has no networks.fabric",
                "remove fabric_leaves or add networks.fabric",
            )
            for i, n in enumerate(spec.nodes)
            if n.fabric_leaves is not None
        ]
    if fabric.topology is None:
        return []
    problems: list[Problem] = []
    base = "networks.fabric.topology.units"
    unit_of: dict[str, str] = {}
    names: set[str] = set()
    for u, unit in enumerate(fabric.topology.units):
        if unit.name in names:
            problems.append(
                Problem(f"{base}[{u}].name", f"unit {unit.name} is listed twice", "rename one")
            )
        names.add(unit.name)
        for k, rack in enumerate(unit.racks):
            other = unit_of.setdefault(rack, unit.name)
            if other != unit.name or unit.racks.index(rack) != k:
                problems.append(
                    Problem(
                        f"{base}[{u}].racks[{k}]",
                        f"rack {rack} is also in unit {other}",
                        "list every rack in one unit only",
                    )
                )
    return problems


def _check_slurm(spec: ClusterSpec) -> list[Problem]:
    """Controllers that are distinct head nodes, partitions of existing GPU nodes, GRES no
    larger than the profile's GPUs (gpufleet.slurm has the rules, roles/slurm the same at run
    time)."""
    slurm = spec.slurm
    heads = sorted(n.name for n in spec.nodes_by_role("head"))
    problems: list[Problem] = []
    if slurm.controllers is not None:
        problems += controller_problems(slurm.controllers, base="slurm.controllers")
        problems += [
            Problem(
                f"slurm.controllers[{i}]",
                f"{name} is not a head node",
                f"name head nodes ({', '.join(heads[:5]) or 'none'})",
            )
            for i, name in enumerate(slurm.controllers)
            if name not in heads
        ]
    gpu_nodes = [n.name for n in spec.nodes_by_role("gpu")]
    problems += partition_problems(
        [p.model_dump() for p in slurm.partitions], gpu_nodes, base="slurm.partitions"
    )
    profiles = known_profiles(spec)
    for name, gres in slurm.gres.items():
        profile = profiles.get(name)
        if profile is None:
            problems.append(
                Problem(f"slurm.gres.{name}", f"unknown profile '{name}'", closest(name, profiles))
            )
        else:
            problems += gres_problems(
                f"profile {name}", gres, profile.gpu_count, base=f"slurm.gres.{name}"
            )
    return problems


def _check_serving(spec: ClusterSpec) -> list[Problem]:
    """Models on GPU nodes with the GPUs they ask for, no two on one node and port, unique
    names; a VIP that exists and two lb nodes to hold it."""
    serving = spec.serving
    if not serving.models:
        return []
    problems: list[Problem] = []
    vips = [v.name for v in spec.networks.frontend.vips]
    if serving.vip is not None and serving.vip not in vips:
        problems.append(
            Problem(
                "serving.vip", f"no frontend VIP named '{serving.vip}'", closest(serving.vip, vips)
            )
        )
    elif not vips:
        problems.append(
            Problem(
                "serving",
                "models to serve but no frontend VIP",
                "add one under networks.frontend.vips (the address clients use)",
            )
        )
    lbs = spec.nodes_by_role("lb")
    if len(lbs) < 2:
        problems.append(
            Problem(
                "serving",
                f"{len(lbs)} lb node(s): the VIP needs two to fail over",
                "add two nodes with role: lb (HAProxy and keepalived run there)",
            )
        )
    gpus = {n.name: n for n in spec.nodes_by_role("gpu")}
    profiles = known_profiles(spec)
    seen_names: dict[str, int] = {}
    taken: dict[tuple[str, int], str] = {}
    for i, model in enumerate(serving.models):
        base = f"serving.models[{i}]"
        if model.name in seen_names:
            problems.append(
                Problem(
                    f"{base}.name",
                    f"'{model.name}' is already serving.models[{seen_names[model.name]}]",
                    "one entry per model name",
                )
            )
        seen_names.setdefault(model.name, i)
        names = sorted(gpus) if model.nodes == "ALL" else model.nodes
        for k, name in enumerate(names):
            node = gpus.get(name)
            if node is None:
                problems.append(
                    Problem(
                        f"{base}.nodes[{k}]", f"{name} is not a GPU node", closest(name, list(gpus))
                    )
                )
                continue
            other = taken.get((name, model.port))
            if other is not None:
                problems.append(
                    Problem(
                        f"{base}.port",
                        f"{name} already serves {other} on port {model.port}",
                        "give each model on a node its own port",
                    )
                )
            taken.setdefault((name, model.port), model.name)
            profile = profiles.get(profile_name(spec, node) or "")
            have = profile.gpu_count if profile is not None else 0
            if model.tensor_parallel is not None and have and model.tensor_parallel > have:
                problems.append(
                    Problem(
                        f"{base}.tensor_parallel",
                        f"{model.tensor_parallel} GPUs per instance, {name} has {have}",
                        f"at most {have}",
                    )
                )
    return problems
