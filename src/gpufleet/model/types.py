"""The resolved cluster: what every consumer reads after validation.

Plain frozen dataclasses, built once by `gpufleet.model.load_cluster`: every
default is applied, every profile resolved to its object, every address and
leaf switch assigned. Nothing downstream looks at the spec's defaults again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from gpufleet.spec.models import FabricType, PasswordRef, Profile, Roce, Role

__all__ = [
    "Bmc",
    "Cluster",
    "Fabric",
    "Interface",
    "Node",
    "RailInterface",
    "Site",
    "Slurm",
    "SlurmGres",
    "SlurmPartition",
    "Subnet",
    "VersionLock",
    "Vip",
]


@dataclass(frozen=True, slots=True)
class Interface:
    """One address of one node on one network."""

    network: str  # oob, frontend, storage, rail0 ... railN-1
    address: IPv4Address
    cidr: IPv4Network
    hostname: str
    pinned: bool  # set in the spec (addresses.* or the BMC URL), not computed from the index

    @property
    def with_prefix(self) -> str:
        return f"{self.address}/{self.cidr.prefixlen}"


@dataclass(frozen=True, slots=True)
class RailInterface(Interface):
    """A fabric NIC: its rail, its OS name where the profile knows it, its leaf switch."""

    rail: int
    netdev: str | None  # e.g. eth1 in the lab; None: find it by its rail address
    leaf: str | None  # None when the site does not describe its leaf switches


@dataclass(frozen=True, slots=True)
class Bmc:
    """How to reach a node's BMC; the password is a reference, never the value."""

    url: str
    username: str
    password: PasswordRef
    verify_tls: bool


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    role: Role
    index: int
    profile_name: str
    profile: Profile
    bmc: Bmc
    boot_mac: str
    rack: str
    position: int
    oob: Interface
    frontend: Interface
    storage: Interface | None
    rails: tuple[RailInterface, ...]

    @property
    def interfaces(self) -> tuple[Interface, ...]:
        """Every interface: oob, frontend, storage (if any), then the rails in order."""
        if self.storage is None:
            return (self.oob, self.frontend, *self.rails)
        return (self.oob, self.frontend, self.storage, *self.rails)

    def on(self, network: str) -> Interface | None:
        for iface in self.interfaces:
            if iface.network == network:
                return iface
        return None


@dataclass(frozen=True, slots=True)
class Subnet:
    name: str  # oob, frontend, storage, rail0 ...
    cidr: IPv4Network
    gateway: IPv4Address | None
    mtu: int
    vlan: int | None
    pools: tuple[tuple[Role, IPv4Address, IPv4Address], ...]  # role, first, last


@dataclass(frozen=True, slots=True)
class Vip:
    name: str
    address: IPv4Address
    cidr: IPv4Network
    hostname: str


@dataclass(frozen=True, slots=True)
class Fabric:
    type: FabricType
    mtu: int
    rails: tuple[IPv4Network, ...]
    roce: Roce | None
    leaves: tuple[str, ...]  # every leaf switch a node is cabled to, sorted; () if not described
    spines: int | None  # where the spec says
    # InfiniBand: "fabric" (switches/UFM run it; the default) or "head" (opensm on head nodes)
    subnet_manager: str | None = None


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    domain: str
    ntp_servers: tuple[str, ...]
    admin_cidrs: tuple[IPv4Network, ...]
    ssh_user: str
    ssh_public_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VersionLock:
    """The spec's `versions:`, flat; the field names are the inventory's keys."""

    nvidia_driver_branch: str
    nvidia_driver_version: str
    nvidia_driver_open_kernel_modules: bool
    fabric_manager: str | None
    cuda_toolkit: str
    dcgm: str
    nvidia_container_toolkit: str
    doca_ofed: str
    nccl: str
    nccl_tests: str
    slurm: str
    prometheus: str
    alertmanager: str
    node_exporter: str
    vllm: str
    haproxy: str
    keepalived: str

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class SlurmPartition:
    """One partition of the spec's `slurm.partitions`, defaults applied."""

    name: str
    nodes: str | tuple[str, ...]  # "ALL", or GPU node names sorted
    default: bool
    exclusive: bool
    max_time: str  # Slurm's time format or INFINITE


@dataclass(frozen=True, slots=True)
class SlurmGres:
    """The GPU GRES the nodes of one profile offer (gpu:<type>:<count>)."""

    type: str | None  # None: untyped (the spec says gpu:<count>)
    count: int


@dataclass(frozen=True, slots=True)
class Slurm:
    """The spec's `slurm:` section resolved (gpufleet.model.build.resolve_slurm)."""

    controllers: tuple[str, ...]  # primary, then backup; () only without head nodes
    partitions: tuple[SlurmPartition, ...]  # in the spec's order
    gres: Mapping[str, SlurmGres]  # profile of GPU nodes -> GRES, sorted; no 0-GPU profiles

    @property
    def accounting(self) -> str | None:
        """Where slurmdbd runs: the primary controller."""
        return self.controllers[0] if self.controllers else None


@dataclass(frozen=True, slots=True)
class Monitoring:
    """The spec's `monitoring:` section resolved (gpufleet.model.build.resolve_monitoring)."""

    servers: tuple[str, ...]  # the monitoring nodes, sorted: Prometheus and Alertmanager
    scrape_interval: str
    evaluation_interval: str
    retention_time: str
    retention_size: str | None


@dataclass(frozen=True, slots=True)
class ServedModel:
    """One entry of the spec's `serving.models`, resolved."""

    name: str
    path: str
    nodes: tuple[str, ...]  # GPU node names, sorted ("ALL" expanded)
    tensor_parallel: int | None  # None: all of the node's GPUs
    port: int


@dataclass(frozen=True, slots=True)
class Serving:
    """The spec's `serving:` section resolved (gpufleet.model.build.resolve_serving)."""

    vip: str | None  # the frontend VIP's name; None without models or VIPs
    port: int
    models: tuple[ServedModel, ...]
    balancers: tuple[str, ...]  # lb nodes, sorted: the first is keepalived's preferred master
    preempt: bool
    affinity: str
    rate_limit: int


@dataclass(frozen=True, slots=True)
class Cluster:
    """One site, resolved. Nodes are sorted by name (the order of `nodes:` does not matter)."""

    site: Site
    nodes: tuple[Node, ...]
    subnets: tuple[Subnet, ...]
    vips: tuple[Vip, ...]
    fabric: Fabric | None
    versions: VersionLock
    profiles: Mapping[str, Profile]  # the profiles nodes use, by name
    slurm: Slurm
    monitoring: Monitoring
    serving: Serving
    spec_file: Path | None  # where it was read from; None for data given in memory

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def nodes_by_role(self, role: Role) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == role)

    def subnet(self, name: str) -> Subnet:
        for s in self.subnets:
            if s.name == name:
                return s
        raise KeyError(name)

    def rows(self, network: str) -> list[tuple[Node, Interface]]:
        """Nodes on one network with their interface there, sorted by address."""
        out = [(n, i) for n in self.nodes for i in n.interfaces if i.network == network]
        return sorted(out, key=lambda ni: int(ni[1].address))
