"""The address plan and the load-balancer VIPs, recorded as stack outputs (no remote calls).

`gpufleet:network:AddressPlan` and `gpufleet:network:LoadBalancerVips` register
the address plan of the resolved cluster (gpufleet.model) as their outputs, so the
state (and `pulumi stack output`) holds every address, and a preview shows a
changed plan as a changed output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from gpufleet.model import Cluster as Model
from gpufleet.plan import plan_dict


def plain_output(value: Any) -> pulumi.Output[Any]:
    """An Output holding plain data (no Output inside) as one value.

    `Output.from_input` unwraps dicts and lists deeply, one Output per nested value: for
    the address plan of 1,024 servers that was about 64,000 Outputs, each a task and a
    check for unknowns, on every preview. The value of an apply is taken as it is.
    """
    return pulumi.Output.from_input(None).apply(lambda _: value)


@dataclass(frozen=True)
class AddressPlanArgs:
    cluster: Model


class AddressPlan(pulumi.ComponentResource):
    site: pulumi.Output[str]
    subnets: pulumi.Output[list[dict[str, Any]]]
    nodes: pulumi.Output[dict[str, Any]]

    def __init__(
        self, name: str, args: AddressPlanArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gpufleet:network:AddressPlan", name, None, opts)
        data = plan_dict(args.cluster)
        nodes = {n.pop("name"): n for n in data["nodes"]}
        self.site = pulumi.Output.from_input(data["site"])
        self.domain = pulumi.Output.from_input(data["domain"])
        self.subnets = plain_output(data["subnets"])
        self.nodes = plain_output(nodes)
        self.register_outputs(
            {"site": self.site, "domain": self.domain, "subnets": self.subnets, "nodes": self.nodes}
        )


@dataclass(frozen=True)
class LoadBalancerVipsArgs:
    cluster: Model


class LoadBalancerVips(pulumi.ComponentResource):
    vips: pulumi.Output[list[dict[str, Any]]]

    def __init__(
        self, name: str, args: LoadBalancerVipsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("gpufleet:network:LoadBalancerVips", name, None, opts)
        holders = [n.name for n in args.cluster.nodes if n.role == "lb"]
        vips = [
            {
                "name": v.name,
                "address": str(v.address),
                "prefix": v.cidr.prefixlen,
                "hostname": v.hostname,
                "holders": holders,
            }
            for v in args.cluster.vips
        ]
        self.vips = plain_output(vips)
        self.register_outputs({"vips": self.vips})
