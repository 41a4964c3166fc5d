"""`pulumi preview` time of stacks/cluster vs the number of servers (make bench).

For each size N: one `sushy-emulator --fake` serving N systems (all Off), a
generated site whose BMCs are those systems, a fresh stack on a file backend.
Measured, wall clock, with the pinned CLI:
  preview-empty   `pulumi preview` with no state (every resource a create)
  up              `pulumi up` with powerState Off (no power waits: the systems are Off)
  preview-same    `pulumi preview` after the up (every resource diffed, no change)
Then a least-squares fit of time against N (seconds per 100 nodes) per column, and
the growth exponent b of time = a * N^b (fitted in log-log; 1.0 is linear).

The CLI runs with PULUMI_SKIP_CHECKPOINTS=true, as docs/pulumi.md recommends for
large sites: without it the engine serializes the whole deployment after every
step, even in a preview (68% of the engine's CPU at 256 servers; a first preview
of 1,024 servers took 789 s). --checkpoints measures with them.

    .venv/bin/python bench/bench_pulumi.py [--sizes 64,256,1024] [--no-up-above 256]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from conftest import pulumi_bin_dir  # noqa: E402
from redfish_fixtures import SushyEmulator, site_node_names, write_site  # noqa: E402


def _env(backend: Path, checkpoints: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(pulumi_bin_dir()), str(REPO / ".venv" / "bin"), env["PATH"]])
    env.update(
        PULUMI_SKIP_UPDATE_CHECK="true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
        PULUMI_CONFIG_PASSPHRASE="gpufleet-bench",
        PULUMI_BACKEND_URL=f"file://{backend}",
        GPUFLEET_LAB_BMC_PASSWORD="bench-password",
        PYTHONPATH=str(REPO / "src"),
    )
    env.pop("PULUMI_ACCESS_TOKEN", None)
    if not checkpoints:
        env["PULUMI_SKIP_CHECKPOINTS"] = "true"
    return env


def _pulumi(env: dict[str, str], cwd: Path, *args: str) -> float:
    started = time.monotonic()
    proc = subprocess.run(
        ["pulumi", *args, "--non-interactive"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"pulumi {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr}")
    return elapsed


def run_size(n: int, work: Path, do_up: bool, checkpoints: bool) -> dict[str, float | None]:
    emu = SushyEmulator(work / "emu", site_node_names(n)).start(timeout=120)
    try:
        spec = write_site(work / "site", emu, site="bench")
        project = work / "project"
        shutil.copytree(
            REPO / "stacks" / "cluster",
            project,
            ignore=shutil.ignore_patterns("Pulumi.*.yaml", "__pycache__"),
        )
        backend = work / "state"
        backend.mkdir()
        env = _env(backend, checkpoints)
        _pulumi(env, project, "stack", "init", "bench")
        for key, value in (("spec", str(spec)), ("powerState", "Off"), ("bmcRetries", "1")):
            _pulumi(env, project, "config", "set", key, value)
        row: dict[str, float | None] = {"nodes": n, "resources": 2 * n + 7}
        row["preview_empty_s"] = _pulumi(env, project, "preview")
        row["up_s"] = _pulumi(env, project, "up", "--yes", "--skip-preview") if do_up else None
        row["preview_same_s"] = _pulumi(env, project, "preview") if do_up else None
        return row
    finally:
        emu.stop()


def _slope(rows: list[dict[str, float | None]], key: str) -> float | None:
    pts = [(float(r["nodes"]), float(r[key])) for r in rows if r.get(key) is not None]  # type: ignore[arg-type]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den * 100


def _exponent(rows: list[dict[str, float | None]], key: str) -> float | None:
    import math

    pts = [
        (math.log(float(r["nodes"])), math.log(float(r[key])))  # type: ignore[arg-type]
        for r in rows
        if r.get(key)
    ]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64,256", help="e.g. 64,256,1024 (1024 takes long)")
    ap.add_argument("--no-up-above", type=int, default=256, help="skip up/preview-same above N")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--checkpoints", action="store_true", help="a checkpoint after every step (default off)"
    )
    args = ap.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"gpufleet-bench-{n}-") as tmp:
            rows.append(run_size(n, Path(tmp), n <= args.no_up_above, args.checkpoints))
        if not args.json:
            r = rows[-1]
            fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
            print(
                f"nodes={n:5d} resources={r['resources']:5d}"
                f" preview-empty={fmt(r['preview_empty_s'])}s"
                f" up={fmt(r['up_s'])}s preview-same={fmt(r['preview_same_s'])}s",
                flush=True,
            )
    keys = ("preview_empty_s", "up_s", "preview_same_s")
    slopes = {k: _slope(rows, k) for k in keys}
    exponents = {k: _exponent(rows, k) for k in keys}
    if args.json:
        out = {"rows": rows, "seconds_per_100_nodes": slopes, "exponent": exponents}
        print(json.dumps(out, indent=2))
    else:
        for k in keys:
            if slopes[k] is not None:
                print(
                    f"{k}: {slopes[k]:.2f} s per 100 nodes (least squares over the sizes),"
                    f" time ~ N^{exponents[k]:.2f}"
                )


if __name__ == "__main__":
    main()
