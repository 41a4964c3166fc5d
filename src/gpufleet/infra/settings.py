"""The stack's configuration, read in one place (stacks/cluster/__main__.py calls load_settings).

Stack config (namespace `gpufleet-cluster`, typed in stacks/cluster/Pulumi.yaml):

    spec                 path of the site's cluster.yaml (or its directory), relative
                         to the project directory; validated and resolved once
                         (gpufleet.model.load_cluster)
    inventoryDir         where hosts.yml and group_vars go (default: the spec's directory)
    bootTarget           Pxe | UefiHttp | Cd | Hdd            (default Pxe)
    bootEnabled          Once | Continuous                     (default Once)
    bootMode             UEFI | Legacy                         (default UEFI)
    powerState           On | Off                              (default On)
    powerOffAction       GracefulShutdown | ForceOff           (default GracefulShutdown)
    powerTimeout         seconds to reach the power state      (default 600)
    powerPollInterval    seconds between power polls           (default 5)
    installerUrl         OS installer image for the virtual CD (default: none)
    biosAttributes       {Name: value} staged on every node    (default: none)
    nodes                per-node overrides: {gpu001: {bootTarget: Hdd, biosAttributes: {...}}};
                         `reinstall: TOKEN` (node only): a new token arms the one-time
                         boot override again, once (bootEnabled Once)
    caBundle             PEM file of the BMCs' CA (self-signed BMCs)
    bmcTimeout           seconds per Redfish request           (default 30)
    bmcRetries           retries of transient BMC faults       (default 4)
    configure            run site.yml through ansible-runner   (default false)
    adopt                bring running servers under management: their resources are
                         imported (read), nothing is written to their BMCs (default false;
                         also per node)
    ansibleRoot          directory holding site.yml, roles/, playbooks/ (default ../..)

BMC passwords: the spec names where each comes from. `{secret: NAME}` is the
stack's secret config key NAME (`pulumi config set --secret NAME`); `{env: VAR}`
is the environment variable VAR of the `pulumi` process. Here they are only
checked to exist; the resources carry the reference and the Redfish providers
read the password when they talk to the BMC (gpufleet.infra.providers), so no
password enters the state and rotating one changes no resource.

Every problem is reported at once as a UserError line naming the config key or
node and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gpufleet.errors import Problem, UserError
from gpufleet.infra import redfish as rf
from gpufleet.model import Cluster, load_cluster

PROJECT = "gpufleet-cluster"

# The defaults of stacks/cluster/Pulumi.yaml (a unit test keeps them in step).
DEFAULTS: dict[str, Any] = {
    "bootTarget": "Pxe",
    "bootEnabled": "Once",
    "bootMode": "UEFI",
    "powerState": "On",
    "powerOffAction": "GracefulShutdown",
    "powerTimeout": 600,
    "powerPollInterval": 5,
    "installerUrl": "",
    "caBundle": "",
    "bmcTimeout": 30,
    "bmcRetries": 4,
    "configure": False,
    "adopt": False,
    "inventoryDir": "",
    "ansibleRoot": "../..",
}
NODE_KEYS = (
    "bootTarget",
    "bootEnabled",
    "bootMode",
    "powerState",
    "powerOffAction",
    "powerTimeout",
    "installerUrl",
    "biosAttributes",
    "reinstall",
    "adopt",
)
CHOICES: dict[str, tuple[str, ...]] = {
    "bootTarget": rf.BOOT_TARGETS,
    "bootEnabled": rf.BOOT_ENABLED,
    "bootMode": rf.BOOT_MODES,
    "powerState": rf.POWER_STATES,
    "powerOffAction": rf.OFF_ACTIONS,
}


class ConfigSource(Protocol):
    """What load_settings needs of pulumi.Config (tests pass a dict-backed fake)."""

    def get(self, key: str) -> str | None: ...
    def get_object(self, key: str) -> Any: ...
    def get_secret(self, key: str) -> Any: ...


@dataclass(frozen=True)
class NodeOptions:
    """What the stack asks of one server's BMC."""

    boot_target: str = "Pxe"
    boot_enabled: str = "Once"
    boot_mode: str = "UEFI"
    power_state: str = "On"
    off_action: str = "GracefulShutdown"
    power_timeout: float = 600.0
    poll_interval: float = 5.0
    bios_attributes: Mapping[str, Any] = field(default_factory=dict)
    installer_url: str | None = None
    reinstall: str = ""  # a new value arms a one-time boot override (a reinstall) once
    adopt: bool = False  # import the running server's state instead of writing to it


@dataclass(frozen=True)
class BmcOptions:
    ca_bundle: str | None = None
    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5


@dataclass(frozen=True)
class StackSettings:
    spec_file: Path
    cluster: Cluster
    inventory_dir: Path
    nodes: Mapping[str, NodeOptions]  # by node name, every node of the spec
    # node name -> where its BMC password is: {"env": VAR} or {"secret": "<project>:KEY"}
    password_refs: Mapping[str, dict[str, str]]
    bmc: BmcOptions
    configure: bool
    ansible_root: Path


def _raw(config: ConfigSource, key: str) -> Any:
    value = config.get(key)
    return DEFAULTS.get(key) if value is None else value


def _number(
    problems: list[Problem], where: str, value: Any, *, low: float, integer: bool = False
) -> float:
    try:
        number = float(value)
        if integer and number != int(number):
            raise ValueError
    except (TypeError, ValueError):
        problems.append(Problem(where, f"{value!r} is not a number", f"give a number >= {low:g}"))
        return low
    if number < low:
        problems.append(Problem(where, f"{number:g} is below {low:g}", f"give a number >= {low:g}"))
    return number


def _bool(problems: list[Problem], where: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    problems.append(Problem(where, f"{value!r} is not true or false", "set true or false"))
    return False


def _node_options(
    problems: list[Problem], where: str, values: Mapping[str, Any], base: NodeOptions
) -> NodeOptions:
    opts: dict[str, Any] = {}
    for key, choices in CHOICES.items():
        if key in values:
            value = values[key]
            if value not in choices:
                problems.append(
                    Problem(
                        f"{where}{key}", f"{value!r} is not valid", f"use {' | '.join(choices)}"
                    )
                )
    attr = {
        "bootTarget": "boot_target",
        "bootEnabled": "boot_enabled",
        "bootMode": "boot_mode",
        "powerState": "power_state",
        "powerOffAction": "off_action",
    }
    for key, name in attr.items():
        if key in values:
            opts[name] = values[key]
    if "powerTimeout" in values:
        opts["power_timeout"] = _number(
            problems, f"{where}powerTimeout", values["powerTimeout"], low=1
        )
    if "powerPollInterval" in values:
        opts["poll_interval"] = _number(
            problems, f"{where}powerPollInterval", values["powerPollInterval"], low=0.1
        )
    if "installerUrl" in values:
        url = values["installerUrl"] or None
        if url is not None and not str(url).startswith(("http://", "https://", "nfs://")):
            problems.append(
                Problem(
                    f"{where}installerUrl", f"{url!r} is not a URL", "https://.../installer.iso"
                )
            )
        opts["installer_url"] = url
    if "adopt" in values:
        opts["adopt"] = _bool(problems, f"{where}adopt", values["adopt"])
    if "reinstall" in values:
        token = values["reinstall"]
        if not isinstance(token, str | int) or isinstance(token, bool) or str(token) == "":
            problems.append(
                Problem(
                    f"{where}reinstall",
                    f"{token!r} is not a token",
                    "any new text or number, e.g. the date: a new value reinstalls once",
                )
            )
        else:
            opts["reinstall"] = str(token)
    if "biosAttributes" in values:
        bios = values["biosAttributes"] or {}
        if not isinstance(bios, dict) or any(
            not isinstance(v, str | int | float | bool) for v in bios.values()
        ):
            problems.append(
                Problem(
                    f"{where}biosAttributes",
                    "must map attribute names to plain values",
                    "e.g. {ProcTurboMode: Enabled}",
                )
            )
            bios = {}
        opts["bios_attributes"] = dict(bios)
    return NodeOptions(**{**base.__dict__, **opts})


def load_settings(
    config: ConfigSource, environ: Mapping[str, str], project_dir: Path
) -> StackSettings:
    """Read and check the stack config, load the spec once, check the BMC passwords exist."""
    problems: list[Problem] = []
    ns = f"{PROJECT}:"
    spec_ref = config.get("spec")
    if not spec_ref:
        raise UserError(
            [Problem(f"{ns}spec", "not set", "pulumi config set spec ../../inventories/<site>")]
        )
    spec_path = (project_dir / spec_ref).resolve()
    cluster = load_cluster(spec_path)  # raises UserError listing every spec problem
    spec_file = cluster.spec_file or spec_path

    top = {k: _raw(config, k) for k in (*CHOICES, "powerTimeout", "powerPollInterval")}
    top["installerUrl"] = _raw(config, "installerUrl")
    top["adopt"] = _raw(config, "adopt")
    bios = config.get_object("biosAttributes")
    if bios is not None:
        top["biosAttributes"] = bios
    base = _node_options(problems, ns, top, NodeOptions())

    overrides = config.get_object("nodes") or {}
    names = {n.name for n in cluster.nodes}
    nodes: dict[str, NodeOptions] = {}
    if not isinstance(overrides, dict):
        problems.append(Problem(f"{ns}nodes", "must be a mapping", "{gpu001: {bootTarget: Hdd}}"))
        overrides = {}
    for name, values in sorted(overrides.items()):
        where = f"{ns}nodes.{name}"
        if name not in names:
            problems.append(Problem(where, "no such node in the spec", "use a name from nodes:"))
        elif not isinstance(values, dict):
            problems.append(Problem(where, "must be a mapping", "{bootTarget: Hdd}"))
        else:
            unknown = sorted(set(values) - set(NODE_KEYS))
            if unknown:
                problems.append(
                    Problem(
                        where, f"unknown key {', '.join(unknown)}", f"use {', '.join(NODE_KEYS)}"
                    )
                )
    for node in cluster.nodes:
        values = overrides.get(node.name)
        nodes[node.name] = (
            _node_options(problems, f"{ns}nodes.{node.name}.", values, base)
            if isinstance(values, dict)
            else base
        )

    ca_bundle = str(_raw(config, "caBundle") or "") or None
    if ca_bundle:
        ca_path = (project_dir / ca_bundle).resolve()
        if not ca_path.is_file():
            problems.append(
                Problem(f"{ns}caBundle", f"{ca_path} does not exist", "give a PEM file")
            )
        ca_bundle = str(ca_path)
    bmc = BmcOptions(
        ca_bundle=ca_bundle,
        timeout=_number(problems, f"{ns}bmcTimeout", _raw(config, "bmcTimeout"), low=1),
        retries=int(
            _number(problems, f"{ns}bmcRetries", _raw(config, "bmcRetries"), low=0, integer=True)
        ),
    )
    configure = _bool(problems, f"{ns}configure", _raw(config, "configure"))
    inv = str(_raw(config, "inventoryDir") or "")
    inventory_dir = (project_dir / inv).resolve() if inv else spec_file.parent
    ansible_root = (project_dir / str(_raw(config, "ansibleRoot"))).resolve()
    if configure and not (ansible_root / "site.yml").is_file():
        problems.append(
            Problem(f"{ns}ansibleRoot", f"no site.yml in {ansible_root}", "point at the repo root")
        )

    password_refs: dict[str, dict[str, str]] = {}
    for node in cluster.nodes:
        ref = node.bmc.password
        where = f"nodes[{node.name}].bmc.password"
        if ref.secret is not None:
            if config.get_secret(ref.secret) is None:
                problems.append(
                    Problem(
                        where,
                        f"secret {ref.secret} is not set",
                        f"pulumi config set --secret {ref.secret}",
                    )
                )
            else:
                key = ref.secret if ":" in ref.secret else f"{ns}{ref.secret}"
                password_refs[node.name] = {"secret": key}
        elif ref.env is not None:
            if not environ.get(ref.env):
                problems.append(
                    Problem(
                        where, f"environment variable {ref.env} is not set", f"export {ref.env}=..."
                    )
                )
            else:
                password_refs[node.name] = {"env": ref.env}
    if problems:
        raise UserError(problems, title=f"stack config of site {cluster.site.name}:")
    return StackSettings(
        spec_file=spec_file,
        cluster=cluster,
        inventory_dir=inventory_dir,
        nodes=nodes,
        password_refs=password_refs,
        bmc=bmc,
        configure=configure,
        ansible_root=ansible_root,
    )
