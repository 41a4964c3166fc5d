"""The verification phase's command lines (gpufleet.verify.launch): the nccl-tests build for the
locked versions and the Slurm launch line of every kind of test the planner's rounds hold; and
the campaign's config checks and drain reasons (gpufleet.verify.campaign)."""

from __future__ import annotations

import pytest
import yaml
from roles_render import REPO

from gpufleet.errors import UserError
from gpufleet.verify.campaign import config_from, drain_reason, drained_by_us
from gpufleet.verify.isolation import FabricLayout, IsolationPlanner, TestKind
from gpufleet.verify.launch import (
    Launch,
    build_command,
    burnin_line,
    fabric_lines,
    local_lines,
    shell,
)

LOCK = yaml.safe_load((REPO / "inventories/example-ib/cluster.yaml").read_text())["versions"]
IB = Launch(
    nccl_tests_bin="/opt/gpufleet/nccl-tests/bin/v2.13.11",
    python="/opt/gpufleet/verify-venv/bin/python",
    pythonpath="/opt/gpufleet/lib",
    fabric="infiniband",
    rail_devices=("mlx5_0", "mlx5_3"),
    burnin_seconds=600,
)
SRUN = (
    "srun --job-name=gpufleet-verify-{what} --reservation=gpufleet-verify --nodes={n} "
    "--nodelist={nodes} --ntasks-per-node={tasks} --gpus-per-node=8 --exclusive --time=30 "
    "--immediate=600 --kill-on-bad-exit=1"
)
SIZES = "-b 1M -e 16G -f 2 -g 1 -c 1"


def test_build_command_for_the_locked_versions():
    argv = build_command(LOCK["nccl_tests"], LOCK["cuda_toolkit"], "/src", "/opt/bin")
    assert LOCK["nccl_tests"] == "v2.13.11" and LOCK["cuda_toolkit"] == "12.4.1"
    assert shell(argv) == (
        "make -C /src/src -j16 MPI=1 MPI_HOME=/usr/lib/x86_64-linux-gnu/openmpi "
        "CUDA_HOME=/usr/local/cuda-12.4 NCCL_HOME=/usr "
        "NVCC_GENCODE=-gencode=arch=compute_90,code=sm_90 BUILDDIR=/opt/bin"
    )


@pytest.mark.parametrize(
    ("version", "cuda"), [("2.13.11", "12.4.1"), ("v2.13.11", "12"), ("v2.13.11", "twelve.4")]
)
def test_build_command_refuses_versions_it_cannot_place(version, cuda):
    with pytest.raises(ValueError, match="version"):
        build_command(version, cuda, "/src", "/bin")


def test_local_lines_burnin_then_four_single_node_collectives():
    lines = [shell(a) for a in local_lines(IB, "gpu-007")]
    one = SRUN.format(n=1, nodes="gpu-007", tasks=1, what="burnin")
    assert lines[0] == (
        f"{one} --export=ALL,PYTHONPATH=/opt/gpufleet/lib /opt/gpufleet/verify-venv/bin/python "
        "-m gpufleet.verify.burnin --duration 600 --json -"
    )
    eight = SRUN.format(n=1, nodes="gpu-007", tasks=8, what="nccl")
    assert lines[1:] == [
        f"{eight} --mpi=pmix --export=ALL /opt/gpufleet/nccl-tests/bin/v2.13.11/{c}_perf {SIZES}"
        for c in ("all_reduce", "all_gather", "reduce_scatter", "alltoall")
    ]


def test_fabric_lines_one_job_per_rail_on_that_rails_hca():
    lines = [shell(a) for a in fabric_lines(IB, ["gpu-001", "gpu-002"], [0, 1])]
    pair = SRUN.format(n=2, nodes="gpu-001,gpu-002", tasks=8, what="nccl")
    assert lines == [
        f"{pair} --mpi=pmix --export=ALL,NCCL_IB_HCA==mlx5_0 "
        f"/opt/gpufleet/nccl-tests/bin/v2.13.11/alltoall_perf {SIZES}",
        f"{pair} --mpi=pmix --export=ALL,NCCL_IB_HCA==mlx5_3 "
        f"/opt/gpufleet/nccl-tests/bin/v2.13.11/alltoall_perf {SIZES}",
    ]


def test_socket_fabric_names_the_interface_and_disables_ib():
    eth = Launch(nccl_tests_bin="/b", python="python3", fabric="ethernet", rail_devices=("eth1",))
    (line,) = fabric_lines(eth, ["a", "b", "c"], [0])
    assert "--export=ALL,NCCL_IB_DISABLE=1,NCCL_SOCKET_IFNAME==eth1" in line
    assert "--nodes=3" in line and "--nodelist=a,b,c" in line


def test_every_round_of_a_plan_gets_launch_lines():
    """The rounds the planner gives a 4-node, 2-rail site: each test maps to srun lines
    (local: burn-in + 4 collectives; fabric: one per rail), nodes never shared in a round."""
    nodes = ("n1", "n2", "n3", "n4")
    layout = FabricLayout(nodes, 2, {(n, r): f"leaf{r}" for n in nodes for r in range(2)})
    planner = IsolationPlanner(layout)
    rnd = planner.plan_next_round()
    assert rnd is not None and {t.kind for t in rnd.tests} == {TestKind.LOCAL}
    for test in rnd.tests:
        assert len(local_lines(IB, test.nodes[0])) == 5
    from gpufleet.verify.isolation import TestResult

    planner.observe([TestResult(t.test_id, tflops=700.0) for t in rnd.tests])
    rnd = planner.plan_next_round()
    assert rnd is not None and rnd.phase == "pair"
    for test in rnd.tests:
        lines = fabric_lines(IB, test.nodes, test.rails)
        assert len(lines) == 2
        assert all(f"--nodelist={','.join(test.nodes)}" in a for a in lines)


def test_burnin_line_passes_the_sites_arguments():
    cpu = Launch(
        nccl_tests_bin="/b",
        python="/usr/bin/python3",
        burnin_seconds=4,
        burnin_args=("--device", "cpu"),
        pythonpath="/opt/gpufleet/lib:/opt/x",
    )
    line = shell(burnin_line(cpu, "gpu1"))
    assert line.endswith(
        "--export=ALL,PYTHONPATH=/opt/gpufleet/lib:/opt/x /usr/bin/python3 -m "
        "gpufleet.verify.burnin --duration 4 --device cpu --json -"
    )


GOOD = {
    "site": "lab",
    "nodes": ["gpu1", "gpu2"],
    "rails": 2,
    "leaves": {"gpu1": ["l0", "l1"], "gpu2": ["l0", "l1"]},
    "launch": {"nccl_tests_bin": "/b", "python": "python3", "rail_devices": ["eth1", "eth2"]},
    "passive": {"gpu1": [], "gpu2": ["rails: eth2 is down"]},
}


def test_config_from_the_playbooks_json():
    cfg = config_from(GOOD)
    assert cfg.nodes == ("gpu1", "gpu2") and cfg.passive == {"gpu2": ["rails: eth2 is down"]}
    assert cfg.launch.rail_devices == ("eth1", "eth2")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"nodes": "gpu1"}, "nodes"),
        ({"rails": -1}, "rails"),
        ({"rails": 1.5}, "rails"),
        ({"launch": {"python": "python3"}}, "launch"),
        (
            {"launch": {"nccl_tests_bin": "/b", "python": "p", "rail_devices": ["eth1"]}},
            "launch.rail_devices",
        ),
        ({"noise": 2}, "noise"),
        ({"expected_rail_gbps": "fast"}, "expected_rail_gbps"),
    ],
)
def test_config_errors_name_the_field(change, field):
    with pytest.raises(UserError) as err:
        config_from({**GOOD, **change})
    assert field in [p.path for p in err.value.problems]


def test_drain_reason_is_prefixed_bounded_and_has_no_equals_sign():
    reason = drain_reason(["gpu2: 5.1 GB/s on all 2 rails " + "x" * 300 + " a=b"])
    assert reason.startswith("gpufleet-verify: gpu2: 5.1 GB/s") and len(reason) == 200
    assert "=" not in reason
    assert drained_by_us("IDLE+DRAIN", reason)
    assert not drained_by_us("IDLE+DRAIN", "gpufleet: rails: eth2 is down")  # the health check's
    assert not drained_by_us("IDLE", reason)


def test_numbers_as_templates_leave_them_are_read():
    cfg = config_from({**GOOD, "rails": "2", "noise": "0.15", "expected_rail_gbps": "None",
                       "drain": "False"})  # fmt: skip
    assert (cfg.rails, cfg.noise, cfg.expected_rail_gbps, cfg.drain) == (2, 0.15, None, False)
