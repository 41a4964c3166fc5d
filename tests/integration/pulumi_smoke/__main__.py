"""Smoke program: one dynamic resource that writes a file, so every engine step is real."""

import pulumi
from smoke_provider import SmokeFile

config = pulumi.Config()
target = SmokeFile(
    "marker",
    path=config.require("path"),
    content=config.get("content") or "hello from gpufleet",
)
pulumi.export("path", target.path)
pulumi.export("digest", target.digest)
