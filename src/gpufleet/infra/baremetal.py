"""BareMetalNode: one server, driven over its BMC's Redfish API.

Type token `gpufleet:baremetal:BareMetalNode`.

Children (all dynamic resources of gpufleet.infra.providers, parent=self):

    <node>-media      VirtualMedia      only with an installer URL: the image in the virtual CD
    <node>-bios       BiosSettings      only with BIOS attributes: staged, pending until reboot
    <node>-boot       BootOverride      boot source override (after media and BIOS)
    <node>-power      PowerState        the desired power state, polled until reached (last);
                                        it also reads the system: make, model, serial, BIOS
                                        version, CPU, memory (`system`)

Two Redfish resources per server in the usual case: every resource costs the SDK, the
engine and the provider work on every preview (docs/pulumi.md, "Where the time goes"),
so the system's inventory is read by the power resource, which reads the system anyway,
rather than by a resource of its own (states written before hold a `<node>-inventory`
resource; the next `up` deletes it, which touches no BMC).

The order matters on a real server: the installer image and the boot override
must be in place before the node is powered on, or it boots the old way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from gpufleet.infra.providers import (
    BiosSettings,
    BootOverride,
    PowerState,
    VirtualMedia,
)
from gpufleet.infra.settings import BmcOptions, NodeOptions


@dataclass(frozen=True)
class BareMetalNodeArgs:
    node: str
    url: str
    username: str | None
    password_ref: dict[str, str]  # {"env": VAR} or {"secret": KEY}: where, never the password
    verify_tls: bool
    bmc: BmcOptions
    options: NodeOptions

    def connection(self) -> dict[str, Any]:
        """The `bmc` object every Redfish resource of this node carries (providers.CONNECTION)."""
        return {
            "node": self.node,
            "url": self.url,
            "username": self.username,
            "password_ref": dict(self.password_ref),
            "verify_tls": self.verify_tls,
            "ca_bundle": self.bmc.ca_bundle,
            "timeout": self.bmc.timeout,
            "retries": self.bmc.retries,
            "backoff": self.bmc.backoff,
        }


# What `pulumi stack output servers` shows per server (BareMetalNode.server).
SERVER_KEYS = ("manufacturer", "model", "serial_number", "bios_version")


class BareMetalNode(pulumi.ComponentResource):
    # One object per server: the inventory's make, model, serial and BIOS version, the power
    # state reached and the boot target. One output, not six, per server: each output costs
    # the SDK and the engine work per resource (docs/pulumi.md, "Where the time goes").
    server: pulumi.Output[dict[str, Any]]
    system: pulumi.Output[dict[str, Any]]  # everything the power resource read
    power_state: pulumi.Output[str]
    boot_target: pulumi.Output[str]

    def __init__(
        self, name: str, args: BareMetalNodeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gpufleet:baremetal:BareMetalNode", name, None, opts)
        conn = args.connection()
        o = args.options
        adopt = o.adopt  # create reads what the BMC holds and writes nothing (providers.py)
        child = pulumi.ResourceOptions(parent=self)

        before_power: list[pulumi.Resource] = []
        self.media: VirtualMedia | None = None
        if o.installer_url:
            self.media = VirtualMedia(
                f"{name}-media", conn, image=o.installer_url, adopt=adopt, opts=child
            )
            before_power.append(self.media)
        self.bios: BiosSettings | None = None
        if o.bios_attributes:
            self.bios = BiosSettings(
                f"{name}-bios", conn, attributes=dict(o.bios_attributes), adopt=adopt, opts=child
            )
            before_power.append(self.bios)
        self.boot = BootOverride(
            f"{name}-boot",
            conn,
            target=o.boot_target,
            enabled=o.boot_enabled,
            mode=o.boot_mode,
            arm=o.reinstall,
            adopt=adopt,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(before_power)),
        )
        self.power = PowerState(
            f"{name}-power",
            conn,
            state=o.power_state,
            off_action=o.off_action,
            power_timeout=o.power_timeout,
            poll_interval=o.poll_interval,
            adopt=adopt,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*before_power, self.boot]),
        )

        self.system = self.power.system
        self.power_state = self.power.reached
        self.boot_target = self.boot.target
        self.server = pulumi.Output.all(self.system, self.power_state, self.boot_target).apply(
            _server
        )
        outputs: dict[str, Any] = {"server": self.server}
        if self.bios:
            outputs["bios_pending"] = self.bios.pending
        if self.media:
            outputs["installer_image"] = self.media.image
        self.register_outputs(outputs)


def _server(values: list[Any]) -> dict[str, Any]:
    system, power_state, boot_target = values
    system = system or {}
    return {
        **{k: system.get(k, "") for k in SERVER_KEYS},
        "power_state": power_state,
        "boot_target": boot_target,
    }
