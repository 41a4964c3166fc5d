"""stacks/cluster: load config once, build the components, export (docs/pulumi.md)."""

import os
from pathlib import Path

import pulumi

from gpufleet.infra.cluster import build_cluster, export
from gpufleet.infra.settings import load_settings

settings = load_settings(pulumi.Config(), os.environ, Path(__file__).resolve().parent)
export(build_cluster(settings))
