"""Spec -> Cluster: resolve every node once, assign addresses and leaves, check what needs them.

`build_cluster` runs on any spec that passed the schema, also one with
problems of its own (gpufleet.spec.checks): nodes whose profile, index or name
is unusable are left out, so that every other problem is still found in the
same pass. It returns the Cluster only when it found nothing wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from gpufleet.errors import Problem
from gpufleet.model.addressing import Slot, assign, hostname, node_networks
from gpufleet.model.fabric import Leaves, assign_leaves
from gpufleet.model.types import (
    Bmc,
    Cluster,
    Fabric,
    Interface,
    Monitoring,
    Node,
    RailInterface,
    ServedModel,
    Serving,
    Site,
    Slurm,
    SlurmGres,
    SlurmPartition,
    Subnet,
    VersionLock,
    Vip,
)
from gpufleet.slurm import default_controllers, gres_type, parse_gres
from gpufleet.spec.checks import spec_problems
from gpufleet.spec.compat import check_versions
from gpufleet.spec.models import MAX_FQDN, ClusterSpec, Profile, node_index
from gpufleet.spec.networks import network_defs, pool_bounds
from gpufleet.spec.profiles import known_profiles, profile_name


@dataclass(frozen=True, slots=True)
class _Resolved:
    """What one node of the spec resolves to, before addresses."""

    profile_name: str
    profile: Profile
    index: int
    networks: tuple[str, ...]  # oob, frontend, storage?, rail0 ...
    bmc: Bmc | None  # None while a credential is missing (reported by gpufleet.spec.checks)


def _resolve(spec: ClusterSpec) -> dict[int, _Resolved]:
    """Nodes that get addresses, by position: a known profile, an index, and a name
    and (role, index) not taken by an earlier node. gpufleet.spec.checks reports
    the others."""
    profiles = known_profiles(spec)
    dbmc = spec.defaults.bmc
    names: set[str] = set()
    slots: set[tuple[str, int]] = set()
    out: dict[int, _Resolved] = {}
    for i, node in enumerate(spec.nodes):
        index = node_index(node)
        if node.name in names or index is None or (node.role, index) in slots:
            continue
        names.add(node.name)
        slots.add((node.role, index))
        name = profile_name(spec, node)
        profile = profiles.get(name) if name is not None else None
        if name is None or profile is None:
            continue
        username = node.bmc.username if node.bmc.username is not None else dbmc.username
        password = node.bmc.password if node.bmc.password is not None else dbmc.password
        bmc = (
            Bmc(node.bmc.url, username, password, node.bmc.verify_tls)
            if username is not None and password is not None
            else None
        )
        networks = tuple(node_networks(spec, node, profile))
        out[i] = _Resolved(name, profile, index, networks, bmc)
    return out


def build_cluster(
    spec: ClusterSpec, spec_file: Path | None = None
) -> tuple[Cluster | None, list[Problem]]:
    """The resolved cluster of a spec that passed the schema, and every problem found.

    The problems are those of the document (`gpufleet.spec.spec_problems`) and
    the rules that need resolved nodes: fabric vs profiles, the version lock vs
    the profiles in use, address pins, addresses, leaf switches. The cluster is
    None when there is any problem.
    """
    problems = spec_problems(spec)
    resolved = _resolve(spec)
    problems += _check_fabric(spec, resolved)
    in_use = {r.profile_name: r.profile for r in resolved.values()}
    problems += check_versions(spec.versions, in_use)
    problems += _check_pins(spec, resolved)
    slots, addr_problems = assign(spec, {i: r.networks for i, r in resolved.items()})
    problems += addr_problems
    problems += _check_addresses(spec, slots)
    problems += _check_names(spec, slots)
    rails_of = {i: sum(k.startswith("rail") for k in r.networks) for i, r in resolved.items()}
    leaves, leaf_problems = assign_leaves(spec, rails_of)
    problems += leaf_problems
    if problems:
        return None, problems
    if len(resolved) != len(spec.nodes) or len(slots) != len(spec.nodes):
        # Every reason to leave a node out is a problem above; this guards the invariant.
        left = len(spec.nodes) - min(len(resolved), len(slots))
        return None, [Problem("nodes", f"{left} nodes did not resolve", "run with --debug")]
    return _cluster(spec, spec_file, resolved, slots, leaves), problems


def _check_fabric(spec: ClusterSpec, resolved: dict[int, _Resolved]) -> list[Problem]:
    """Every profile with fabric NICs matches the fabric: one rail per NIC, the same link."""
    problems: list[Problem] = []
    fabric = spec.networks.fabric
    if fabric is not None and fabric.subnet_manager == "head":
        heads = [i for i, n in enumerate(spec.nodes) if n.role == "head"]
        if not any(i in resolved and resolved[i].profile.fabric_nics > 0 for i in heads):
            problems.append(
                Problem(
                    "networks.fabric.subnet_manager",
                    "head: opensm runs on the head nodes, but no head node has a fabric NIC"
                    if heads
                    else "head: opensm runs on the head nodes, but the spec has no head node",
                    "give the head nodes a profile with InfiniBand NICs, or use "
                    "subnet_manager: fabric (the switches or UFM run it)",
                )
            )
    reported: set[str] = set()
    for i, r in resolved.items():
        prof, pname, name = r.profile, r.profile_name, spec.nodes[i].name
        if prof.fabric_nics == 0 or pname in reported:
            continue
        reported.add(pname)
        if fabric is None:
            problems.append(
                Problem(
                    "networks.fabric",
                    f"missing: profile {pname} ({name}) has {prof.fabric_nics} fabric NICs",
                    f"add networks.fabric with {prof.fabric_nics} rails",
                )
            )
            continue
        if len(fabric.rails) != prof.fabric_nics:
            problems.append(
                Problem(
                    "networks.fabric.rails",
                    f"{len(fabric.rails)} rails, but profile {pname} ({name}) has "
                    f"{prof.fabric_nics} fabric NICs (one rail per NIC)",
                    f"list {prof.fabric_nics} rail subnets",
                )
            )
        if prof.fabric_link != fabric.type:
            problems.append(
                Problem(
                    "networks.fabric.type",
                    f"fabric is {fabric.type}, but profile {pname} ({name}) has "
                    f"{prof.fabric_link} NICs",
                    f"set type: {prof.fabric_link} or use a matching profile",
                )
            )
    return problems


def _check_pins(spec: ClusterSpec, resolved: dict[int, _Resolved]) -> list[Problem]:
    """Pins for networks a node is not on, and fabric pin lists of the wrong length."""
    problems: list[Problem] = []
    for i, r in resolved.items():
        n = spec.nodes[i]
        a = n.addresses
        base = f"nodes[{i}].addresses"
        if a.storage is not None and "storage" not in r.networks:
            problems.append(
                Problem(
                    f"{base}.storage", f"{n.name} is not on the storage network", "remove the pin"
                )
            )
        if a.fabric is not None:
            rails = sum(k.startswith("rail") for k in r.networks)
            if len(a.fabric) != rails:
                problems.append(
                    Problem(
                        f"{base}.fabric",
                        f"{len(a.fabric)} fabric addresses for {rails} rails",
                        "pin one address per rail, in rail order",
                    )
                )
    return problems


def _check_addresses(spec: ClusterSpec, slots: dict[int, list[Slot]]) -> list[Problem]:
    """No address twice on one network (nodes, gateways and VIPs together)."""
    problems: list[Problem] = []
    # network -> address -> who has it; the owner is put in words only on a clash.
    used: dict[str, dict[int, tuple[str, str] | str]] = {}
    for d in network_defs(spec):
        used[d.key] = {}
        if d.gateway is not None:
            used[d.key][int(d.gateway)] = f"the gateway ({d.path.rsplit('.', 1)[0]}.gateway)"
    for k, vip in enumerate(spec.networks.frontend.vips):
        used["frontend"].setdefault(
            int(vip.address), f"VIP {vip.name} (networks.frontend.vips[{k}])"
        )
    for node_slots in slots.values():
        for s in node_slots:
            on = used[s.network]
            owner = on.get(s.ip)
            if owner is None:
                on[s.ip] = (s.node, s.path)
                continue
            who = owner if isinstance(owner, str) else f"{owner[0]} ({owner[1]})"
            problems.append(
                Problem(
                    s.path,
                    f"{s.address} on {s.network} for {s.node} is already taken by {who}",
                    "change the pin or the index",
                )
            )
    return problems


def _check_names(spec: ClusterSpec, slots: dict[int, list[Slot]]) -> list[Problem]:
    """Every host name in the domain (node interfaces and VIPs) is unique and fits DNS:
    labels of at most 63 characters, names of at most 253 (RFC 1035 2.3.4)."""
    problems: list[Problem] = []
    domain = spec.site.domain
    vips = [
        (f"networks.frontend.vips[{k}].name", hostname(v.name, "frontend", domain))
        for k, v in enumerate(spec.networks.frontend.vips)
    ]
    # Cheap pass: lengths, and whether any name comes twice (45,000 names at 4,096 nodes).
    seen: set[str] = set()
    clash = False
    for i, node_slots in slots.items():
        for s in node_slots:
            if s.hostname in seen:
                clash = True
            seen.add(s.hostname)
        longest = max(node_slots, key=lambda s: len(s.hostname), default=None)
        if longest is not None:
            problems += _too_long(f"nodes[{i}].name", longest.hostname, len(domain))
    for path, fqdn in vips:
        clash = clash or fqdn in seen
        seen.add(fqdn)
        problems += _too_long(path, fqdn, len(domain))
    if not clash:
        return problems
    owner: dict[str, str] = {}
    named = [
        (f"nodes[{i}].name", s.hostname, f"{s.node}'s {s.network} name")
        for i, node_slots in slots.items()
        for s in node_slots
    ]
    named += [(path, fqdn, f"VIP {fqdn.split('.', 1)[0]}") for path, fqdn in vips]
    for path, fqdn, what in named:
        other = owner.setdefault(fqdn, what)
        if other != what:
            problems.append(
                Problem(path, f"host name {fqdn} of {what} is also {other}", "rename one of them")
            )
    return problems


def _too_long(path: str, fqdn: str, domain: int) -> list[Problem]:
    label = len(fqdn) - domain - 1
    if len(fqdn) <= MAX_FQDN and label <= 63:
        return []
    size = f"label {fqdn.split('.', 1)[0]} has {label}" if label > 63 else f"{len(fqdn)}"
    return [
        Problem(
            path,
            f"host name {fqdn} is too long for DNS ({size} characters; labels take"
            f" at most 63, names {MAX_FQDN})",
            "use a shorter name or domain",
        )
    ]


def _cluster(
    spec: ClusterSpec,
    spec_file: Path | None,
    resolved: dict[int, _Resolved],
    slots: dict[int, list[Slot]],
    leaves: dict[int, Leaves],
) -> Cluster:
    nodes: list[Node] = []
    for i, r in resolved.items():
        n = spec.nodes[i]
        if r.bmc is None:
            raise ValueError(f"{n.name}: BMC credentials unresolved in a spec without problems")
        # Slots come in network order (node_networks): oob, frontend, storage?, rails.
        node_slots = slots[i]
        has_storage = len(node_slots) > 2 and node_slots[2].network == "storage"
        first_rail = 3 if has_storage else 2
        netdevs = r.profile.fabric_netdevs
        node_leaves = leaves.get(i, ())
        rails = tuple(
            RailInterface(
                s.network,
                s.address,
                s.cidr,
                s.hostname,
                s.pinned,
                rail=k,
                netdev=netdevs[k] if netdevs else None,
                leaf=node_leaves[k],
            )
            for k, s in enumerate(node_slots[first_rail:])
        )
        nodes.append(
            Node(
                name=n.name,
                role=n.role,
                index=r.index,
                profile_name=r.profile_name,
                profile=r.profile,
                bmc=r.bmc,
                boot_mac=n.boot_mac,
                rack=n.rack,
                position=n.position,
                oob=_iface(node_slots[0]),
                frontend=_iface(node_slots[1]),
                storage=_iface(node_slots[2]) if has_storage else None,
                rails=rails,
            )
        )
    nodes.sort(key=lambda node: node.name)
    site = spec.site
    front = spec.networks.frontend
    fabric = spec.networks.fabric
    return Cluster(
        site=Site(
            name=site.name,
            domain=site.domain,
            ntp_servers=tuple(site.ntp_servers),
            admin_cidrs=tuple(site.admin_cidrs),
            ssh_user=site.ssh.user,
            ssh_public_keys=tuple(site.ssh.public_keys),
        ),
        nodes=tuple(nodes),
        subnets=_subnets(spec),
        vips=tuple(
            Vip(v.name, v.address, front.cidr, hostname(v.name, "frontend", site.domain))
            for v in front.vips
        ),
        fabric=(
            Fabric(
                type=fabric.type,
                mtu=fabric.mtu,
                rails=tuple(fabric.rails),
                roce=fabric.roce,
                leaves=tuple(sorted({leaf for ls in leaves.values() for leaf in ls if leaf})),
                spines=fabric.topology.spines if fabric.topology is not None else None,
                subnet_manager=fabric.subnet_manager
                or ("fabric" if fabric.type == "infiniband" else None),
            )
            if fabric is not None
            else None
        ),
        versions=_versions(spec),
        profiles=MappingProxyType(
            {r.profile_name: r.profile for r in sorted(resolved.values(), key=_by_profile)}
        ),
        slurm=resolve_slurm(spec, nodes),
        monitoring=resolve_monitoring(spec, nodes),
        serving=resolve_serving(spec, nodes),
        spec_file=spec_file,
    )


def resolve_slurm(spec: ClusterSpec, nodes: Sequence[Node]) -> Slurm:
    """The spec's `slurm:` section with its defaults applied (gpufleet.slurm has the rules).

    Controllers: the spec's, else the first two head nodes by name (none without head nodes).
    Partitions: the spec's, in its order, node lists sorted. GRES: one entry per profile of
    the GPU nodes that has GPUs, by profile name: the spec's `slurm.gres` entry where it has
    one (typed after the model when it names no type), else every GPU of the profile, typed
    after its model (H100-SXM5-80GB -> h100).
    """
    s = spec.slurm
    heads = [n.name for n in nodes if n.role == "head"]
    controllers = tuple(s.controllers) if s.controllers is not None else default_controllers(heads)
    partitions = tuple(
        SlurmPartition(
            name=p.name,
            nodes=p.nodes if isinstance(p.nodes, str) else tuple(sorted(set(p.nodes))),
            default=p.default,
            exclusive=p.exclusive,
            max_time=p.max_time,
        )
        for p in s.partitions
    )
    profiles = {n.profile_name: n.profile for n in nodes if n.role == "gpu"}
    gres: dict[str, SlurmGres] = {}
    for name in sorted(profiles):
        profile = profiles[name]
        if profile.gpu_count == 0:
            continue
        model = gres_type(profile.gpu_model) if profile.gpu_model else None
        given = s.gres.get(name)
        if given is not None:
            # An untyped gpu:N is typed after the model too: jobs may still ask for gpu:N.
            kind, count = parse_gres(given)
            gres[name] = SlurmGres(kind or model, count)
        else:
            gres[name] = SlurmGres(model, profile.gpu_count)
    return Slurm(controllers, partitions, MappingProxyType(gres))


def _by_profile(r: _Resolved) -> str:
    return r.profile_name


def _iface(s: Slot) -> Interface:
    return Interface(s.network, s.address, s.cidr, s.hostname, s.pinned)


def _subnets(spec: ClusterSpec) -> tuple[Subnet, ...]:
    out = []
    for d in network_defs(spec):
        bounds = pool_bounds(d.cidr, d.pools)
        pools = tuple(
            (role, d.cidr.network_address + a, d.cidr.network_address + b - 1)
            for role, (a, b) in sorted(bounds.items(), key=lambda kv: kv[1])
        )
        out.append(Subnet(d.key, d.cidr, d.gateway, d.mtu, d.vlan, pools))
    return tuple(out)


def _versions(spec: ClusterSpec) -> VersionLock:
    v = spec.versions
    return VersionLock(
        nvidia_driver_branch=v.nvidia_driver.branch,
        nvidia_driver_version=v.nvidia_driver.version,
        nvidia_driver_open_kernel_modules=v.nvidia_driver.open_kernel_modules,
        fabric_manager=v.fabric_manager,
        cuda_toolkit=v.cuda_toolkit,
        dcgm=v.dcgm,
        nvidia_container_toolkit=v.nvidia_container_toolkit,
        doca_ofed=v.doca_ofed,
        nccl=v.nccl,
        nccl_tests=v.nccl_tests,
        slurm=v.slurm,
        prometheus=v.prometheus,
        alertmanager=v.alertmanager,
        node_exporter=v.node_exporter,
        vllm=v.vllm,
        haproxy=v.haproxy,
        keepalived=v.keepalived,
    )


def resolve_serving(spec: ClusterSpec, nodes: Sequence[Node]) -> Serving:
    """The spec's `serving:` section: models with their nodes expanded, the VIP by name (the
    first frontend VIP when the spec names none), the lb nodes that hold it."""
    s = spec.serving
    gpus = sorted(n.name for n in nodes if n.role == "gpu")
    vips = [v.name for v in spec.networks.frontend.vips]
    return Serving(
        vip=s.vip if s.vip is not None else (vips[0] if vips else None),
        port=s.port,
        models=tuple(
            ServedModel(
                name=m.name,
                path=m.path,
                nodes=tuple(gpus if m.nodes == "ALL" else sorted(m.nodes)),
                tensor_parallel=m.tensor_parallel,
                port=m.port,
            )
            for m in s.models
        ),
        balancers=tuple(sorted(n.name for n in nodes if n.role == "lb")),
        preempt=s.preempt,
        affinity=s.affinity,
        rate_limit=s.rate_limit,
    )


def resolve_monitoring(spec: ClusterSpec, nodes: Sequence[Node]) -> Monitoring:
    """The spec's `monitoring:` section: Prometheus and Alertmanager on every monitoring node
    (none: the site has no monitoring phase), node_exporter on every node."""
    m = spec.monitoring
    return Monitoring(
        servers=tuple(sorted(n.name for n in nodes if n.role == "monitoring")),
        scrape_interval=m.scrape_interval,
        evaluation_interval=m.evaluation_interval,
        retention_time=m.retention_time,
        retention_size=m.retention_size,
    )
