"""BareMetalNode: one server, driven over its BMC's Redfish API.

Type token `gpufleet:baremetal:BareMetalNode`.

Children (all dynamic resources of gpufleet.infra.providers, parent=self):

    <node>-inventory  SystemInventory   read: manufacturer, model, serial, BIOS, CPU, memory, power
    <node>-media      VirtualMedia      only with an installer URL: the image in the virtual CD
    <node>-bios       BiosSettings      only with BIOS attributes: staged, pending until reboot
    <node>-boot       BootOverride      boot source override (after media and BIOS)
    <node>-power      PowerState        the desired power state, polled until reached (last)

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
    SystemInventory,
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


class BareMetalNode(pulumi.ComponentResource):
    manufacturer: pulumi.Output[str]
    model: pulumi.Output[str]
    serial_number: pulumi.Output[str]
    bios_version: pulumi.Output[str]
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

        self.inventory = SystemInventory(f"{name}-inventory", conn, adopt=adopt, opts=child)
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

        self.manufacturer = self.inventory.manufacturer
        self.model = self.inventory.model
        self.serial_number = self.inventory.serial_number
        self.bios_version = self.inventory.bios_version
        self.power_state = self.power.reached
        self.boot_target = self.boot.target
        self.register_outputs(
            {
                "manufacturer": self.manufacturer,
                "model": self.model,
                "serial_number": self.serial_number,
                "bios_version": self.bios_version,
                "cpu_count": self.inventory.cpu_count,
                "memory_gib": self.inventory.memory_gib,
                "power_state": self.power_state,
                "boot_target": self.boot_target,
                "bios_pending": self.bios.pending if self.bios else {},
                "installer_image": self.media.image if self.media else "",
            }
        )
