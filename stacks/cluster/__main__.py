"""stacks/cluster: load config once, build the components, export (docs/pulumi.md)."""

import os
from pathlib import Path

import pulumi

from gpufleet.infra import sdk_tuning
from gpufleet.infra.cluster import build_cluster, export
from gpufleet.infra.settings import load_settings

# Two SDK costs that grow with the number of servers (gpufleet/infra/sdk_tuning.py).
sdk_tuning.apply()
settings = load_settings(pulumi.Config(), os.environ, Path(__file__).resolve().parent)
export(build_cluster(settings))
