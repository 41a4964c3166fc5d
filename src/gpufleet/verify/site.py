"""What verify takes from a site: the GPU nodes' hardware profile and the fabric layout.

`gpufleet verify nccl --site inventories/<site>` judges with the profile of the
site's GPU nodes; `gpufleet verify simulate --site ...` plans on the site's GPU
node names, rails and leaf switches (from `networks.fabric.topology`). Both
read the resolved cluster (`gpufleet.model.load_cluster`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from gpufleet.errors import Problem, UserError
from gpufleet.model import Cluster, load_cluster
from gpufleet.verify.isolation import FabricLayout

DEFAULT_PROFILE = "hgx-h100-8gpu-ib"


def gpu_profile(cluster: Cluster) -> str:
    """The profile name of the site's GPU nodes (they must share one)."""
    names = sorted({n.profile_name for n in cluster.nodes_by_role("gpu")})
    site = cluster.site.name
    if not names:
        raise UserError([Problem("--site", f"site {site} has no gpu nodes", "use --profile")])
    if len(names) > 1:
        raise UserError(
            [
                Problem(
                    "--site",
                    f"the gpu nodes of site {site} use {len(names)} profiles ({', '.join(names)})",
                    "judge each group with --profile",
                )
            ]
        )
    profile = cluster.nodes_by_role("gpu")[0].profile
    if profile.gpu_count == 0:
        raise UserError(
            [
                Problem(
                    "--site",
                    f"the gpu nodes of site {site} have no GPUs (profile {names[0]}:"
                    f" {profile.description or 'no gpu_count'}), nothing to judge logs against",
                    "judge logs from real GPU nodes with --profile",
                )
            ]
        )
    return names[0]


def judge_profile(profile: str | None, site: Path | None) -> str:
    """The profile to judge with: --profile, or the site's GPU profile; never both."""
    if site is not None and profile is not None:
        raise UserError(
            [
                Problem(
                    "--profile",
                    "given together with --site, which names the profile itself",
                    "drop --profile (or --site, for logs from elsewhere)",
                )
            ]
        )
    if site is not None:
        return gpu_profile(load_cluster(site))
    return profile if profile is not None else DEFAULT_PROFILE


def fabric_layout(cluster: Cluster) -> FabricLayout:
    """The isolation planner's view of the site: GPU nodes, rails, the leaf of each NIC."""
    nodes = [n for n in cluster.nodes_by_role("gpu") if n.rails]
    site = cluster.site.name
    if not nodes:
        raise UserError([Problem("--site", f"site {site} has no gpu nodes on a fabric", "")])
    rails = {len(n.rails) for n in nodes}
    if len(rails) != 1:
        raise UserError([Problem("--site", f"gpu nodes of site {site} differ in rail count", "")])
    leaf_of: dict[tuple[str, int], str] = {}
    for node in nodes:
        for rail in node.rails:
            if rail.leaf is None:
                raise UserError(
                    [
                        Problem(
                            "--site",
                            f"site {site} does not say which leaf switch each NIC is cabled to",
                            "add networks.fabric.topology to its cluster.yaml (docs/spec.md)",
                        )
                    ]
                )
            leaf_of[(node.name, rail.rail)] = rail.leaf
    return FabricLayout(nodes=tuple(n.name for n in nodes), rails=rails.pop(), leaf_of=leaf_of)


def site_layout(site: Path) -> tuple[str, FabricLayout]:
    """(site name, layout) of a site directory or cluster.yaml."""
    cluster = load_cluster(site)
    return cluster.site.name, fabric_layout(cluster)


def nodes_per_leaf(layout: FabricLayout) -> int:
    """The most nodes any leaf switch has cabled to it."""
    return max(Counter(layout.leaf_of.values()).values())
