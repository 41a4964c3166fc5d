"""Leaf switches: which leaf each fabric NIC is cabled to.

The rule (documented in docs/spec.md, "Fabric topology"):

1. A node's `fabric_leaves` names the leaf of each of its rails, in rail order.
2. Otherwise, with `networks.fabric.topology`: the node's rack belongs to one
   scalable unit, and NIC r plugs into that unit's leaf of rail r, named by
   `leaf_name` (default `{unit}-leaf{rail}`): rail-optimized, as in NVIDIA's
   DGX SuperPOD reference architecture, where every rail of a scalable unit has
   its own leaf switch.
3. A site that says nothing about leaves (no topology, no `fabric_leaves`)
   gets no leaf names; one that describes some nodes must describe all.

Like addresses, a leaf depends only on the node's own rack and overrides, so
adding a node never moves another.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

from gpufleet.errors import Problem
from gpufleet.spec.models import ClusterSpec, Topology

# A leaf name becomes a DNS label (switch management names): RFC 1123, lower case.
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

Leaves = tuple[str | None, ...]


def assign_leaves(
    spec: ClusterSpec, rails_of: Mapping[int, int]
) -> tuple[dict[int, Leaves], list[Problem]]:
    """Leaf of each rail of each fabric node, by node position; and what is wrong.

    `rails_of` maps the position of every node with resolved networks to its
    number of rails (0 when it is not on the fabric).
    """
    problems: list[Problem] = []
    out: dict[int, Leaves] = {}
    fabric = spec.networks.fabric
    if fabric is None:
        return out, problems  # fabric_leaves without a fabric: gpufleet.spec.checks
    topo = fabric.topology
    unit_of: dict[str, str] = {}
    if topo is not None:
        for su in topo.units:
            for rack in su.racks:
                unit_of.setdefault(rack, su.name)
    described = topo is not None or any(
        n.fabric_leaves is not None and rails_of.get(i, 0) for i, n in enumerate(spec.nodes)
    )
    names: dict[tuple[str, int], str] = {}  # (unit, rail) -> leaf, rendered once
    bad_names: set[str] = set()
    undescribed: list[int] = []
    for i, node in enumerate(spec.nodes):
        rails = rails_of.get(i)
        if rails is None:
            continue  # unresolved node: already reported
        base = f"nodes[{i}]"
        if rails == 0:
            if node.fabric_leaves is not None:
                problems.append(
                    Problem(
                        f"{base}.fabric_leaves",
                        f"{node.name} has no fabric NICs",
                        "remove fabric_leaves",
                    )
                )
            continue
        if node.fabric_leaves is not None:
            if len(node.fabric_leaves) != rails:
                problems.append(
                    Problem(
                        f"{base}.fabric_leaves",
                        f"{len(node.fabric_leaves)} leaf switches for {rails} rails",
                        "name one leaf per rail, in rail order",
                    )
                )
                continue
            out[i] = tuple(node.fabric_leaves)
        elif topo is not None:
            unit = unit_of.get(node.rack)
            if unit is None:
                problems.append(
                    Problem(
                        f"{base}.rack",
                        f"rack {node.rack} of {node.name} is in no unit of"
                        " networks.fabric.topology.units",
                        f"add {node.rack} to a unit's racks or set fabric_leaves for the node",
                    )
                )
                continue
            leaves: list[str | None] = []
            for rail in range(rails):
                name = names.get((unit, rail))
                if name is None:
                    name = names[(unit, rail)] = topo.leaf(unit, rail)
                    if not _LABEL.match(name):
                        bad_names.add(name)
                leaves.append(name)
            out[i] = tuple(leaves)
        elif described:
            undescribed.append(i)
        else:
            out[i] = (None,) * rails
    for name in sorted(bad_names)[:1]:
        problems.append(
            Problem(
                "networks.fabric.topology.leaf_name",
                f"gives leaf name {name!r}, not a valid host name",
                "lower-case letters, digits and '-', e.g. {unit}-leaf{rail}",
            )
        )
    if undescribed:
        first = spec.nodes[undescribed[0]].name
        problems.append(
            Problem(
                "networks.fabric.topology",
                f"missing: some nodes name their leaf switches (fabric_leaves), but"
                f" {len(undescribed)} fabric nodes have none (first: {first})",
                "add networks.fabric.topology, or fabric_leaves to every fabric node",
            )
        )
    if topo is not None and not problems:
        problems += _check_counts(topo, out)
    return out, problems


def _check_counts(topo: Topology, leaves: Mapping[int, Leaves]) -> list[Problem]:
    """The leaf count and the ports per leaf, where the spec states them."""
    problems: list[Problem] = []
    per_leaf = Counter(leaf for node_leaves in leaves.values() for leaf in node_leaves if leaf)
    if topo.leaves is not None and len(per_leaf) != topo.leaves:
        problems.append(
            Problem(
                "networks.fabric.topology.leaves",
                f"{topo.leaves} leaf switches stated, but the nodes are cabled to {len(per_leaf)}",
                "correct leaves: or the units and fabric_leaves",
            )
        )
    if topo.leaf_ports is not None:
        over = sorted(
            (leaf for leaf, count in per_leaf.items() if count > topo.leaf_ports),
            key=lambda leaf: (-per_leaf[leaf], leaf),
        )
        if over:
            more = f" (and {len(over) - 1} more leaves)" if len(over) > 1 else ""
            problems.append(
                Problem(
                    "networks.fabric.topology.leaf_ports",
                    f"leaf {over[0]} has {per_leaf[over[0]]} nodes cabled to it, more than its"
                    f" {topo.leaf_ports} ports{more}",
                    "split the scalable unit or correct leaf_ports",
                )
            )
    return problems
