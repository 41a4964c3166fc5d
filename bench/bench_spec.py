"""Benchmark: the spec of a 4,096-GPU-node site, in process and through the CLI.

Run: .venv/bin/python bench/bench_spec.py [--gpus 4096] [--repeat 3]

1. In process: validate (read, parse, check, resolve the model), plan, inventory;
   CPU time (process_time) and wall time, best of --repeat. Target: the three
   together within 2 s of CPU time.
2. The CLI as a person runs it, interpreter start included (wall time, best
   of --repeat, after one untimed run that leaves the compiled modules behind as
   an installed package has them): validate, plan (tables), plan --json, inventory. Target: each
   within 2 s on the project's 2-core machine; the plan table no slower than
   the JSON.
3. Hostile input through the CLI: an alias bomb and a file nested too deep are
   refused (exit 2); the time to refuse them.

The spec is generated (HGX H100 IB nodes, 8 rails, rail-optimized leaves, 4 nodes
per rack, 32 nodes per scalable unit) and written to a temporary cluster.yaml,
so reading and parsing are timed too. Figures go into notes; nothing is enforced.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gpufleet.inventory import render_inventory
from gpufleet.model import load_cluster
from gpufleet.plan import plan_dict, plan_tables

SUPPORT = {"head": 4, "lb": 2, "monitoring": 2}
NODES_PER_RACK = 4
RACKS_PER_UNIT = 8


def generate(gpus: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    serial = 0

    def add(name: str, role: str, rack: str, position: int) -> None:
        nonlocal serial
        serial += 1
        nodes.append(
            {
                "name": name,
                "role": role,
                "bmc": {"url": f"https://{name}-ipmi.bench.example.net/redfish/v1/Systems/1"},
                "boot_mac": f"02:00:{serial >> 16 & 0xFF:02x}:{serial >> 8 & 0xFF:02x}:"
                f"{serial & 0xFF:02x}:01",
                "rack": rack,
                "position": position,
            }
        )

    for role, count in SUPPORT.items():
        for i in range(1, count + 1):
            add(f"{role[:4]}{i:02d}", role, "mgmt", len(nodes) + 1)
    for i in range(gpus):
        rack = f"r{i // NODES_PER_RACK:04d}"
        add(f"gpu{i + 1:05d}", "gpu", rack, i % NODES_PER_RACK * 9 + 1)
    racks = sorted({n["rack"] for n in nodes if n["role"] == "gpu"})
    units = [
        {"name": f"su{u + 1:03d}", "racks": racks[u : u + RACKS_PER_UNIT]}
        for u in range(0, len(racks), RACKS_PER_UNIT)
    ]
    return {
        "spec_version": 1,
        "site": {
            "name": "bench",
            "domain": "bench.example.net",
            "ntp_servers": ["ntp.example.net"],
            "admin_cidrs": ["192.0.2.0/24"],
            "ssh": {"user": "ops", "public_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench x"]},
        },
        "defaults": {
            "profiles": {
                "gpu": "hgx-h100-8gpu-ib",
                "head": "cpu-server",
                "lb": "cpu-server",
                "monitoring": "cpu-server",
            },
            "bmc": {"username": "admin", "password": {"env": "GPUFLEET_BMC_PASSWORD"}},
        },
        "networks": {
            "oob": {"cidr": "10.0.0.0/19", "gateway": "10.0.0.1"},
            "frontend": {
                "cidr": "10.1.0.0/19",
                "gateway": "10.1.0.1",
                "vips": [{"name": "inference", "address": "10.1.0.5"}],
            },
            "storage": {"cidr": "10.2.0.0/19"},
            "fabric": {
                "type": "infiniband",
                "mtu": 4096,
                "rails": [f"10.{100 + r}.0.0/19" for r in range(8)],
                "topology": {"units": units, "spines": 64},
            },
        },
        "versions": {
            "nvidia_driver": {"branch": "550", "version": "550.127.05"},
            "fabric_manager": "550.127.05",
            "cuda_toolkit": "12.4.1",
            "dcgm": "3.3.9",
            "doca_ofed": "2.9.1",
            "nccl": "2.21.5-1+cuda12.4",
            "nccl_tests": "v2.13.11",
            "slurm": "22.05.8-4+deb12u3",
        },
        "nodes": nodes,
    }


def _best(repeat: int, fn: Callable[[], object]) -> tuple[float, float]:
    """Best (CPU, wall) seconds of `repeat` runs."""
    cpu, wall = float("inf"), float("inf")
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu = min(cpu, time.process_time() - c0)
        wall = min(wall, time.perf_counter() - w0)
    return cpu, wall


def _cli(repeat: int, *args: str) -> tuple[float, float, int]:
    """Best wall and CPU (user + system) seconds of the installed `gpufleet` command, a new
    interpreter each run; the CPU time depends less on what else the machine runs."""
    exe = shutil.which("gpufleet") or str(Path(sys.executable).with_name("gpufleet"))
    # As on a user's machine, Python keeps the compiled modules (.pyc): a
    # PYTHONDONTWRITEBYTECODE set in this shell would time compiling the package
    # on every run. One untimed run first writes them.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([exe, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False, env=env)  # fmt: skip
    wall, cpu, rc = float("inf"), float("inf"), -1
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        run = subprocess.run([exe, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             check=False, env=env)  # fmt: skip
        wall = min(wall, time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = min(cpu, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        rc = run.returncode
    return wall, cpu, rc


def _bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for k in range(1, levels + 1):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--gpus", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "bench"
        site.mkdir()
        path = site / "cluster.yaml"
        path.write_text(yaml.dump(generate(args.gpus), Dumper=yaml.CSafeDumper, sort_keys=False))
        cluster = load_cluster(path)
        files = render_inventory(cluster)
        gpu = len(cluster.nodes_by_role("gpu"))
        leaves = len(cluster.fabric.leaves) if cluster.fabric else 0
        print(
            f"site: {gpu} GPU nodes ({len(cluster.nodes)} nodes), {leaves} leaves,"
            f" spec {path.stat().st_size:,} bytes, inventory {sum(map(len, files.values())):,}"
            f" bytes; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        stages: dict[str, Callable[[], object]] = {
            "validate": lambda: load_cluster(path),
            "plan": lambda: plan_dict(cluster),
            "plan table": lambda: plan_tables(cluster),
            "inventory": lambda: render_inventory(cluster),
        }
        times = {name: _best(args.repeat, fn) for name, fn in stages.items()}
        for name, (cpu, wall) in times.items():
            print(f"{name:>12}: {cpu:.3f} s CPU, {wall:.3f} s wall (best of {args.repeat})")
        total = sum(times[k][0] for k in ("validate", "plan", "inventory"))
        verdict = "met" if total < 2 else "NOT met"
        print(f"validate + plan + inventory: {total:.3f} s CPU (target < 2 s: {verdict})")

        print("CLI, interpreter start included (wall, best of", args.repeat, "runs):")
        for cmd in (["validate"], ["plan"], ["plan", "--json"], ["inventory"]):
            wall, cpu, rc = _cli(args.repeat, *cmd, str(site))
            verdict = "met" if wall < 2 else "NOT met"
            print(
                f"  gpufleet {' '.join(cmd):<14} {wall:.2f} s wall, {cpu:.2f} s CPU"
                f" (exit {rc}; target < 2 s wall: {verdict})"
            )

        spec = path.read_text()
        bomb = "anchors:\n" + "".join(f"  {line}\n" for line in _bomb().splitlines())
        hostile = {
            "alias bomb (9^10 values)": bomb + spec.replace("name: bench", "name: *a9", 1),
            "nested 40 deep": "a: " + "[" * 40 + "]" * 40 + "\n",
        }
        print("hostile input refused (CLI):")
        for name, text in hostile.items():
            path.write_text(text)
            wall, cpu, rc = _cli(1, "validate", str(site))
            print(f"  {name:<26} {wall:.2f} s wall, {cpu:.2f} s CPU (exit {rc})")


if __name__ == "__main__":
    main()
