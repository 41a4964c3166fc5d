"""The whole stack from its settings: what stacks/cluster/__main__.py instantiates."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from gpufleet.infra.baremetal import BareMetalNode, BareMetalNodeArgs
from gpufleet.infra.configure import Configure, ConfigureArgs, content_digest
from gpufleet.infra.inventory import Inventory, InventoryArgs
from gpufleet.infra.network import (
    AddressPlan,
    AddressPlanArgs,
    LoadBalancerVips,
    LoadBalancerVipsArgs,
)
from gpufleet.infra.settings import StackSettings
from gpufleet.inventory import render_inventory


@dataclass(frozen=True)
class Cluster:
    plan: AddressPlan
    vips: LoadBalancerVips
    nodes: dict[str, BareMetalNode]
    inventory: Inventory
    configure: Configure | None


def build_cluster(settings: StackSettings) -> Cluster:
    model = settings.cluster
    site = model.site.name
    address_plan = AddressPlan(f"{site}-plan", AddressPlanArgs(model))
    vips = LoadBalancerVips(f"{site}-vips", LoadBalancerVipsArgs(model))
    nodes: dict[str, BareMetalNode] = {}
    for node in model.nodes:
        nodes[node.name] = BareMetalNode(
            node.name,
            BareMetalNodeArgs(
                node=node.name,
                url=node.bmc.url,
                username=node.bmc.username,
                password_ref=settings.password_refs[node.name],
                verify_tls=node.bmc.verify_tls,
                bmc=settings.bmc,
                options=settings.nodes[node.name],
            ),
        )
    files = render_inventory(model)
    inventory = Inventory(
        f"{site}-inventory",
        InventoryArgs(settings.inventory_dir, files, after=list(nodes.values())),
    )
    configure = None
    if settings.configure:
        configure = Configure(
            f"{site}-configure",
            ConfigureArgs(
                ansible_root=settings.ansible_root,
                inventory_dir=settings.inventory_dir,
                triggers={
                    "inventory": inventory.digests,
                    "content": content_digest(settings.ansible_root),
                },
                after=[inventory],
            ),
        )
    return Cluster(address_plan, vips, nodes, inventory, configure)


def export(cluster: Cluster) -> None:
    pulumi.export("site", cluster.plan.site)
    pulumi.export("subnets", cluster.plan.subnets)
    pulumi.export("addresses", cluster.plan.nodes)
    pulumi.export("vips", cluster.vips.vips)
    pulumi.export("hosts_file", cluster.inventory.hosts_file)
    pulumi.export("servers", {name: n.server for name, n in cluster.nodes.items()})
