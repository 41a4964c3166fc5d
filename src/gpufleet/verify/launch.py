"""How the verification phase builds nccl-tests and launches its jobs through Slurm: pure
functions of the version lock and the site, so a unit test can read every command line.

- `build_command`: nccl-tests at the locked tag, built with MPI (`MPI=1`) against the
  locked CUDA toolkit and NCCL. Without `MPI=1` a job of 16 ranks runs 16 separate
  one-rank tests and prints busbw 0 (the judge says so).
- `local_lines`: the node-local tests of one node: the burn-in (one task with every GPU) and
  the single-node collectives (one rank per GPU, NVLink only).
- `fabric_lines`: one job per rail of a fabric test (pair, group, all): one rank per GPU on
  every node, NCCL kept to that rail's device, so a slow or dead NIC shows as its rail's
  busbw and is not averaged away by the other rails.

Every job runs with `srun --mpi=pmix` (Slurm starts the ranks and wires MPI up through
PMIx; no SSH between nodes, no hostfile) in the reservation the phase holds, with
`--exclusive` so nothing else shares the GPUs and NICs during a measurement.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# The single-node collectives the phase runs on every node (NVLink/NVSwitch only).
LOCAL_COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "alltoall")
# The collective of fabric tests: pairwise alltoall loads every GPU's path to every other
# node; per rail it is the rail's own bandwidth.
FABRIC_COLLECTIVE = "alltoall"
# nccl-tests arguments: 1 MiB .. 16 GiB, doubling; one GPU per rank; check the data (-c 1).
SIZES = ("-b", "1M", "-e", "16G", "-f", "2", "-g", "1", "-c", "1")
MAX_BYTES = 16 * 1024**3
OPENMPI_HOME = "/usr/lib/x86_64-linux-gnu/openmpi"  # Debian/Ubuntu openmpi-bin, libopenmpi-dev
RESERVATION = "gpufleet-verify"
JOB_NAME = "gpufleet-verify"  # -burnin, -nccl: what sacct lists


@dataclass(frozen=True)
class Launch:
    """What the jobs need to know about the site: where things are, how big nodes are."""

    nccl_tests_bin: str  # folder with all_reduce_perf, ...
    python: str  # interpreter with torch (and nvidia-ml-py) on the GPU nodes
    pythonpath: str = ""  # where gpufleet's package lies on the nodes
    gpus_per_node: int = 8
    ranks_per_node: int = 0  # nccl-tests ranks per node; 0: one per GPU (the lab: 1, see docs)
    fabric: str = "infiniband"  # infiniband, roce or ethernet (plain sockets)
    rail_devices: Sequence[str] = ()  # NCCL device of each rail: mlx5_0 (RDMA) or eth1
    partition: str = ""
    reservation: str = RESERVATION
    burnin_seconds: float = 600.0
    burnin_args: Sequence[str] = ()
    time_limit_min: int = 30
    wait_s: int = 600  # srun --immediate: a job that cannot start within this fails, named
    srun_args: Sequence[str] = ()  # further srun arguments for every job (a site's or the lab's)
    env: Mapping[str, str] = field(default_factory=dict)


def build_command(
    nccl_tests_version: str,
    cuda_version: str,
    source_dir: str,
    build_dir: str,
    *,
    nccl_home: str = "/usr",
    mpi_home: str = OPENMPI_HOME,
    gencode: str = "-gencode=arch=compute_90,code=sm_90",
    jobs: int = 16,
) -> list[str]:
    """`make` for nccl-tests in `source_dir` (a checkout of the tag `nccl_tests_version`).

    CUDA from the locked toolkit (`/usr/local/cuda-12.4` for 12.4.1: NVIDIA's packages
    install into `cuda-MAJOR.MINOR`); NCCL from libnccl-dev (`/usr`); MPI from Open MPI
    (Debian and Ubuntu keep its headers and libraries under `mpi_home`). `gencode`:
    sm_90 (H100, H200) only, which also keeps the build to a minute.
    """
    parts = cuda_version.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"CUDA version {cuda_version!r} is not MAJOR.MINOR[.PATCH]")
    if not nccl_tests_version.startswith("v"):
        raise ValueError(f"nccl-tests version {nccl_tests_version!r} is not a tag like v2.13.11")
    cuda_home = f"/usr/local/cuda-{parts[0]}.{parts[1]}"
    return [
        "make", "-C", f"{source_dir}/src", f"-j{jobs}",
        "MPI=1", f"MPI_HOME={mpi_home}", f"CUDA_HOME={cuda_home}", f"NCCL_HOME={nccl_home}",
        f"NVCC_GENCODE={gencode}", f"BUILDDIR={build_dir}",
    ]  # fmt: skip


def _srun(
    launch: Launch,
    nodes: Sequence[str],
    tasks_per_node: int,
    env: Mapping[str, str],
    mpi: bool,
    what: str,
) -> list[str]:
    args = ["srun", f"--job-name={JOB_NAME}-{what}"]
    if launch.partition:
        args.append(f"--partition={launch.partition}")
    if launch.reservation:
        args.append(f"--reservation={launch.reservation}")
    args += [
        f"--nodes={len(nodes)}",
        f"--nodelist={','.join(nodes)}",
        f"--ntasks-per-node={tasks_per_node}",
        f"--gpus-per-node={launch.gpus_per_node}",
        "--exclusive",
        f"--time={launch.time_limit_min}",
        f"--immediate={launch.wait_s}",
        "--kill-on-bad-exit=1",
        *launch.srun_args,
    ]
    if mpi:
        args.append("--mpi=pmix")
    exports = {**launch.env, **env}
    args.append("--export=" + ",".join(["ALL", *(f"{k}={v}" for k, v in sorted(exports.items()))]))
    return args


def burnin_line(launch: Launch, node: str) -> list[str]:
    """The burn-in on one node: one task with all its GPUs; the JSON document on stdout."""
    env = {"PYTHONPATH": launch.pythonpath} if launch.pythonpath else {}
    return [
        *_srun(launch, [node], 1, env, mpi=False, what="burnin"),
        launch.python, "-m", "gpufleet.verify.burnin",
        "--duration", f"{launch.burnin_seconds:g}", *launch.burnin_args, "--json", "-",
    ]  # fmt: skip


def nccl_line(launch: Launch, nodes: Sequence[str], collective: str, rail: int | None) -> list[str]:
    """One nccl-tests job: one rank per GPU on every node; `rail`: NCCL kept to that rail."""
    env: dict[str, str] = {}
    if rail is not None:
        if rail >= len(launch.rail_devices):
            raise ValueError(f"no device known for rail {rail} ({len(launch.rail_devices)} rails)")
        device = launch.rail_devices[rail]
        if launch.fabric in ("infiniband", "roce"):
            env["NCCL_IB_HCA"] = f"={device}"  # '=': exactly this device, not a prefix
        else:
            env["NCCL_IB_DISABLE"] = "1"
            env["NCCL_SOCKET_IFNAME"] = f"={device}"
    binary = f"{launch.nccl_tests_bin.rstrip('/')}/{collective}_perf"
    ranks = launch.ranks_per_node or launch.gpus_per_node
    srun = _srun(launch, nodes, ranks, env, mpi=True, what="nccl")
    return [*srun, binary, *SIZES]


def local_lines(launch: Launch, node: str) -> list[list[str]]:
    """Node-local tests, in order: the burn-in, then each single-node collective."""
    return [burnin_line(launch, node)] + [
        nccl_line(launch, [node], c, None) for c in LOCAL_COLLECTIVES
    ]


def fabric_lines(launch: Launch, nodes: Sequence[str], rails: Sequence[int]) -> list[list[str]]:
    """A fabric test: the fabric collective over the nodes, once per rail."""
    return [nccl_line(launch, nodes, FABRIC_COLLECTIVE, rail) for rail in rails]


def shell(argv: Sequence[str]) -> str:
    """A command line as a shell would take it (for logs and the report)."""
    return shlex.join(argv)
