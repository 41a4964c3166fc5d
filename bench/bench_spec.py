"""Benchmark: validate + plan + inventory for a generated 4,096-node spec.

Run: .venv/bin/python bench/bench_spec.py [--nodes 4096] [--repeat 3]
Prints the time of each stage (best of --repeat) and the total; the target is
under 2 s for 4,096 nodes. The spec is generated (HGX H100 IB nodes, 8 rails)
and written to a temporary cluster.yaml so parsing is timed too.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from gpufleet.inventory import render_inventory
from gpufleet.model import load_cluster
from gpufleet.plan import plan_dict

SUPPORT = {"head": 4, "lb": 2, "monitoring": 2}


def generate(total: int) -> dict[str, Any]:
    gpus = total - sum(SUPPORT.values())
    nodes: list[dict[str, Any]] = []
    serial = 0

    def add(name: str, role: str) -> None:
        nonlocal serial
        serial += 1
        nodes.append(
            {
                "name": name,
                "role": role,
                "bmc": {"url": f"https://{name}-bmc.bench.example.net/redfish/v1/Systems/1"},
                "boot_mac": f"02:00:{serial >> 16 & 0xFF:02x}:{serial >> 8 & 0xFF:02x}:"
                f"{serial & 0xFF:02x}:01",
                "rack": f"r{serial // 4:04d}",
                "position": serial % 4 * 9 + 1,
            }
        )

    for role, count in SUPPORT.items():
        for i in range(1, count + 1):
            add(f"{role[:4]}{i:02d}", role)
    for i in range(1, gpus + 1):
        add(f"gpu{i:05d}", "gpu")
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
            "slurm": "24.05.4",
        },
        "nodes": nodes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cluster.yaml"
        path.write_text(yaml.dump(generate(args.nodes), Dumper=yaml.CSafeDumper, sort_keys=False))
        best: dict[str, float] = {}
        sizes = (0, 0)
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            cluster = load_cluster(path)  # parse, validate, resolve, addresses, leaves
            t1 = time.perf_counter()
            plan_dict(cluster)
            t2 = time.perf_counter()
            files = render_inventory(cluster)
            t3 = time.perf_counter()
            run = {"validate": t1 - t0, "plan": t2 - t1, "inventory": t3 - t2, "total": t3 - t0}
            best = {k: min(v, best.get(k, v)) for k, v in run.items()}
            sizes = (len(cluster.nodes), sum(len(t) for t in files.values()))
    print(f"nodes: {sizes[0]}  interfaces per GPU node: 11  inventory bytes: {sizes[1]}")
    for stage in ("validate", "plan", "inventory", "total"):
        print(f"{stage:>10}: {best[stage]:.3f} s (best of {args.repeat})")
    print(f"target: total < 2 s -> {'met' if best['total'] < 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
