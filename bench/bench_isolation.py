"""Fault isolation: rounds, simulated time and accuracy of the adaptive planner
against the naive plan, for 64, 512 and 4,096 nodes with 1, 4 and 16 mixed faults.

Run by `make bench` (`.venv/bin/python bench/bench_isolation.py`); options:
`--seeds N` (default 30 per cell), `--sizes 64,512`, `--faults 1,4`, `--json`.
Figures go into docs/isolation.md; nothing here is enforced.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

from gpufleet.verify.isolation import rail_optimized_layout
from gpufleet.verify.simulate import SimCluster, inject_faults, run_adaptive, run_naive


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.2f} h" if hours < 48 else f"{hours / 24:.1f} d"


def run_cell(n_nodes: int, n_faults: int, seeds: int) -> dict[str, float | int]:
    layout = rail_optimized_layout(n_nodes)
    rounds: list[int] = []
    wall: list[float] = []
    found = 0
    blamed = 0
    leaves_blamed = 0
    naive_rounds: list[int] = []
    naive_wall: list[float] = []
    naive_found = 0
    naive_blamed = 0
    for seed in range(seeds):
        faults = inject_faults(layout, n_faults, seed)
        adaptive = run_adaptive(SimCluster(layout, faults, seed))
        rounds.append(len(adaptive.rounds))
        wall.append(adaptive.wall_s)
        found += adaptive.accuracy.all_identified
        blamed += len(adaptive.accuracy.healthy_nodes_blamed)
        leaves_blamed += len(adaptive.accuracy.healthy_leaves_blamed)
        naive = run_naive(SimCluster(layout, faults, seed))
        naive_rounds.append(len(naive.rounds))
        naive_wall.append(naive.wall_s)
        naive_found += naive.accuracy.all_identified
        naive_blamed += len(naive.accuracy.healthy_nodes_blamed)
    return {
        "nodes": n_nodes,
        "faults": n_faults,
        "seeds": seeds,
        "bound": math.log2(n_nodes) + 3,
        "rounds_mean": statistics.mean(rounds),
        "rounds_max": max(rounds),
        "sim_s_mean": statistics.mean(wall),
        "all_found_pct": 100.0 * found / seeds,
        "healthy_nodes_blamed": blamed,
        "healthy_leaves_blamed": leaves_blamed,
        "naive_rounds_mean": statistics.mean(naive_rounds),
        "naive_sim_s_mean": statistics.mean(naive_wall),
        "naive_all_found_pct": 100.0 * naive_found / seeds,
        "naive_healthy_blamed_mean": naive_blamed / seeds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--sizes", default="64,512,4096")
    parser.add_argument("--faults", default="1,4,16")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    fault_counts = [int(x) for x in args.faults.split(",")]
    started = time.perf_counter()
    cells = [run_cell(n, k, args.seeds) for n in sizes for k in fault_counts]
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({"cells": cells, "bench_seconds": round(elapsed, 1)}, indent=2))
        return 0
    header = (
        f"{'nodes':>5} {'faults':>6} {'seeds':>5} | {'rounds':>11} {'bound':>5} "
        f"{'sim time':>9} {'all found':>9} {'healthy':>7} | "
        f"{'naive rnds':>10} {'naive time':>10} {'all found':>9} {'healthy':>7}"
    )
    print("adaptive planner vs naive plan (rounds mean/max; healthy = healthy nodes blamed,")
    print("adaptive: total over all seeds; naive: mean per run); simulated time per run")
    print(header)
    print("-" * len(header))
    for c in cells:
        print(
            f"{c['nodes']:>5} {c['faults']:>6} {c['seeds']:>5} | "
            f"{c['rounds_mean']:>6.2f}/{c['rounds_max']:<4} {c['bound']:>5.1f} "
            f"{_hours(c['sim_s_mean']):>9} {c['all_found_pct']:>8.0f}% "
            f"{c['healthy_nodes_blamed']:>7} | "
            f"{c['naive_rounds_mean']:>10.0f} {_hours(c['naive_sim_s_mean']):>10} "
            f"{c['naive_all_found_pct']:>8.0f}% {c['naive_healthy_blamed_mean']:>7.1f}"
        )
    leaves = sum(int(c["healthy_leaves_blamed"]) for c in cells)
    print(f"healthy leaf switches blamed by the adaptive planner, all cells: {leaves}")
    print(f"bench wall time: {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
