"""Site baselines: threshold packs generated from a first healthy run.

`gpufleet verify baseline LOG... --out site-thresholds.yaml` measures each run
at its largest size and writes packs with floor = measured x (1 - margin) and
warning level = measured x (1 - margin / 2). The file is a site thresholds
document (see `gpufleet.verify.thresholds`): pass it with `--thresholds`.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any

from gpufleet.errors import Problem, UserError
from gpufleet.verify.judge import RunJudgement, fmt_hosts, fmt_size
from gpufleet.verify.thresholds import ThresholdSet, parse_profile


def _eligible(j: RunJudgement) -> bool:
    m = j.measure
    return (
        m is not None
        and m.busbw_gbps is not None
        and m.busbw_gbps > 0
        and j.run.collective is not None
        and j.kind != "unknown"
        and all(r.wrong == 0 for r in j.run.rows)
    )


def make_baseline(
    judgements: list[RunJudgement],
    thresholds: ThresholdSet,
    profile: str,
    margin: float = 0.10,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A site thresholds document with one pack per (collective, kind) measured."""
    if not 0 < margin < 1:
        raise UserError([Problem("--margin", f"{margin} is not between 0 and 1", "e.g. 0.1")])
    platform, profile_fabric = parse_profile(profile)
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d")
    groups: dict[tuple[str, str, str], list[RunJudgement]] = {}
    for j in judgements:
        if _eligible(j):
            fabric = profile_fabric if j.fabric == "socket" else j.fabric
            groups.setdefault((j.run.collective or "", j.kind, fabric), []).append(j)
    if not groups:
        raise UserError(
            [
                Problem(
                    "baseline",
                    "no run with a size table and non-zero bandwidth to take a baseline from",
                    "pass logs of a healthy run",
                )
            ]
        )
    packs: list[dict[str, Any]] = []
    for (collective, kind, fabric), members in sorted(groups.items()):
        size = min(j.measure.size_bytes for j in members if j.measure)
        values = []
        for j in members:
            row = next((r for r in j.run.rows if r.size_bytes == size), None)
            if row is not None and row.busbw_gbps:
                values.append(row.busbw_gbps)
        measured = statistics.median(values)
        runs = ", ".join(f"{j.source} ({fmt_hosts(j.run.hosts)})" for j in members[:4])
        if len(members) > 4:
            runs += f" and {len(members) - 4} more"
        basis = (
            f"site baseline {stamp}: {collective} busbw median {measured:.2f} GB/s at "
            f"{fmt_size(size)} over {len(values)} run(s): {runs}"
        )
        pack: dict[str, Any] = {
            "name": f"site-nccl-{collective.replace('_', '')}-{kind}-{fabric}",
            "test": "nccl",
            "description": f"{collective} {kind} baseline measured on this site",
            "collectives": [collective],
            "kind": kind,
            "platforms": [platform],
            "fabrics": [fabric],
            "busbw": {
                "measure_at_bytes": size,
                "expected": {"value": round(measured, 2), "source": basis},
                "warn_below": {
                    "value": round(measured * (1 - margin / 2), 2),
                    "source": f"{basis}; less {margin / 2:.1%}",
                },
                "fail_below": {
                    "value": round(measured * (1 - margin), 2),
                    "source": f"{basis}; less {margin:.1%}",
                },
            },
        }
        ranks = {j.run.n_ranks for j in members}
        if len(ranks) == 1 and None not in ranks:
            pack["ranks"] = ranks.pop()
        pack["expected_max_bytes"] = max(r.size_bytes for j in members for r in j.run.rows)
        builtin = thresholds.nccl_pack(collective, kind, fabric, platform)
        if builtin is not None:
            for key in ("nic", "relative", "nvls"):
                section = getattr(builtin, key)
                if section is not None:
                    pack[key] = section.model_dump()
        packs.append(pack)
    return {"generated_by": "gpufleet verify baseline", "packs": packs}
