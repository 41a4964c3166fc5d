"""Benchmark: `site.yml` on the running lab, Mitogen against the plain strategy.

Run: .venv/bin/python bench/bench_converge.py [--site inventories/lab] [--runs 1]
                                              [--fresh STRATEGY] [--make-lab N]
                                              [--profile] [--json FILE]

Needs a running lab (`make lab`). For each strategy (the default, `mitogen_linear`
from ansible.cfg, and Ansible's plain `linear`) it runs the idempotent `site.yml`
--runs times, side by side in one run of this script, and prints the wall time,
the host-tasks run (ok + skipped, from the play recap), milliseconds per host-task
and the changed count (which must be 0 on a converged lab). `--profile` adds the ten
slowest tasks of each strategy (ansible.posix.profile_tasks). `--fresh STRATEGY`
(repeatable) first recreates the lab's nodes (`gpufleet lab down`, `gpufleet lab up`:
new containers, the apt cache warm on the host) and times the first converge on them
and the second (which must change nothing) with that strategy. `--make-lab N` times the
whole `make lab` on the running lab N times (bootstrap check, BMCs, `pulumi up`, SSH
checks, site.yml: nothing to change).

Figures are for the notes; nothing here is enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gpufleet.lab.core import open_lab

REPO = Path(__file__).resolve().parent.parent
RECAP = re.compile(
    r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)"
)
# profile_tasks: "role : task name ------------------------------------ 12.34s"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PROFILE = re.compile(r"^(?P<task>.+?) -{3,} (?P<seconds>\d+\.\d+)s$")


@dataclass
class Run:
    strategy: str
    what: str
    seconds: float
    hosts: int = 0
    host_tasks: int = 0
    changed: int = 0
    failed: int = 0
    top_tasks: list[tuple[str, float]] = field(default_factory=list)

    @property
    def ms_per_host_task(self) -> float:
        return 1000 * self.seconds / self.host_tasks if self.host_tasks else float("nan")


def _gpufleet(*args: str) -> None:
    subprocess.run([str(REPO / ".venv/bin/gpufleet"), *args], cwd=REPO, check=True)


def _recap(run: Run, stdout: str) -> None:
    for line in ANSI.sub("", stdout).splitlines():
        if m := RECAP.match(line):
            run.hosts += 1
            run.host_tasks += int(m["ok"]) + int(m["skipped"])
            run.changed += int(m["changed"])
            run.failed += int(m["failed"]) + int(m["unreachable"])


def make_lab(site: Path) -> Run:
    """`make lab` on the running lab: bootstrap check, BMCs, `pulumi up`, SSH, site.yml."""
    if site != (REPO / "inventories/lab").resolve():
        raise SystemExit("--make-lab times `make lab`, which runs the lab of inventories/lab")
    t0 = time.monotonic()
    proc = subprocess.run(["make", "lab"], cwd=REPO, capture_output=True, text=True, check=False)
    run = Run(strategy="default", what="make lab, running lab", seconds=0.0)
    run.seconds = round(time.monotonic() - t0, 1)
    _recap(run, proc.stdout)
    if proc.returncode != 0 or run.hosts == 0:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-3000:])
        raise SystemExit(f"make lab failed (exit {proc.returncode})")
    return run


def converge(site: Path, strategy: str, what: str, profile: bool) -> Run:
    lab, _ = open_lab(site)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           **lab.ansible_env()}  # fmt: skip
    if strategy != "default":
        env["ANSIBLE_STRATEGY"] = strategy
    callbacks = ["ansible.builtin.timer"] + (["ansible.posix.profile_tasks"] if profile else [])
    env["ANSIBLE_CALLBACKS_ENABLED"] = ",".join(callbacks)
    env["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = "10"
    cmd = [str(REPO / ".venv/bin/ansible-playbook"), "-i", str(site / "hosts.yml"), "site.yml"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - t0
    run = Run(strategy=strategy, what=what, seconds=round(seconds, 1))
    _recap(run, proc.stdout)
    for line in proc.stdout.splitlines():
        if profile and (p := PROFILE.match(line.strip())):
            run.top_tasks.append((p["task"].strip(), float(p["seconds"])))
    if proc.returncode != 0 or run.hosts == 0:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-3000:])
        raise SystemExit(f"site.yml with strategy {strategy} failed (exit {proc.returncode})")
    run.top_tasks = run.top_tasks[:10]
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--site", type=Path, default=Path("inventories/lab"))
    ap.add_argument("--runs", type=int, default=1, help="idempotent runs per strategy")
    ap.add_argument(
        "--fresh",
        action="append",
        default=[],
        choices=["default", "linear"],
        help="first converge on new nodes with this strategy (repeatable)",
    )
    ap.add_argument(
        "--make-lab", type=int, default=0, metavar="N",
        help="also time `make lab` N times on the running lab (nothing to change)",
    )  # fmt: skip
    ap.add_argument("--profile", action="store_true", help="the ten slowest tasks per strategy")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()
    os.chdir(REPO)  # the lab's state (and its fact cache) lives under the checkout's .cache
    site = (REPO / args.site).resolve()
    if not (site / "group_vars/all/lab-connection.yml").exists():
        raise SystemExit(f"no running lab for {args.site}: run `make lab` first")

    runs: list[Run] = []
    for strategy in args.fresh:
        _gpufleet("lab", "down", "--site", str(site))
        _gpufleet("lab", "up", "--site", str(site))
        runs.append(converge(site, strategy, "first converge, fresh nodes", args.profile))
        runs.append(converge(site, strategy, "second converge", args.profile))
    for _ in range(args.make_lab):
        runs.append(make_lab(site))
    for _ in range(args.runs):
        for strategy in ("default", "linear"):
            runs.append(converge(site, strategy, "idempotent", args.profile))

    print(f"\nsite.yml on {args.site} ({os.cpu_count()} cores)")
    print(f"{'strategy':<16} {'run':<28} {'wall':>8} {'hosts':>5} {'host-tasks':>10}"
          f" {'ms/host-task':>12} {'changed':>7}")  # fmt: skip
    for r in runs:
        name = "mitogen_linear" if r.strategy == "default" else r.strategy
        print(f"{name:<16} {r.what:<28} {r.seconds:>7.1f}s {r.hosts:>5} {r.host_tasks:>10}"
              f" {r.ms_per_host_task:>12.0f} {r.changed:>7}")  # fmt: skip
    for r in runs:
        if r.top_tasks:
            print(f"\nslowest tasks, {r.strategy}, {r.what}:")
            for task, secs in r.top_tasks:
                print(f"  {secs:7.2f}s  {task}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
