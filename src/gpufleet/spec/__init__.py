"""The cluster spec: `inventories/<site>/cluster.yaml`, loaded and validated once.

    from gpufleet.spec import load_spec
    spec = load_spec("inventories/example-ib")   # raises UserError listing every problem

See docs/spec.md for the format.
"""

from __future__ import annotations

from pathlib import Path

from gpufleet.spec.checks import validate_data
from gpufleet.spec.loader import read_spec_data, resolve_spec_path
from gpufleet.spec.models import ClusterSpec, Node, Profile, Role
from gpufleet.spec.profiles import BUILTIN_PROFILES

__all__ = [
    "BUILTIN_PROFILES",
    "ClusterSpec",
    "Node",
    "Profile",
    "Role",
    "load_spec",
    "validate_data",
]


def load_spec(path: str | Path) -> ClusterSpec:
    """Load and validate a site's cluster.yaml (a site directory or the file itself).

    Raises gpufleet.errors.UserError carrying every problem found, each with its
    path in the spec (`nodes[12].bmc.url`), what is wrong and how to fix it.
    """
    file = resolve_spec_path(path)
    return validate_data(read_spec_data(file), str(file))
