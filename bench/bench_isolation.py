"""Fault isolation: rounds, simulated time and accuracy of the adaptive planner.

Three tables:

1. the adaptive planner against the naive plan, for 64, 512 and 4,096 nodes with
   1, 4 and 16 mixed faults, at the simulator's default noise (2.5%);
2. a noise sweep: the same large clusters at 2.5%, 5% and 7.5% per-test noise;
3. small and oddly shaped clusters (3-10 nodes under one leaf, one node per leaf,
   uneven leaf groups) with 1 to half the nodes faulty, at each noise level.

"found" counts faults a FAIL verdict names, "cands" faults named among the
candidates of a "cannot localize further" verdict, "missed" the rest; "blamed"
counts healthy nodes and leaf switches a FAIL verdict names (the planner is
never told the noise: it estimates it from the results).

Run by `make bench` (`.venv/bin/python bench/bench_isolation.py`); options:
`--seeds N` (default 30), `--sizes 64,512`, `--faults 1,4`, `--noise 0.025,0.05`,
`--noise-sizes 64,512`, `--tables 1,2,3`, `--json`. Figures go into
docs/isolation.md; nothing here is enforced.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gpufleet.verify.isolation import FabricLayout, rail_optimized_layout, units_layout
from gpufleet.verify.simulate import SimCluster, inject_faults, run_adaptive, run_naive

UNEVEN = ([1, 2, 4], [3, 3, 1, 2], [5, 2], [1, 1, 3, 5], [2, 5, 1], [4, 1, 1], [2, 1, 3, 1, 3])


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.2f} h" if hours < 48 else f"{hours / 24:.1f} d"


@dataclass
class Tally:
    """Accuracy and rounds over many runs."""

    runs: int = 0
    faults: int = 0
    found: int = 0
    localized: int = 0
    missed: int = 0
    nodes_blamed: int = 0
    leaves_blamed: int = 0
    runs_all_found: int = 0
    rounds: list[int] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)

    def add(self, layout: FabricLayout, n_faults: int, seed: int, noise: float) -> None:
        faults = inject_faults(layout, n_faults, seed)
        outcome = run_adaptive(SimCluster(layout, faults, seed, noise=noise))
        acc = outcome.accuracy
        self.runs += 1
        self.faults += acc.faults
        self.found += acc.identified
        self.localized += len(acc.localized)
        self.missed += len(acc.missed)
        self.nodes_blamed += len(acc.healthy_nodes_blamed)
        self.leaves_blamed += len(acc.healthy_leaves_blamed)
        self.runs_all_found += acc.all_identified
        self.rounds.append(len(outcome.rounds))
        self.wall.append(outcome.wall_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "faults": self.faults,
            "found": self.found,
            "localized": self.localized,
            "missed": self.missed,
            "healthy_nodes_blamed": self.nodes_blamed,
            "healthy_leaves_blamed": self.leaves_blamed,
            "all_found_pct": round(100.0 * self.runs_all_found / max(1, self.runs), 1),
            "rounds_mean": round(statistics.mean(self.rounds), 2) if self.rounds else 0,
            "rounds_max": max(self.rounds, default=0),
            "sim_s_mean": round(statistics.mean(self.wall), 1) if self.wall else 0,
        }


def naive_cell(n_nodes: int, n_faults: int, seeds: int) -> dict[str, Any]:
    """Table 1: adaptive and naive plan on one cluster size and fault count."""
    layout = rail_optimized_layout(n_nodes)
    adaptive = Tally()
    naive_rounds: list[int] = []
    naive_wall: list[float] = []
    naive_found = 0
    naive_blamed = 0
    for seed in range(seeds):
        adaptive.add(layout, n_faults, seed, 0.025)
        naive = run_naive(SimCluster(layout, inject_faults(layout, n_faults, seed), seed))
        naive_rounds.append(len(naive.rounds))
        naive_wall.append(naive.wall_s)
        naive_found += naive.accuracy.all_identified
        naive_blamed += len(naive.accuracy.healthy_nodes_blamed)
    return {
        "nodes": n_nodes,
        "faults_per_run": n_faults,
        "bound": round(math.log2(n_nodes) + 3, 1),
        **adaptive.to_dict(),
        "naive_rounds_mean": statistics.mean(naive_rounds),
        "naive_sim_s_mean": statistics.mean(naive_wall),
        "naive_all_found_pct": 100.0 * naive_found / seeds,
        "naive_healthy_blamed_mean": naive_blamed / seeds,
    }


def noise_cell(n_nodes: int, n_faults: int, noise: float, seeds: int) -> dict[str, Any]:
    """Table 2: one large cluster size, fault count and noise level."""
    tally = Tally()
    layout = rail_optimized_layout(n_nodes)
    for seed in range(seeds):
        tally.add(layout, n_faults, seed, noise)
    shape = f"{n_nodes} nodes"
    return {"shape": shape, "faults_per_run": n_faults, "noise": noise, **tally.to_dict()}


def small_shapes() -> list[tuple[str, list[FabricLayout]]]:
    """Table 3's shape families, each a list of layouts."""
    return [
        ("3-10 nodes, one leaf group", [rail_optimized_layout(n) for n in range(3, 11)]),
        (
            "3-10 nodes, one node per leaf",
            [rail_optimized_layout(n, nodes_per_leaf=1) for n in range(3, 11)],
        ),
        (f"uneven leaf groups ({len(UNEVEN)} layouts)", [units_layout(u) for u in UNEVEN]),
    ]  # fmt: skip


def shape_cell(
    name: str, layouts: Sequence[FabricLayout], noise: float, seeds: int
) -> dict[str, Any]:
    """Table 3: every layout of a family, 1 to half its nodes faulty, many seeds."""
    tally = Tally()
    for layout in layouts:
        for n_faults in range(1, len(layout.nodes) // 2 + 1):
            for seed in range(seeds):
                tally.add(layout, n_faults, seed, noise)
    return {"shape": name, "noise": noise, **tally.to_dict()}


def _print_table(title: str, cells: list[dict[str, Any]], first: str) -> None:
    print(title)
    header = (
        f"{first:<34} {'noise':>5} {'runs':>5} {'faults':>6} {'found':>6} {'cands':>5} "
        f"{'missed':>6} {'blamed n/l':>10} {'rounds':>10}"
    )
    print(header)
    print("-" * len(header))
    for c in cells:
        faults = f", {c['faults_per_run']} faults" if "faults_per_run" in c else ""
        label = str(c["shape"]) + faults
        print(
            f"{label[:34]:<34} {float(c['noise']):>5.3f} {c['runs']:>5} {c['faults']:>6} "
            f"{c['found']:>6} {c['localized']:>5} {c['missed']:>6} "
            f"{str(c['healthy_nodes_blamed']) + '/' + str(c['healthy_leaves_blamed']):>10} "
            f"{float(c['rounds_mean']):>6.2f}/{c['rounds_max']:<3}"
        )
    print()


def _print_naive(cells: list[dict[str, Any]]) -> None:
    header = (
        f"{'nodes':>5} {'faults':>6} {'seeds':>5} | {'rounds':>11} {'bound':>5} "
        f"{'sim time':>9} {'all found':>9} {'healthy':>7} | "
        f"{'naive rnds':>10} {'naive time':>10} {'all found':>9} {'healthy':>7}"
    )
    print("1. adaptive planner vs naive plan at 2.5% noise (rounds mean/max; healthy = healthy")
    print("   nodes blamed, adaptive: total over all seeds; naive: mean per run)")
    print(header)
    print("-" * len(header))
    for c in cells:
        print(
            f"{c['nodes']:>5} {c['faults_per_run']:>6} {c['runs']:>5} | "
            f"{c['rounds_mean']:>6.2f}/{c['rounds_max']:<4} {c['bound']:>5.1f} "
            f"{_hours(c['sim_s_mean']):>9} {c['all_found_pct']:>8.0f}% "
            f"{c['healthy_nodes_blamed']:>7} | "
            f"{c['naive_rounds_mean']:>10.0f} {_hours(c['naive_sim_s_mean']):>10} "
            f"{c['naive_all_found_pct']:>8.0f}% {c['naive_healthy_blamed_mean']:>7.1f}"
        )
    leaves = sum(int(c["healthy_leaves_blamed"]) for c in cells)
    print(f"healthy leaf switches blamed by the adaptive planner, all cells: {leaves}\n")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--sizes", default="64,512,4096")
    parser.add_argument("--faults", default="1,4,16")
    parser.add_argument("--noise", default="0.025,0.05,0.075")
    parser.add_argument("--noise-sizes", default="64,512")
    parser.add_argument("--tables", default="1,2,3")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    tables = set(_ints(args.tables))
    noises = _floats(args.noise)
    faults = _ints(args.faults)
    started = time.perf_counter()
    out: dict[str, Any] = {}
    if 1 in tables:
        sizes = _ints(args.sizes)
        out["naive"] = [naive_cell(n, k, args.seeds) for n in sizes for k in faults]
    if 2 in tables:
        out["noise"] = [
            noise_cell(n, k, noise, args.seeds)
            for n in _ints(args.noise_sizes)
            for noise in noises
            for k in faults
        ]
    if 3 in tables:
        out["small"] = [
            shape_cell(name, layouts, noise, args.seeds)
            for name, layouts in small_shapes()
            for noise in noises
        ]
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({**out, "bench_seconds": round(elapsed, 1)}, indent=2))
        return 0
    if "naive" in out:
        _print_naive(out["naive"])
    if "noise" in out:
        _print_table("2. noise sweep, large clusters", out["noise"], "shape")
    if "small" in out:
        _print_table("3. small and oddly shaped clusters, 1..N/2 faults", out["small"], "shape")
    print(f"bench wall time: {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
