"""The verdict every check produces: pass, warn or fail, with reasons in words."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return {"pass": 0, "warn": 1, "fail": 2}[self.value]


def worst(statuses: list[Status]) -> Status:
    """The most severe status of a list (pass for an empty list)."""
    return max(statuses, key=lambda s: s.rank, default=Status.PASS)


@dataclass
class Verdict:
    """The judgement of one subject (a run, a node, a GPU, a link).

    `subject` names what was judged ("all_reduce_perf on node-01,node-02",
    "node-07 GPU 3"); `kind` says what sort of check it was ("nccl", "burnin",
    "isolation"); `reasons` are sentences a person can act on; `metrics` holds
    the numbers behind them (GB/s, TFLOPS, ...) for reports and exporters.
    """

    subject: str
    kind: str
    status: Status
    reasons: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data
