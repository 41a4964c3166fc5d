"""The address plan: every subnet, VIP and interface of a resolved cluster, for people and machines.

    from gpufleet.model import load_cluster
    from gpufleet.plan import plan_dict, plan_tables
    cluster = load_cluster("inventories/example-ib")
    plan_dict(cluster)     # JSON-ready: `gpufleet plan --json`, the Pulumi stack's outputs
    plan_tables(cluster)   # one text table per network: `gpufleet plan`

The addresses themselves are assigned once, by `gpufleet.model` (rule in
`gpufleet.model.addressing`); this module only presents them. Nodes are sorted
by name, so nothing here depends on the order of `nodes:` in cluster.yaml.
"""

from __future__ import annotations

from typing import Any

from gpufleet.bulk import bulk
from gpufleet.model import Cluster
from gpufleet.model.addressing import ip_text

__all__ = ["plan_dict", "plan_tables"]


@bulk
def plan_dict(cluster: Cluster, network: str | None = None) -> dict[str, Any]:
    """The plan as plain data; with `network`, only that subnet and those interfaces."""
    return {
        "site": cluster.site.name,
        "domain": cluster.site.domain,
        "subnets": [
            {
                "name": s.name,
                "cidr": str(s.cidr),
                "gateway": str(s.gateway) if s.gateway else None,
                "mtu": s.mtu,
                "pools": {r: [str(a), str(b)] for r, a, b in s.pools},
            }
            for s in cluster.subnets
            if network is None or s.name == network
        ],
        "vips": [
            {"name": v.name, "address": str(v.address), "hostname": v.hostname}
            for v in cluster.vips
        ],
        "nodes": [
            {
                "name": n.name,
                "role": n.role,
                "index": n.index,
                "profile": n.profile_name,
                "interfaces": {
                    i.network: {
                        "address": ip_text(i.address),
                        "prefix": i.cidr.prefixlen,
                        "hostname": i.hostname,
                        "pinned": i.pinned,
                    }
                    for i in n.interfaces
                    if network is None or i.network == network
                },
            }
            for n in cluster.nodes
        ],
    }


_COLUMNS = ("address", "hostname", "node", "role", "source")
Row = tuple[str, str, str, str, str]


@bulk
def plan_tables(cluster: Cluster, network: str | None = None) -> str:
    """One aligned text table per network (all of them, or `network`).

    Plain text, built in one pass: a site of 4,096 GPU nodes has 45,000
    interfaces, and a table widget that measures every cell twice took 44 s
    for them (issue 21, item 14); this takes well under a second.
    """
    rows_by_net: dict[str, list[tuple[int, str, str, str, str]]] = {
        s.name: [] for s in cluster.subnets
    }
    for node in cluster.nodes:
        name, role, by_index = node.name, node.role, f"index {node.index}"
        for iface in node.interfaces:
            bucket = rows_by_net.get(iface.network)
            if bucket is not None:
                source = "pin" if iface.pinned else by_index
                bucket.append((int(iface.address), iface.hostname, name, role, source))
    out: list[str] = []
    for subnet in cluster.subnets:
        if network is not None and subnet.name != network:
            continue
        # Sorted by the address as a number; its text made once, after the sort.
        rows: list[Row] = [
            (ip_text(ip), host, node, role, source)
            for ip, host, node, role, source in sorted(rows_by_net[subnet.name])
        ]
        if subnet.name == "frontend":
            vips = [(str(v.address), v.hostname, "-", "vip", "spec") for v in cluster.vips]
            rows = vips + rows
        gw = f", gateway {subnet.gateway}" if subnet.gateway else ""
        out.append(f"{subnet.name} {subnet.cidr} (MTU {subnet.mtu}{gw}): {len(rows)} addresses\n")
        columns = list(zip(*rows, strict=True)) or [()] * len(_COLUMNS)
        widths = [
            max(len(title), *map(len, col)) for title, col in zip(_COLUMNS, columns, strict=True)
        ]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}\n"
        out.append(fmt.format(*_COLUMNS))
        out.append(fmt.format(*("-" * w for w in widths)))
        out.extend(fmt.format(*row) for row in rows)
        out.append("\n")
    return "".join(out)
