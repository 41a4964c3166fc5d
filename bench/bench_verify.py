"""Benchmark: the verification phase on the running lab, healthy and with each of its faults.

Run: .venv/bin/python bench/bench_verify.py [--site inventories/lab] [--json FILE]

Needs a running lab (`make lab`). Runs `gpufleet verify run` five times: healthy; with
`--nccl-degraded` on gpu2; `--rail-down 1` on gpu3; `--slow-gpu` on gpu1 (each cleared after
its run); healthy again. Prints, per run, the wall time (Ansible included), the controller's
time, the rounds, the jobs, the verdict line and whether exactly the faulty node was drained.
About four minutes. Figures are for the notes; nothing here is enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = [
    ("healthy", None, ()),
    ("degraded NCCL", "gpu2", ("--nccl-degraded",)),
    ("rail 1 down", "gpu3", ("--rail-down", "1")),
    ("slow GPU", "gpu1", ("--slow-gpu",)),
    ("healthy again", None, ()),
]


def gpufleet(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("gpufleet"))
    return subprocess.run([exe, *args], capture_output=True, text=True, check=False, cwd=REPO)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", default="inventories/lab")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    os.chdir(REPO)
    latest = Path(args.site) / "reports" / "verify" / "latest" / "summary.json"
    rows = []
    for name, node, fault in RUNS:
        if node:
            set_fault = gpufleet("lab", "fault", node, *fault, "--site", args.site)
            if set_fault.returncode != 0:
                print(set_fault.stdout + set_fault.stderr, file=sys.stderr)
                return 1
        start = time.monotonic()
        run = gpufleet("verify", "run", "--site", args.site)
        wall = time.monotonic() - start
        summary = json.loads(latest.read_text())
        if node:
            gpufleet("lab", "fault", node, "--clear", "--site", args.site)
        exact = list(summary["drained"]) == ([node] if node else [])
        rows.append({"run": name, "exit": run.returncode, "wall_s": round(wall, 1),
                     "controller_s": summary["seconds"], "rounds": len(summary["rounds"]),
                     "jobs": summary["jobs"], "exactly_the_faulty_node_drained": exact,
                     "line": summary["line"]})  # fmt: skip
        print(f"{name:14} exit {run.returncode}  {wall:5.1f} s (controller {summary['seconds']} s,"
              f" {len(summary['rounds'])} rounds, {summary['jobs']} jobs)  exact={exact}\n"
              f"               {summary['line']}")  # fmt: skip
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
