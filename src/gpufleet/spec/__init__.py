"""The cluster spec: `inventories/<site>/cluster.yaml` as written, its schema and its rules.

    from gpufleet.spec import parse_spec, spec_problems
    spec = parse_spec(data)        # the schema: UserError listing every field problem
    problems = spec_problems(spec) # the cross-field rules the document breaks by itself

Most callers want the resolved cluster instead: `gpufleet.model.load_cluster`
runs both and the rules that need resolved nodes, and reports every problem
together. See docs/spec.md for the format.
"""

from __future__ import annotations

from gpufleet.spec.checks import parse_spec, spec_problems
from gpufleet.spec.loader import read_spec_data, resolve_spec_path
from gpufleet.spec.models import ClusterSpec, Profile, Role
from gpufleet.spec.profiles import BUILTIN_PROFILES, known_profiles, profile_name

__all__ = [
    "BUILTIN_PROFILES",
    "ClusterSpec",
    "Profile",
    "Role",
    "known_profiles",
    "parse_spec",
    "profile_name",
    "read_spec_data",
    "resolve_spec_path",
    "spec_problems",
]
