"""The schema of `inventories/<site>/cluster.yaml` (pydantic v2).

Field-level rules live here (types, ranges, formats, unknown keys). Rules that
need more than one field (duplicates, overlapping subnets, pools, version
compatibility) live in `gpufleet.spec.checks` so that every problem is reported
with its own path.

Every model forbids unknown keys: a typo such as `boot_mca` is an error that
names the closest valid key, never a silently ignored setting.
"""

from __future__ import annotations

import base64
import functools
import re
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gpufleet.errors import redact

Role = Literal["gpu", "head", "lb", "monitoring"]
ROLES: tuple[Role, ...] = ("head", "lb", "monitoring", "gpu")
FabricType = Literal["infiniband", "roce", "ethernet"]

SPEC_VERSION = 1


def fail(message: str, hint: str = "") -> PydanticCustomError:
    """A validation error whose message and fix survive into the Problem line."""
    return PydanticCustomError("gpufleet", "{message}", {"message": message, "hint": hint})


# --- scalar types -----------------------------------------------------------------


def _number_as_text(value: Any, what: str, example: str) -> Any:
    if isinstance(value, bool):
        raise fail(f"expected {what}, got a boolean", f'quote it: "{example}"')
    if isinstance(value, float):
        # YAML reads 12.10 as the float 12.1: a version must be quoted.
        raise fail(f"{value!r} was read as a number by YAML", f'quote it: "{example}"')
    return value


def _version_text(value: Any) -> Any:
    value = _number_as_text(value, "a version string", "12.4.1")
    if isinstance(value, int):
        return str(value)
    return value


def _slurm_version(value: Any) -> Any:
    """The roles pin Slurm's distribution packages (apt, roles/version_lock), so the lock
    holds the package version; an upstream release alone names no package."""
    value = _number_as_text(value, "a version string", "22.05.8-4+deb12u3")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and re.fullmatch(r"\d{2}\.\d{2}\.\d+", value):
        raise fail(
            f"{value!r} is an upstream Slurm release, not the version of a Slurm package",
            "give the package version as `apt-cache policy slurmd` shows it, the same on every"
            " node, e.g. 22.05.8-4+deb12u3 (Debian 12)",
        )
    return value


def _package_version(value: Any) -> Any:
    """A distribution package's version as apt shows it (the roles pin packages with apt)."""
    value = _number_as_text(value, "a version string", "2.42.0+ds-5+deb12u1")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and re.fullmatch(r"\d+\.\d+\.\d+", value):
        raise fail(
            f"{value!r} is an upstream release, not the version of a Debian/Ubuntu package",
            "give the package version as `apt-cache policy <package>` shows it, the same on"
            " every node, e.g. 2.42.0+ds-5+deb12u1 (prometheus, Debian 12)",
        )
    return value


def _ipv4_address(value: Any) -> IPv4Address:
    if isinstance(value, IPv4Address):
        return value
    if not isinstance(value, str):
        raise fail(f"expected an IPv4 address, got {value!r}", 'write it as a string: "10.0.0.5"')
    try:
        return IPv4Address(value.strip())
    except ValueError:
        raise fail(
            f"{value!r} is not an IPv4 address", 'write four dotted numbers: "10.0.0.5"'
        ) from None


def _ipv4_network(value: Any) -> IPv4Network:
    if isinstance(value, IPv4Network):
        return value
    if not isinstance(value, str) or "/" not in value:
        raise fail(f"expected an IPv4 subnet in CIDR form, got {value!r}", 'e.g. "10.1.0.0/22"')
    try:
        return IPv4Network(value.strip(), strict=True)
    except ValueError:
        try:
            loose = IPv4Network(value.strip(), strict=False)
        except ValueError:
            raise fail(f"{value!r} is not an IPv4 subnet", 'e.g. "10.1.0.0/22"') from None
        raise fail(
            f"{value!r} has host bits set", f'did you mean "{loose.with_prefixlen}"?'
        ) from None


_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_MAC_FIX = "copy the boot NIC's MAC from its label or the BMC's inventory"


def _mac(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads 10:00:00:00:00:01 as a base-60 integer.
        raise fail("the MAC address was read as a number by YAML", 'quote it: "10:70:fd:00:00:01"')
    if not isinstance(value, str):
        raise fail(f"expected a MAC address, got {value!r}", 'e.g. "10:70:fd:00:00:01"')
    mac = value.strip().lower().replace("-", ":")
    if not _MAC_RE.match(mac):
        raise fail(f"{value!r} is not a MAC address", 'six hex pairs: "10:70:fd:00:00:01"')
    if mac == "00:00:00:00:00:00":
        raise fail("00:00:00:00:00:00 is the all-zero MAC, no NIC's", _MAC_FIX)
    if mac == "ff:ff:ff:ff:ff:ff":
        raise fail("ff:ff:ff:ff:ff:ff is the broadcast MAC, no NIC's", _MAC_FIX)
    if int(mac[:2], 16) & 1:
        raise fail(f"{value!r} is a multicast MAC", "use the unicast MAC of the boot NIC")
    return mac


_LABEL_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_DOMAIN_RE = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


def _hostname_label(value: Any) -> Any:
    if isinstance(value, str) and not _LABEL_RE.match(value):
        raise fail(
            f"{value!r} is not a valid host name",
            "lower-case letters, digits and '-', starting with a letter (e.g. gpu001)",
        )
    return value


# RFC 1035 2.3.4: a name is at most 255 octets on the wire, 253 characters written out.
MAX_FQDN = 253


def _domain(value: Any) -> Any:
    if isinstance(value, str) and not _DOMAIN_RE.match(value):
        raise fail(f"{value!r} is not a DNS domain", "lower-case, dotted: cluster.example.net")
    if isinstance(value, str) and len(value) > MAX_FQDN - 2:
        raise fail(
            f"the domain is {len(value)} characters: with a host name it exceeds the"
            f" {MAX_FQDN} a DNS name may have (RFC 1035)",
            "use a shorter domain",
        )
    return value


def _host(value: Any) -> Any:
    if isinstance(value, str):
        try:
            IPv4Address(value)
            return value
        except ValueError:
            pass
        if not _DOMAIN_RE.match(value) and not _LABEL_RE.match(value):
            raise fail(
                f"{value!r} is neither an IPv4 address nor a host name", "e.g. 0.pool.ntp.org"
            )
    return value


Version = Annotated[str, BeforeValidator(_version_text)]
SlurmVersion = Annotated[str, BeforeValidator(_slurm_version)]
PackageVersion = Annotated[str, BeforeValidator(_package_version)]
Ipv4 = Annotated[IPv4Address, BeforeValidator(_ipv4_address)]
Subnet = Annotated[IPv4Network, BeforeValidator(_ipv4_network)]
Mac = Annotated[str, BeforeValidator(_mac)]
HostLabel = Annotated[str, BeforeValidator(_hostname_label)]
Domain = Annotated[str, BeforeValidator(_domain)]
Host = Annotated[str, BeforeValidator(_host)]
RackName = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class Strict(BaseModel):
    """Base: unknown keys are errors, objects are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- site ---------------------------------------------------------------------------

# Key types OpenSSH 9 accepts for user authentication by default (ssh(1), sshd_config(5)
# PubkeyAcceptedAlgorithms; DSA was disabled in 7.0 and removed in 10.0).
_SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_KEY_HINT = "paste one line of a .pub file: 'ssh-ed25519 AAAA... comment'"


def _public_key(value: Any) -> Any:
    """One OpenSSH public key, bare: type, key data, optional comment; nothing else.

    The key lands in authorized_keys: a newline would add a second entry and
    options before the type (command=, from=, no-pty, ...) would change what the
    key may do, so both are refused rather than passed on.
    """
    if not isinstance(value, str):
        return value
    if "PRIVATE KEY" in value:
        raise fail("this is a private key", "put only the public key (the .pub file) in the spec")
    key = value.strip()
    if "\n" in key or "\r" in key:
        raise fail(
            "the key spans several lines (it would add more than one authorized_keys entry)",
            "one key per list entry, each on one line",
        )
    parts = key.split()
    if not parts:
        raise fail("the key is empty", _KEY_HINT)
    if parts[0] not in _SSH_KEY_TYPES:
        typed = next((i for i, part in enumerate(parts) if part in _SSH_KEY_TYPES), None)
        if typed is not None:
            raise fail(
                f"authorized_keys options before the key type ({' '.join(parts[:typed])[:40]})",
                "give the bare key; what a key may do is the hardening roles' business",
            )
        kind = parts[0][:40]
        if kind == "ssh-dss":
            raise fail("DSA keys (ssh-dss) are refused by OpenSSH since 7.0", "use ssh-ed25519")
        raise fail(
            f"unknown key type {kind!r}",
            f"use one of {', '.join(_SSH_KEY_TYPES)} (certificates are not accepted here)",
        )
    if len(parts) < 2 or not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", parts[1]):
        raise fail("the key data is missing or not base64", _KEY_HINT)
    # The key data starts with its own type (RFC 4253 6.6): it must be the one stated.
    head = parts[1][:64]
    try:
        blob = base64.b64decode(head[: len(head) // 4 * 4], validate=True)
    except ValueError:
        raise fail("the key data is not base64", _KEY_HINT) from None
    size = int.from_bytes(blob[:4], "big")
    inner = blob[4 : 4 + size].decode("ascii", "replace") if 4 + size <= len(blob) else ""
    if inner != parts[0]:
        raise fail(
            f"the line says {parts[0]} but the key data is {inner or 'not a key'}",
            "copy the whole line of the .pub file unchanged",
        )
    return key


def _not_root(value: str) -> str:
    if value == "root":
        raise fail(
            "the admin user must not be root (hardening_ssh refuses root logins)",
            "use a named admin user, e.g. gpufleet: it gets sudo",
        )
    return value


class Ssh(Strict):
    user: Annotated[str, AfterValidator(_not_root)] = Field(
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$", description="login user for Ansible"
    )
    public_keys: list[Annotated[str, BeforeValidator(_public_key)]] = Field(
        min_length=1, description="OpenSSH public keys allowed to log in as the user"
    )


class Site(Strict):
    name: HostLabel = Field(description="short site name, e.g. example-ib")
    domain: Domain = Field(description="DNS domain of every host name, e.g. ib.example.net")
    ntp_servers: list[Host] = Field(min_length=1, description="NTP servers (names or addresses)")
    admin_cidrs: list[Subnet] = Field(
        min_length=1, description="subnets allowed to reach SSH and the BMCs"
    )
    allow_admin_from_anywhere: bool = Field(
        default=False,
        description="say true to accept 0.0.0.0/0 in admin_cidrs (SSH and BMCs open to all)",
    )
    ssh: Ssh


# --- hardware profiles ------------------------------------------------------------------

# Linux interface names: at most 15 bytes (IFNAMSIZ 16 with the NUL), no '/' or spaces.
NetdevName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,15}$")]


class Profile(Strict):
    """What a node model has; the validation and the roles compare hardware against it."""

    description: str = ""
    gpu_count: int = Field(ge=0, le=16)
    gpu_model: str | None = None
    fabric_nics: int = Field(ge=0, le=16, description="compute-fabric NICs, one per rail")
    fabric_link: FabricType | None = None
    fabric_link_gbps: int | None = Field(default=None, ge=1)
    pcie_gen: int | None = Field(default=None, ge=1, le=6)
    pcie_width: Literal[1, 2, 4, 8, 16] | None = None
    nvswitch: bool = False
    fabric_manager: bool = False
    container: bool = False
    fabric_netdevs: list[NetdevName] | None = Field(
        default=None,
        description="OS names of the fabric NICs in rail order, where every node of the model"
        " has the same ones (e.g. the lab's eth1, eth2); absent: found by rail address",
    )
    nvlinks_per_gpu: int | None = Field(
        default=None, ge=1, le=64, description="NVLink links per GPU, where known (H100 SXM5: 18)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        if self.fabric_manager and not self.nvswitch:
            raise fail(
                "fabric_manager: true needs nvswitch: true",
                "Fabric Manager only runs on NVSwitch systems",
            )
        if self.gpu_count and not self.gpu_model:
            raise fail("gpu_count > 0 needs gpu_model", "name the model, e.g. H100-SXM5-80GB")
        if self.fabric_nics and self.fabric_link is None:
            raise fail("fabric_nics > 0 needs fabric_link", "infiniband, roce or ethernet")
        if self.fabric_netdevs is not None:
            if len(self.fabric_netdevs) != self.fabric_nics:
                raise fail(
                    f"{len(self.fabric_netdevs)} fabric_netdevs for {self.fabric_nics} fabric NICs",
                    "name one interface per fabric NIC, in rail order",
                )
            if len(set(self.fabric_netdevs)) != len(self.fabric_netdevs):
                raise fail("fabric_netdevs names an interface twice", "one name per rail")
        if self.nvlinks_per_gpu is not None and not self.gpu_count:
            raise fail("nvlinks_per_gpu needs gpu_count > 0", "remove it or set gpu_count")
        return self


# --- nodes --------------------------------------------------------------------------------


def _password_ref(value: Any) -> Any:
    if isinstance(value, str | int):
        raise fail(
            "a BMC password must never be written in the spec",
            "reference it instead: {env: GPUFLEET_BMC_PASSWORD} or {secret: bmc-password}",
        )
    return value


class PasswordRef(Strict):
    """Where the BMC password comes from: an environment variable or a named secret."""

    env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    secret: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]*$")

    @model_validator(mode="after")
    def _exactly_one(self) -> PasswordRef:
        if (self.env is None) == (self.secret is None):
            raise fail("give exactly one of env or secret", "e.g. {env: GPUFLEET_BMC_PASSWORD}")
        return self

    def as_dict(self) -> dict[str, str]:
        return {"env": self.env} if self.env is not None else {"secret": str(self.secret)}


PasswordField = Annotated[PasswordRef, BeforeValidator(_password_ref)]


# Every BMC URL is split several times (schema, duplicates, addresses): once is enough.
_split = functools.lru_cache(maxsize=65536)(urlsplit)


def _redfish_url(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    parts = _split(value)
    # Never repeat a password back, not even in an error.
    shown = redact(repr(value)) if "@" in parts.netloc else repr(value)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise fail(
            f"{shown} carries credentials in the URL",
            "remove user:password@; set bmc.username and a password reference"
            " ({env: VAR} or {secret: name})",
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail(f"{shown} is not an http(s) URL", "https://10.0.0.11/redfish/v1/Systems/1")
    if not parts.path.startswith("/redfish/v1/Systems/") or parts.path.rstrip("/").endswith(
        "/Systems"
    ):
        raise fail(
            f"{shown} does not name a Redfish system",
            "point at the ComputerSystem: .../redfish/v1/Systems/<id>",
        )
    try:
        port = parts.port
    except ValueError:
        raise fail(f"{shown} has an invalid port", "use a port number 1-65535") from None
    if port == 0:
        raise fail(f"{shown} has port 0", "use a port number 1-65535, or none for the default")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        # Redfish over plain http would send the BMC password in clear across the oob network.
        raise fail(
            f"{shown} uses plain http to a remote BMC",
            "use https (plain http is only for a local emulator on 127.0.0.1)",
        )
    return value


def bmc_endpoint(url: str) -> tuple[str, str, int, str]:
    """What a (valid) BMC URL points at, whatever its spelling: scheme, host in lower
    case, port with the scheme's default filled in, path without trailing slashes."""
    parts = _split(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/")


class Bmc(Strict):
    url: Annotated[str, BeforeValidator(_redfish_url)] = Field(
        description="Redfish ComputerSystem URL, e.g. https://10.0.0.11/redfish/v1/Systems/1"
    )
    username: str | None = Field(default=None, min_length=1)
    password: PasswordField | None = None
    verify_tls: bool = True


class BmcDefaults(Strict):
    username: str | None = Field(default=None, min_length=1)
    password: PasswordField | None = None


class AddressPins(Strict):
    """Explicit addresses that override the index rule for one node."""

    oob: Ipv4 | None = None
    frontend: Ipv4 | None = None
    storage: Ipv4 | None = None
    fabric: list[Ipv4] | None = Field(default=None, description="one address per rail")


class Node(Strict):
    name: HostLabel = Field(description="host name (without domain), e.g. gpu001")
    role: Role = Field(description="gpu, head, lb or monitoring")
    index: int | None = Field(
        default=None,
        ge=0,
        description="slot in the role's address pool (default: digits ending the name)",
    )
    profile: str | None = None
    bmc: Bmc
    boot_mac: Mac = Field(description="MAC of the NIC the node PXE/HTTP-boots from")
    rack: RackName
    position: int = Field(ge=1, le=60, description="rack unit (U) of the node's lowest slot")
    addresses: AddressPins = AddressPins()
    fabric_leaves: list[HostLabel] | None = Field(
        default=None,
        description="leaf switch of each rail, in rail order (overrides networks.fabric.topology)",
    )


_TRAILING_DIGITS = re.compile(r"(\d+)$")


@functools.lru_cache(maxsize=65536)  # asked for each node by several checks
def derived_index(name: str) -> int | None:
    """The index a node gets from its name when `index:` is absent (`gpu007` -> 7)."""
    match = _TRAILING_DIGITS.search(name)
    return int(match.group(1)) if match else None


def node_index(node: Node) -> int | None:
    """The node's slot in its role's address pools: `index:`, else the digits ending its name."""
    return node.index if node.index is not None else derived_index(node.name)


# --- networks ---------------------------------------------------------------------------


class Pools(Strict):
    """Start offsets of each role's address pool inside a subnet.

    A pool runs from its offset up to the next pool's offset (the highest pool
    runs up to the broadcast address). Offsets below the lowest pool are free
    for the gateway and VIPs.
    """

    head: int = Field(default=10, ge=1)
    lb: int = Field(default=20, ge=1)
    monitoring: int = Field(default=30, ge=1)
    gpu: int = Field(default=100, ge=1)

    def offsets(self) -> dict[Role, int]:
        return {"head": self.head, "lb": self.lb, "monitoring": self.monitoring, "gpu": self.gpu}


def _usable_subnet(net: IPv4Network) -> IPv4Network:
    if net.prefixlen > 30:
        raise fail(f"/{net.prefixlen} is too small for a node network", "use /30 or larger")
    return net


class Network(Strict):
    cidr: Subnet
    gateway: Ipv4 | None = None
    mtu: int = Field(default=1500, ge=576, le=9216)
    vlan: int | None = Field(default=None, ge=1, le=4094)
    pools: Pools = Pools()

    @model_validator(mode="after")
    def _size(self) -> Network:
        _usable_subnet(self.cidr)
        return self


class StorageNetwork(Network):
    roles: list[Role] = Field(default=["gpu", "head"], min_length=1)


class Vip(Strict):
    name: HostLabel
    address: Ipv4
    description: str = ""


class FrontendNetwork(Network):
    vips: list[Vip] = []


class Roce(Strict):
    """Lossless RoCE v2 class of the NCCL traffic.

    The traffic class is the whole IP ToS byte (DSCP << 2 | ECN); NCCL takes it
    as NCCL_IB_TC (NCCL environment variable docs). NVIDIA's RoCE guides use
    DSCP 26 on PFC priority 3 with traffic class 106 (= 26 << 2 | ECN 0b10).
    """

    traffic_class: int = Field(ge=0, le=255)
    dscp: int = Field(ge=0, le=63)
    pfc_priority: int = Field(ge=0, le=7)
    ecn: bool = True

    @model_validator(mode="after")
    def _tos_carries_dscp(self) -> Roce:
        if self.traffic_class >> 2 != self.dscp:
            raise fail(
                f"traffic_class {self.traffic_class} carries DSCP {self.traffic_class >> 2},"
                f" not dscp {self.dscp}",
                f"set traffic_class: {(self.dscp << 2) | 2} (DSCP << 2, ECN-capable)",
            )
        return self


# Placeholders of a leaf name template: the scalable unit's name and the rail number.
_LEAF_FIELDS = re.compile(r"\{([^{}]*)\}")


class ScalableUnit(Strict):
    """Racks whose nodes share one leaf switch per rail."""

    name: HostLabel = Field(description="short name used in leaf names, e.g. su1")
    racks: list[RackName] = Field(min_length=1, description="racks of the unit, by rack name")


class Topology(Strict):
    """How the fabric NICs are cabled (rail-optimized).

    Rule: NIC r of a node plugs into the leaf switch of rail r of the scalable
    unit that holds the node's rack; the leaf is named by `leaf_name` with
    {unit} and {rail} filled in. A node's `fabric_leaves` overrides the rule.
    """

    units: list[ScalableUnit] = Field(min_length=1, description="scalable units, by rack")
    leaf_name: str = Field(
        default="{unit}-leaf{rail}", description="leaf switch name, from {unit} and {rail}"
    )
    leaves: int | None = Field(default=None, ge=1, description="leaf switches, where known")
    spines: int | None = Field(default=None, ge=1, description="spine switches, where known")
    leaf_ports: int | None = Field(
        default=None, ge=1, description="node-facing ports per leaf, where known"
    )

    @model_validator(mode="after")
    def _template(self) -> Topology:
        fields = _LEAF_FIELDS.findall(self.leaf_name)
        unknown = sorted(set(fields) - {"unit", "rail"})
        if unknown:
            raise fail(
                f"leaf_name {self.leaf_name!r} has unknown placeholder {{{unknown[0]}}}",
                "use {unit} and {rail}",
            )
        if "rail" not in fields:
            raise fail(
                f"leaf_name {self.leaf_name!r} has no {{rail}}",
                "rail-optimized: every rail has its own leaf, e.g. {unit}-leaf{rail}",
            )
        if "unit" not in fields and len(self.units) > 1:
            raise fail(
                f"leaf_name {self.leaf_name!r} has no {{unit}} but there are"
                f" {len(self.units)} units",
                "add {unit}, e.g. {unit}-leaf{rail}",
            )
        return self

    def leaf(self, unit: str, rail: int) -> str:
        return self.leaf_name.replace("{unit}", unit).replace("{rail}", str(rail))


# IB link MTUs the subnet manager can set (InfiniBand Architecture Spec, MTU enum).
IB_MTUS = (256, 512, 1024, 2048, 4096)


class Fabric(Strict):
    type: FabricType = Field(description="infiniband, roce or ethernet (lab only)")
    mtu: int = Field(ge=256, le=9216)
    rails: list[Subnet] = Field(min_length=1, description="one subnet per rail")
    pools: Pools = Pools()
    roce: Roce | None = None
    topology: Topology | None = Field(
        default=None, description="leaf switches: scalable units by rack (rail-optimized)"
    )
    subnet_manager: Literal["fabric", "head"] | None = Field(
        default=None,
        description=(
            "InfiniBand only: where the subnet manager runs. fabric (the default): the "
            "switches or UFM run it, gpufleet runs none; head: opensm on the head nodes, "
            "the first one master, the others standby"
        ),
    )

    @model_validator(mode="after")
    def _per_type(self) -> Fabric:
        if self.type == "infiniband" and self.mtu not in IB_MTUS:
            raise fail(
                f"InfiniBand MTU {self.mtu} is not one of {', '.join(map(str, IB_MTUS))}",
                "use mtu: 4096 (NDR default)",
            )
        if self.type != "infiniband" and self.mtu < 1280:
            raise fail(f"Ethernet MTU {self.mtu} is below 1280", "use mtu: 9000 for RoCE")
        if self.type == "roce" and self.roce is None:
            raise fail(
                "a RoCE fabric needs its lossless class",
                "add roce: {traffic_class: 106, dscp: 26, pfc_priority: 3}",
            )
        if self.type != "roce" and self.roce is not None:
            raise fail(f"roce settings given for a {self.type} fabric", "remove the roce block")
        if self.type != "infiniband" and self.subnet_manager is not None:
            raise fail(
                f"subnet_manager given for a {self.type} fabric: only InfiniBand has one",
                "remove subnet_manager",
            )
        for rail in self.rails:
            _usable_subnet(rail)
        return self


class Networks(Strict):
    oob: Network
    frontend: FrontendNetwork
    fabric: Fabric | None = None
    storage: StorageNetwork | None = None


# --- version lock -----------------------------------------------------------------------------


class Driver(Strict):
    branch: Version = Field(pattern=r"^\d{3}$", description='driver branch, e.g. "550"')
    version: Version = Field(pattern=r"^\d{3}\.\d+(\.\d+)?$", description='e.g. "550.127.05"')
    open_kernel_modules: bool = True


# A Debian package version: [epoch:]upstream-revision (deb-version(7)).
_PACKAGE_VERSION = r"^(\d+:)?\d[0-9A-Za-z.+~]*-[0-9A-Za-z.+~]+$"


class Versions(Strict):
    nvidia_driver: Driver
    fabric_manager: Version | None = Field(default=None, pattern=r"^\d{3}\.\d+(\.\d+)?$")
    cuda_toolkit: Version = Field(pattern=r"^\d+\.\d+(\.\d+)?$")
    dcgm: Version = Field(pattern=r"^\d+\.\d+\.\d+$")
    # A default so that specs written before the toolkit joined the lock stay valid; the model and
    # the inventory always carry the value (gpufleet_versions.nvidia_container_toolkit).
    nvidia_container_toolkit: Version = Field(
        default="1.17.3",
        pattern=r"^\d+\.\d+\.\d+$",
        description='NVIDIA Container Toolkit, e.g. "1.17.3"',
    )
    doca_ofed: Version = Field(pattern=r"^\d+\.\d+\.\d+(-\d+)?$")
    nccl: Version = Field(
        pattern=r"^2\.\d+\.\d+-\d+(\+cuda\d+\.\d+)?$", description="e.g. 2.23.4-1"
    )
    nccl_tests: Version = Field(pattern=r"^v\d+\.\d+\.\d+$", description="git tag, e.g. v2.13.11")
    slurm: SlurmVersion = Field(
        pattern=r"^\d{2}\.\d{2}\.\d+-[0-9A-Za-z.+~]+$",
        description="the Slurm packages' version as apt shows it, the same on every node,"
        " e.g. 22.05.8-4+deb12u3 (Debian 12)",
    )
    # Monitoring from the distribution's packages (roles/prometheus, roles/alertmanager,
    # roles/node_exporter). Defaults: Debian 12's, so specs written before monitoring joined
    # the lock stay valid; Ubuntu sites give their archive's versions.
    prometheus: PackageVersion = Field(
        default="2.42.0+ds-5+deb12u1",
        pattern=_PACKAGE_VERSION,
        description="the prometheus package's version as apt shows it",
    )
    alertmanager: PackageVersion = Field(
        default="0.25.0-1+b4",
        pattern=_PACKAGE_VERSION,
        description="the prometheus-alertmanager package's version as apt shows it",
    )
    node_exporter: PackageVersion = Field(
        default="1.5.0-1+b6",
        pattern=_PACKAGE_VERSION,
        description="the prometheus-node-exporter package's version as apt shows it",
    )
    # Serving (roles/model_server, roles/haproxy, roles/keepalived). vLLM is a Python package
    # (PyPI version); the load balancers' daemons are Debian's.
    vllm: Version = Field(
        default="0.6.3.post1",
        pattern=r"^\d+\.\d+\.\d+([.-]?(post|rc|dev)\d+)?$",
        description='vLLM as pip names it, e.g. "0.6.3.post1"',
    )
    haproxy: PackageVersion = Field(
        default="2.6.12-1+deb12u4",
        pattern=_PACKAGE_VERSION,
        description="the haproxy package's version as apt shows it",
    )
    keepalived: PackageVersion = Field(
        default="1:2.2.7-1+b2",
        pattern=_PACKAGE_VERSION,
        description="the keepalived package's version as apt shows it (with its epoch)",
    )


# --- Slurm ------------------------------------------------------------------------------------

# Slurm's time format (slurm.conf(5), MaxTime): minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]],
# or INFINITE.
_SLURM_TIME = r"^(INFINITE|UNLIMITED|\d+|\d+:\d{2}(:\d{2})?|\d+-\d+(:\d{2}){0,2})$"
# GRES as slurm.conf writes it: gpu:<type>:<count> or gpu:<count>.
_GRES = r"^gpu(:[a-z0-9_.-]+)?:\d+$"


class SlurmPartition(Strict):
    """One partition (slurm.conf(5), PARTITION CONFIGURATION)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$", description="partition name, e.g. train")
    nodes: Literal["ALL"] | list[HostLabel] = Field(
        default="ALL", description="ALL, or GPU node names"
    )
    default: bool = Field(default=False, description="the partition jobs go to unless they say")
    exclusive: bool = Field(default=True, description="whole nodes per job, as training wants")
    max_time: str = Field(default="INFINITE", pattern=_SLURM_TIME, description="e.g. 2-00:00:00")


class Slurm(Strict):
    """The scheduler: controllers, GPUs as GRES, partitions (roles/slurm, docs/slurm.md)."""

    controllers: list[HostLabel] | None = Field(
        default=None,
        description="slurmctld hosts, primary then backup; absent: the first two head nodes",
    )
    gres: dict[str, Annotated[str, Field(pattern=_GRES)]] = Field(
        default={},
        description="profile name -> GPU GRES its nodes offer (e.g. gpu:h100:8); absent: all GPUs",
    )
    partitions: list[SlurmPartition] = Field(
        default=[SlurmPartition(name="gpu", default=True)],
        min_length=1,
        description="partitions; default one exclusive partition gpu with every GPU node",
    )


# --- monitoring -------------------------------------------------------------------------------

# Prometheus's duration and size formats (prometheus(1): --storage.tsdb.retention.*).
_PROM_DURATION = r"^[1-9]\d*(ms|s|m|h|d|w|y)$"
_PROM_SIZE = r"^[1-9]\d*(B|KB|MB|GB|TB|PB|EB)$"


class Monitoring(Strict):
    """Prometheus on the monitoring node(s), node_exporter everywhere (docs/monitoring.md)."""

    scrape_interval: str = Field(
        default="30s", pattern=_PROM_DURATION, description="how often every target is scraped"
    )
    evaluation_interval: str = Field(
        default="30s", pattern=_PROM_DURATION, description="how often alert rules are evaluated"
    )
    retention_time: str = Field(
        default="30d", pattern=_PROM_DURATION, description="how long samples are kept, e.g. 90d"
    )
    retention_size: str | None = Field(
        default=None,
        pattern=_PROM_SIZE,
        description="the most disk the samples may take, e.g. 500GB; absent: no size limit",
    )


# --- serving ----------------------------------------------------------------------------------


class ServedModel(Strict):
    """One model served by vLLM on GPU nodes, behind the load balancers (docs/serving.md)."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$",
        description="the name clients send as `model`, e.g. llama-3.1-8b-instruct",
    )
    path: str = Field(
        pattern=r"^/\S+$",
        description="the model's directory on every node that serves it (local disk: air-gapped)",
    )
    nodes: Literal["ALL"] | list[HostLabel] = Field(
        default="ALL", description="ALL, or the GPU nodes that serve it"
    )
    tensor_parallel: int | None = Field(
        default=None, ge=1, le=16, description="GPUs per instance; absent: all of the node's GPUs"
    )
    port: int = Field(
        default=8000, ge=1024, le=65535, description="the model server's port on its nodes"
    )


class Serving(Strict):
    """OpenAI-compatible serving: vLLM on GPU nodes, HAProxy and keepalived on the lb nodes."""

    vip: HostLabel | None = Field(
        default=None, description="the frontend VIP clients use (its name); absent: the first"
    )
    port: int = Field(default=443, ge=1, le=65535, description="the VIP's TLS port")
    models: list[ServedModel] = Field(default=[], description="what is served, and where")
    preempt: bool = Field(
        default=False,
        description="the first lb node takes the VIP back when it returns (false: the VIP stays)",
    )
    affinity: Literal["least-connections", "session"] = Field(
        default="least-connections",
        description="least-connections, or session: a conversation's requests to the same"
        " backend (consistent hashing with bounded load) for KV-cache reuse",
    )
    rate_limit: int = Field(
        default=0, ge=0, description="requests per API key per 10 s at the edge (0: no limit)"
    )


# --- the whole spec ------------------------------------------------------------------


class Defaults(Strict):
    profiles: dict[Role, str] = {}
    bmc: BmcDefaults = BmcDefaults()


class ClusterSpec(Strict):
    spec_version: Literal[1] = Field(description="schema version of this file (1)")
    site: Site
    profiles: dict[Annotated[str, BeforeValidator(_hostname_label)], Profile] = {}
    defaults: Defaults = Defaults()
    nodes: list[Node] = Field(min_length=1)
    networks: Networks
    versions: Versions
    slurm: Slurm = Slurm()
    monitoring: Monitoring = Monitoring()
    serving: Serving = Serving()

    def nodes_by_role(self, role: Role) -> list[Node]:
        return [n for n in self.nodes if n.role == role]
