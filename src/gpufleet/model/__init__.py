"""The resolved cluster model: one typed, frozen `Cluster` that everything after validation reads.

    from gpufleet.model import load_cluster
    cluster = load_cluster("inventories/example-ib")  # raises UserError listing every problem
    for node in cluster.nodes_by_role("gpu"):
        node.profile.gpu_count, node.frontend.address, [r.leaf for r in node.rails]

spec -> model: `gpufleet.spec` reads and validates the document (schema and
the rules it shows by itself); `build_cluster` resolves each node once
(profile object, index, BMC credentials with the defaults applied), assigns
every address (`gpufleet.model.addressing`) and leaf switch
(`gpufleet.model.fabric`), and checks what needs them. The plan, the
inventory, the Pulumi stack, the lab and verify all take the Cluster; none of
them looks at the spec's defaults again. docs/spec.md describes the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gpufleet.bulk import bulk
from gpufleet.errors import Problem, UserError
from gpufleet.model.build import build_cluster
from gpufleet.model.types import (
    Bmc,
    Cluster,
    Fabric,
    Interface,
    Node,
    RailInterface,
    Site,
    Slurm,
    SlurmGres,
    SlurmPartition,
    Subnet,
    VersionLock,
    Vip,
)
from gpufleet.spec.checks import parse_spec, spec_title
from gpufleet.spec.loader import read_spec_data, resolve_spec_path

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
    "build_cluster",
    "cluster_from_data",
    "load_cluster",
]


@bulk
def load_cluster(site: str | Path) -> Cluster:
    """Read, validate and resolve a site (a site directory, a site name or a cluster.yaml).

    Raises gpufleet.errors.UserError carrying every problem found, each with its
    path in the spec (`nodes[12].bmc.url`), what is wrong and how to fix it.
    """
    file = resolve_spec_path(site)
    return cluster_from_data(read_spec_data(file), str(file), spec_file=file)


@bulk
def cluster_from_data(data: Any, source: str = "", spec_file: Path | None = None) -> Cluster:
    """The Cluster of parsed YAML data, or UserError with every problem (schema first)."""
    spec = parse_spec(data, source)
    cluster, problems = build_cluster(spec, spec_file)
    if problems or cluster is None:
        raise UserError(_dedupe(problems), title=spec_title(source))
    return cluster


def _dedupe(problems: Iterable[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out
