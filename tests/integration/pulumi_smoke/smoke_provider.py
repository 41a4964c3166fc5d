"""A dynamic provider that manages one file: create, diff, update, delete for real."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult


class SmokeFileProvider(ResourceProvider):
    def _write(self, props: dict[str, Any]) -> dict[str, Any]:
        with open(props["path"], "w", encoding="utf-8") as handle:
            handle.write(props["content"])
        digest = hashlib.sha256(props["content"].encode()).hexdigest()
        return {**props, "digest": digest}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=props["path"], outs=self._write(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in ("path", "content") if olds.get(k) != news.get(k)]
        return DiffResult(
            changes=bool(changed),
            replaces=["path"] if "path" in changed else [],
            delete_before_replace=True,
        )

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._write(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if os.path.exists(props["path"]):
            os.remove(props["path"])


class SmokeFile(Resource):
    path: pulumi.Output[str]
    digest: pulumi.Output[str]

    def __init__(
        self, name: str, path: str, content: str, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(
            SmokeFileProvider(), name, {"path": path, "content": content, "digest": None}, opts
        )
