"""Slurm configuration from hardware facts and the fabric: pure functions.

The slurm role renders its configuration through these (roles/slurm/filter_plugins/slurm.py
exposes them as Jinja filters); the unit tests feed them outputs recorded on real servers.

- `parse_slurmd_c`: what `slurmd -C` says the node has (sockets, cores, threads, memory);
  the node line is written from it, so slurmctld never finds a node with less than its line
  claims (Slurm drains such a node as "Low socket*core*thread count" or "Low RealMemory").
- `node_line`: one NodeName line of slurm.conf.
- `gres_gpu_lines`: gres.conf, one explicit line per GPU (no AutoDetect=nvml: Debian's
  Slurm is built without NVML) with the device file from the GPU's minor number and Cores=
  from the CPUs the GPU is closest to (`nvidia-smi topo -m`), as Slurm's logical core indices.
- `topology_conf`: topology.conf (topology/tree) from the leaf switches of each node's rails.
- `default_controllers`, `gres_type`, `parse_gres`: the spec's `slurm:` defaults, resolved
  once by gpufleet.model (controllers, GRES per profile).
- `partition_problems`, `controller_problems`, `gres_problems`: the bad inputs Slurm itself
  would only report at run time (a partition naming a node that does not exist, a GRES count
  above the node's GPUs, two controllers with the same name), as Problem lines.

Slurm's own references: slurm.conf(5), gres.conf(5) ("Cores": logical core indices, not
the OS's CPU numbers), topology.conf(5).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gpufleet.errors import Problem

# `slurmd -C`: "NodeName=x CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2
# ThreadsPerCore=1 RealMemory=24105" then "UpTime=...".
_SLURMD_C_KEYS = (
    "CPUs",
    "Boards",
    "SocketsPerBoard",
    "CoresPerSocket",
    "ThreadsPerCore",
    "RealMemory",
)


def parse_slurmd_c(text: str) -> dict[str, int]:
    """The hardware `slurmd -C` reports: CPUs, Boards, SocketsPerBoard, CoresPerSocket,
    ThreadsPerCore, RealMemory (MiB). ValueError when a field is missing."""
    line = next((x for x in text.splitlines() if x.startswith("NodeName=")), "")
    fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
    missing = [k for k in _SLURMD_C_KEYS if not fields.get(k, "").isdigit()]
    if missing:
        raise ValueError(f"slurmd -C output lacks {', '.join(missing)}: {line or text[:80]!r}")
    return {k: int(fields[k]) for k in _SLURMD_C_KEYS}


def node_line(
    name: str,
    hardware: Mapping[str, int],
    *,
    address: str = "",
    memory_headroom_percent: int = 0,
    gres: str = "",
    features: Sequence[str] = (),
) -> str:
    """NodeName line of slurm.conf from `parse_slurmd_c`'s dict.

    RealMemory is lowered by memory_headroom_percent: the kernel's view of total memory
    moves by a few MiB between boots and firmware versions, and a node whose memory falls
    below its line is drained.
    """
    if not 0 <= memory_headroom_percent < 100:
        raise ValueError(f"memory_headroom_percent {memory_headroom_percent} is not 0-99")
    memory = hardware["RealMemory"] * (100 - memory_headroom_percent) // 100
    parts = [f"NodeName={name}"]
    if address:
        parts.append(f"NodeAddr={address}")
    parts += [
        f"CPUs={hardware['CPUs']}",
        f"Boards={hardware['Boards']}",
        f"SocketsPerBoard={hardware['SocketsPerBoard']}",
        f"CoresPerSocket={hardware['CoresPerSocket']}",
        f"ThreadsPerCore={hardware['ThreadsPerCore']}",
        f"RealMemory={memory}",
    ]
    if gres:
        parts.append(f"Gres={gres}")
    if features:
        parts.append(f"Feature={','.join(features)}")
    parts.append("State=UNKNOWN")
    return " ".join(parts)


def parse_cpu_list(text: str) -> set[int]:
    """'0-3,8,10-11' -> {0, 1, 2, 3, 8, 10, 11} (Linux cpulist format)."""
    out: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if not re.fullmatch(r"\d+(-\d+)?", part):
            raise ValueError(f"{text!r} is not a CPU list")
        first, _, last = part.partition("-")
        out.update(range(int(first), int(last or first) + 1))
    return out


def ranges(numbers: Iterable[int]) -> str:
    """{0, 1, 2, 3, 8} -> '0-3,8' (the form Slurm and Linux use)."""
    values = sorted(set(numbers))
    spans: list[str] = []
    start = prev = None
    for n in values:
        if start is None:
            start = prev = n
        elif prev is not None and n == prev + 1:
            prev = n
        else:
            spans.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = n
    if start is not None:
        spans.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ",".join(spans)


def parse_lscpu(text: str) -> list[tuple[int, int, int]]:
    """`lscpu -p=CPU,CORE,SOCKET` -> (cpu, core, socket) per online CPU ('#' lines skipped)."""
    rows: list[tuple[int, int, int]] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(",")
        if len(fields) < 3 or not all(f.strip().isdigit() for f in fields[:3]):
            raise ValueError(f"unexpected lscpu -p line {line!r} (want CPU,CORE,SOCKET)")
        rows.append((int(fields[0]), int(fields[1]), int(fields[2])))
    return rows


def logical_cores(cpus: set[int], lscpu: Sequence[tuple[int, int, int]]) -> list[int]:
    """Slurm's logical core indices of the cores that hold any of `cpus`.

    Slurm numbers cores 0..N-1, socket by socket (gres.conf(5), "Cores"); the OS's CPU
    numbers count hyperthreads separately and are not core indices. CPUs the node does
    not have (an affinity recorded on a bigger machine) are ignored.
    """
    cores = sorted({(socket, core) for _, core, socket in lscpu})
    index = {key: i for i, key in enumerate(cores)}
    return sorted({index[(socket, core)] for cpu, core, socket in lscpu if cpu in cpus})


def gres_gpu_lines(
    node: str,
    gpu_type: str,
    gpus: Sequence[Mapping[str, Any]],
    topology: Mapping[str, Any] | None,
    lscpu_text: str,
) -> list[str]:
    """gres.conf lines of one node: one per GPU, File= from its minor number, Cores= from
    its CPU affinity.

    `gpus` and `topology` are the `nvidia_gpu` fact of library/nvidia_gpu_facts.py
    (`gpus[i].minor_number`, `topology.gpus["GPU<i>"].cpu_affinity`); GPU i of `-q` is
    GPU<i> of `topo -m` (both in nvidia-smi's index order). A GPU without a readable
    affinity gets no Cores= (any core may use it), never a guessed one.
    """
    rows = parse_lscpu(lscpu_text)
    topo_gpus = (topology or {}).get("gpus") or {}
    lines = []
    for i, gpu in enumerate(gpus):
        minor = gpu.get("minor_number")
        if minor is None:
            raise ValueError(f"{node}: GPU {i} has no minor number in nvidia-smi -q")
        line = f"NodeName={node} Name=gpu Type={gpu_type} File=/dev/nvidia{minor}"
        affinity = (topo_gpus.get(f"GPU{i}") or {}).get("cpu_affinity")
        if affinity and affinity != "N/A":
            cores = logical_cores(parse_cpu_list(affinity), rows)
            if cores:
                line += f" Cores={ranges(cores)}"
        lines.append(line)
    return lines


def topology_conf(node_leaves: Mapping[str, Sequence[str]]) -> str:
    """topology.conf (topology/tree) from each node's leaf switches in rail order.

    On a rail-optimized fabric a node is cabled to one leaf per rail, and every node of a
    scalable unit to the same set of leaves: for job placement those leaves act as one
    switch. Nodes are grouped by their set of leaves; a group is named after its rail-0
    leaf. With more than one group a top switch `spine` joins them (the spine layer).
    Nodes without leaves are left out (Slurm then places them without topology).
    Empty text when no node has leaves.
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    for node in sorted(node_leaves):
        leaves = tuple(node_leaves[node])
        if leaves:
            groups.setdefault(leaves, []).append(node)
    if not groups:
        return ""
    lines = []
    names: list[str] = []
    for leaves, nodes in sorted(groups.items(), key=lambda kv: kv[0]):
        name = leaves[0]
        if name in names:
            raise ValueError(f"two leaf sets start with {name}: {', '.join(leaves)}")
        names.append(name)
        lines.append(f"# rails 0-{len(leaves) - 1}: {' '.join(leaves)}")
        lines.append(f"SwitchName={name} Nodes={','.join(nodes)}")
    if len(names) > 1:
        lines.append(f"SwitchName=spine Switches={','.join(names)}")
    return "\n".join(lines) + "\n"


def gres_count(gres: str, name: str = "gpu") -> int:
    """'gpu:h100:8' -> 8; 'gpu:8' -> 8; 'gpu' -> 1 (Slurm's default count); other GRES: 0."""
    total = 0
    for item in gres.split(","):
        parts = item.strip().split(":")
        if not parts or parts[0] != name:
            continue
        total += int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    return total


def default_controllers(heads: Iterable[str]) -> tuple[str, ...]:
    """The controllers when the spec names none: the first two head nodes in name order
    (primary, backup); () without head nodes."""
    return tuple(sorted(heads)[:2])


def gres_type(gpu_model: str) -> str | None:
    """The GRES type of a GPU model: its first token, lowercased ('H100-SXM5-80GB' -> 'h100');
    None when nothing usable is left (the GRES is then untyped)."""
    token = re.split(r"[-\s]", gpu_model.strip(), maxsplit=1)[0].lower()
    token = re.sub(r"[^a-z0-9_.]", "", token)
    return token or None


def parse_gres(gres: str) -> tuple[str | None, int]:
    """'gpu:h100:8' -> ('h100', 8); 'gpu:8' -> (None, 8) (the spec's form, one GPU GRES)."""
    parts = gres.strip().split(":")
    if parts[0] != "gpu" or len(parts) not in (2, 3) or not parts[-1].isdigit():
        raise ValueError(f"{gres!r} is not gpu:<type>:<count> or gpu:<count>")
    return (parts[1] if len(parts) == 3 else None), int(parts[-1])


def partition_problems(
    partitions: Sequence[Mapping[str, Any]], nodes: Iterable[str], base: str = "partitions"
) -> list[Problem]:
    """Partitions naming nodes that do not exist, and partition names used twice."""
    known = set(nodes)
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, part in enumerate(partitions):
        name = str(part.get("name", ""))
        if name in seen:
            problems.append(
                Problem(f"{base}[{i}].name", f"partition {name} is defined twice", "rename one")
            )
        seen.add(name)
        members = part.get("nodes", "ALL")
        if members == "ALL":
            continue
        for node in members:
            if node not in known:
                hint = "name a compute node of the cluster" + (
                    f" ({', '.join(sorted(known)[:5])}{', ...' if len(known) > 5 else ''})"
                    if known
                    else ""
                )
                problems.append(
                    Problem(
                        f"{base}[{i}].nodes",
                        f"partition {name} names node {node}, which does not exist",
                        hint,
                    )
                )
    return problems


def controller_problems(controllers: Sequence[str], base: str = "controllers") -> list[Problem]:
    """One or two slurmctld hosts (primary, backup), never the same one twice."""
    problems: list[Problem] = []
    if not controllers:
        problems.append(Problem(base, "no Slurm controller", "add a head node"))
    if len(controllers) > 2:
        problems.append(
            Problem(
                base,
                f"{len(controllers)} controllers: gpufleet runs a primary and at most one backup",
                "keep two head nodes as controllers",
            )
        )
    seen: set[str] = set()
    for i, name in enumerate(controllers):
        if name in seen:
            problems.append(
                Problem(
                    f"{base}[{i}]",
                    f"controller {name} is listed twice: a backup must be another host",
                    "name two different head nodes",
                )
            )
        seen.add(name)
    return problems


def gres_problems(owner: str, gres: str, gpu_count: int, base: str = "gres") -> list[Problem]:
    """A GRES may not claim more GPUs than the profile of its nodes has, nor fewer: the slurm
    role offers every GPU a node has (one gres.conf line per device) and checks the node has
    the count (`owner` names the node or profile in the message)."""
    claimed = gres_count(gres)
    if claimed > gpu_count:
        return [
            Problem(
                base,
                f"{owner}: Gres {gres} claims {claimed} GPUs, the profile has {gpu_count}",
                f"claim at most {gpu_count} or fix the profile",
            )
        ]
    if claimed < gpu_count:
        return [
            Problem(
                base,
                f"{owner}: Gres {gres} offers {claimed} of the profile's {gpu_count} GPUs",
                f"offer all {gpu_count} (Slurm would refuse a gres.conf with more devices than "
                "the node line) or fix the profile",
            )
        ]
    return []


# --- Jinja filters (roles/slurm/filter_plugins/slurm.py) ----------------------------------


def _gres_gpus_filter(
    nvidia_gpu: Mapping[str, Any], node: str, gpu_type: str, lscpu_text: str
) -> list[str]:
    """The `nvidia_gpu` fact of library/nvidia_gpu_facts.py -> gres.conf lines."""
    return gres_gpu_lines(
        node, gpu_type, nvidia_gpu.get("gpus") or [], nvidia_gpu.get("topology"), lscpu_text
    )


class FilterModule:
    """Ansible's entry point for filter plugins."""

    def filters(self) -> dict[str, Any]:
        return {
            "gpufleet_slurmd_hardware": parse_slurmd_c,
            "gpufleet_slurm_node_line": node_line,
            "gpufleet_slurm_gres_gpus": _gres_gpus_filter,
            "gpufleet_slurm_topology": topology_conf,
        }
