"""The fault simulator, the cost model, the naive plan and `gpufleet verify simulate`."""

from __future__ import annotations

import json
import math

import pytest
import typer
from typer.testing import CliRunner

from gpufleet.errors import UserError
from gpufleet.verify.isolation import Round, Test, TestKind, rail_optimized_layout
from gpufleet.verify.isolation_cli import register_isolation
from gpufleet.verify.simulate import (
    CostModel,
    Fault,
    FaultKind,
    SimCluster,
    inject_faults,
    run_adaptive,
    run_naive,
)

FAULT_CASES = {
    "gpu": Fault(FaultKind.GPU, node="node-040", gpu=3, mode="diag"),
    "nic-down": Fault(FaultKind.NIC, node="node-017", rail=3, mode="down", factor=0.0),
    "nic-degraded": Fault(FaultKind.NIC, node="node-070", rail=6, mode="degraded", factor=0.55),
    "straggler-compute": Fault(FaultKind.STRAGGLER, node="node-005", mode="compute", factor=0.88),
    "straggler-network": Fault(FaultKind.STRAGGLER, node="node-066", mode="network", factor=0.89),
    "leaf-ports": Fault(FaultKind.LEAF, leaf="leaf-r1-su02", rail=1, mode="ports", factor=0.6),
    "leaf-uplink": Fault(FaultKind.LEAF, leaf="leaf-r4-su01", rail=4, mode="uplink", factor=0.7),
}


@pytest.mark.parametrize("case", sorted(FAULT_CASES))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_fault_kind_is_identified_without_blaming_healthy_nodes(case: str, seed: int) -> None:
    layout = rail_optimized_layout(96)  # three leaf groups: uplink faults can be told apart
    fault = FAULT_CASES[case]
    outcome = run_adaptive(SimCluster(layout, [fault], seed))
    assert outcome.accuracy.missed == []
    assert outcome.accuracy.perfect, outcome.accuracy.to_dict()
    assert len(outcome.rounds) <= math.log2(96) + 3


@pytest.mark.parametrize("n_nodes", [16, 48, 64])
def test_mixed_faults_over_seeds_are_all_found_and_no_healthy_node_is_blamed(n_nodes: int) -> None:
    layout = rail_optimized_layout(n_nodes)
    for seed in range(8):
        faults = inject_faults(layout, 4, seed)
        outcome = run_adaptive(SimCluster(layout, faults, seed))
        assert outcome.accuracy.all_identified, (seed, outcome.accuracy.to_dict())
        assert outcome.accuracy.healthy_nodes_blamed == [], (seed, outcome.accuracy.to_dict())
        assert outcome.accuracy.healthy_leaves_blamed == [], (seed, outcome.accuracy.to_dict())
        assert len(outcome.rounds) <= math.log2(n_nodes) + 3


def test_same_seed_gives_the_same_run_and_another_seed_another() -> None:
    layout = rail_optimized_layout(64)
    first = run_adaptive(SimCluster(layout, inject_faults(layout, 4, 7), 7))
    again = run_adaptive(SimCluster(layout, inject_faults(layout, 4, 7), 7))
    other = run_adaptive(SimCluster(layout, inject_faults(layout, 4, 8), 8))
    assert first.to_dict() == again.to_dict()
    assert first.to_dict() != other.to_dict()
    assert inject_faults(layout, 4, 7) != inject_faults(layout, 4, 8)


def test_injected_faults_do_not_hide_each_other() -> None:
    layout = rail_optimized_layout(64)
    for seed in range(20):
        faults = inject_faults(layout, 16, seed)
        assert len(faults) == 16
        nodes = [f.node for f in faults if f.node]
        assert len(nodes) == len(set(nodes))
        port_leaves = {f.leaf for f in faults if f.kind is FaultKind.LEAF and f.mode == "ports"}
        for f in faults:
            if f.kind is FaultKind.NIC:
                assert layout.leaf(f.node, f.rail) not in port_leaves
        # two leaf groups: nothing could tell which side of an uplink fault is bad
        assert all(f.mode != "uplink" for f in faults)


def test_injecting_more_faults_than_fit_is_a_user_error() -> None:
    layout = rail_optimized_layout(4, rails=1)
    with pytest.raises(UserError, match="cannot place 9 faults"):
        inject_faults(layout, 9, 0, kinds=(FaultKind.GPU,))


def test_noise_stays_within_the_stated_band() -> None:
    layout = rail_optimized_layout(2)
    cluster = SimCluster(layout, [], seed=0, noise=0.025)
    test = Test("t", TestKind.PAIR, layout.nodes, tuple(range(8)))
    values = [v for _ in range(200) for v in cluster.run(test).rail_gbps.values()]
    assert min(values) >= 48.0 * 0.975 and max(values) <= 48.0 * 1.025
    assert max(values) - min(values) > 1.0  # it is noisy, not constant


def test_a_round_costs_its_longest_test_plus_overhead_and_big_tests_cost_more() -> None:
    cost = CostModel()
    pair = Test("p", TestKind.PAIR, ("a", "b"), (0,))
    big = Test("g", TestKind.ALL, tuple(f"n{i}" for i in range(4096)), (0,))
    local = Test("l", TestKind.LOCAL, ("a",), ())
    assert cost.test_s(local) == 120.0 + 300.0 + 60.0  # DCGM level 2 ~2 min + burn-in + NVLink
    assert cost.test_s(pair) == 90.0
    assert cost.test_s(big) > 4 * cost.test_s(pair)
    rnd = Round(1, "all", (pair, big))
    assert cost.round_s(rnd) == pytest.approx(30.0 + cost.test_s(big))


def test_naive_plan_runs_one_pair_at_a_time_and_blames_every_node_under_a_bad_leaf() -> None:
    layout = rail_optimized_layout(64)
    fault = Fault(FaultKind.LEAF, leaf="leaf-r2-su01", rail=2, mode="ports", factor=0.4)
    naive = run_naive(SimCluster(layout, [fault], 0))
    adaptive = run_adaptive(SimCluster(layout, [fault], 0))
    assert len(naive.rounds) == 64  # whole cluster, then 63 pairs in sequence
    assert not naive.accuracy.all_identified
    assert len(naive.accuracy.healthy_nodes_blamed) == 32
    assert adaptive.accuracy.perfect
    assert adaptive.wall_s < naive.wall_s / 5


def test_naive_plan_stops_after_a_passing_whole_cluster_test() -> None:
    layout = rail_optimized_layout(16)
    compute = Fault(FaultKind.STRAGGLER, node="node-004", mode="compute", factor=0.85)
    naive = run_naive(SimCluster(layout, [compute], 0))
    assert len(naive.rounds) == 1
    assert naive.accuracy.missed == ["node-004 compute straggler (x0.85)"]


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _verify() -> None:
        """Stands in for the `gpufleet verify` sub-app."""

    register_isolation(app)
    return app


def test_cli_simulate_json_reports_rounds_verdicts_and_accuracy() -> None:
    result = CliRunner().invoke(
        cli_app(), ["simulate", "--nodes", "64", "--faults", "3", "--seed", "5", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data["faults"]) == 3
    adaptive = data["adaptive"]
    assert adaptive["accuracy"]["all_identified"] is True
    assert adaptive["accuracy"]["healthy_nodes_blamed"] == []
    assert adaptive["rounds"] == len(adaptive["round_log"]) <= data["round_bound"]
    subjects = {v["subject"] for v in adaptive["verdicts"] if v["status"] == "fail"}
    assert {f["subject"] for f in data["faults"]} <= subjects


def test_cli_simulate_prints_tables_and_the_naive_comparison() -> None:
    result = CliRunner().invoke(
        cli_app(), ["simulate", "--nodes", "40", "--faults", "2", "--seed", "1", "--naive"]
    )
    assert result.exit_code == 0, result.output
    assert "adaptive plan:" in result.output
    assert "rounds used:" in result.output
    assert "naive:" in result.output


def test_cli_simulate_rejects_bad_arguments_with_one_line_each() -> None:
    result = CliRunner().invoke(
        cli_app(), ["simulate", "--nodes", "1", "--faults", "1", "--kind", "psu"]
    )
    assert isinstance(result.exception, UserError)
    text = result.exception.render()
    assert "--nodes: 1 (fix: give at least 2 nodes)" in text
    assert "--kind: unknown kind 'psu'" in text


def test_rail_hidden_behind_a_partners_failed_leaf_is_retested_and_found() -> None:
    # node-031 and node-063 are the odd ones out of their leaf groups (one GPU
    # fault each) and meet in a cross-leaf pair whose rail 7 crosses the failed
    # leaf-r7-su01: node-031's own rail-7 fault only shows in a retest.
    layout = rail_optimized_layout(64)
    faults = [
        Fault(FaultKind.GPU, node="node-020", gpu=0, mode="diag"),
        Fault(FaultKind.GPU, node="node-033", gpu=1, mode="diag"),
        Fault(FaultKind.LEAF, leaf="leaf-r7-su01", rail=7, mode="ports", factor=0.45),
        Fault(FaultKind.NIC, node="node-031", rail=7, mode="degraded", factor=0.5),
    ]
    outcome = run_adaptive(SimCluster(layout, faults, 13))
    assert outcome.accuracy.perfect, outcome.accuracy.to_dict()
