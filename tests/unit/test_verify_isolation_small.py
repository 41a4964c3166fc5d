"""Fault isolation on small and oddly shaped clusters, and under measurement noise.

The results fed to the planner come from the simulator (`gpufleet.verify.simulate`,
faults injected, uniform per-test noise) or are constructed here (CONSTRUCTED_*):
no recording of a per-rail pair sweep exists, so the planner's inputs are synthetic
by design. The planner is never told the noise; it estimates it.
"""

from __future__ import annotations

import random

import pytest

from gpufleet.verify.isolation import (
    FabricLayout,
    IsolationPlanner,
    Round,
    TestKind,
    TestResult,
    estimate_noise,
    noisy_baseline,
    rail_optimized_layout,
    units_layout,
)
from gpufleet.verify.isolation_model import within_test_noise
from gpufleet.verify.simulate import (
    Fault,
    FaultKind,
    Outcome,
    SimCluster,
    inject_faults,
    run_adaptive,
)
from gpufleet.verify.verdict import Status, Verdict

UNEVEN = ([1, 2, 4], [3, 3, 1, 2], [5, 2], [1, 1, 3, 5], [2, 5, 1], [4, 1, 1], [2, 1, 3, 1, 3])
SHAPES: list[tuple[str, FabricLayout]] = [
    *((f"{n} nodes one leaf", rail_optimized_layout(n)) for n in range(3, 11)),
    *((f"{n} nodes one per leaf", rail_optimized_layout(n, 8, 1)) for n in range(3, 11)),
    *((f"leaves {'/'.join(map(str, u))}", units_layout(u)) for u in UNEVEN),
]  # fmt: skip


def runs(layout: FabricLayout, noise: float, seeds: range) -> list[tuple[list[Fault], Outcome]]:
    """Every fault count from 1 to half the nodes, for each seed."""
    out = []
    for k in range(1, len(layout.nodes) // 2 + 1):
        for seed in seeds:
            faults = inject_faults(layout, k, seed)
            out.append((faults, run_adaptive(SimCluster(layout, faults, seed, noise=noise))))
    return out


def blames(outcome: Outcome) -> list[str]:
    acc = outcome.accuracy
    return acc.healthy_nodes_blamed + acc.healthy_leaves_blamed


# ---------------------------------------------------------------- item 15: shapes


@pytest.mark.parametrize(("name", "layout"), SHAPES, ids=[name for name, _ in SHAPES])
def test_small_and_odd_shapes_find_or_localize_every_fault_and_blame_no_healthy_part(
    name: str, layout: FabricLayout
) -> None:
    for faults, outcome in runs(layout, 0.025, range(4)):
        described = [f.describe() for f in faults]
        assert blames(outcome) == [], (name, described, outcome.accuracy.to_dict())
        assert outcome.accuracy.all_localized, (name, described, outcome.accuracy.to_dict())


def test_a_leaf_port_fault_under_one_node_names_both_candidates() -> None:
    layout = rail_optimized_layout(6, nodes_per_leaf=1)
    fault = Fault(FaultKind.LEAF, leaf="leaf-r3-su04", rail=3, mode="ports", factor=0.4)
    outcome = run_adaptive(SimCluster(layout, [fault], seed=1))
    (candidates,) = [v for v in outcome.verdicts if v.metrics.get("scope") == "candidates"]
    assert candidates.status is Status.WARN
    assert candidates.metrics["candidates"] == ["node-004 rail 3", "leaf-r3-su04"]
    assert candidates.reasons[0].startswith("cannot localize further: node-004 rail 3")
    assert not [v for v in outcome.verdicts if v.status is Status.FAIL]
    assert outcome.accuracy.localized == [fault.describe()]


def test_a_nic_fault_in_a_three_node_cluster_is_split_out_and_confirmed() -> None:
    layout = rail_optimized_layout(3)
    fault = Fault(FaultKind.NIC, node="node-002", rail=5, mode="degraded", factor=0.4)
    outcome = run_adaptive(SimCluster(layout, [fault], seed=3))
    failed = {v.subject for v in outcome.verdicts if v.status is Status.FAIL}
    assert failed == {"node-002", "node-002 rail 5"}
    phases = [r.phase for r in outcome.rounds]
    assert phases.count("pair-retest") >= 2  # the triple split up, then a confirmation


def test_the_leaf_of_a_small_cluster_is_blamed_only_when_no_two_nics_explain_it() -> None:
    # Two bad NICs on one rail of a 5-node leaf look like a leaf fault in the first pairs.
    layout = rail_optimized_layout(5)
    two_nics = [
        Fault(FaultKind.NIC, node="node-000", rail=1, mode="degraded", factor=0.41),
        Fault(FaultKind.NIC, node="node-002", rail=1, mode="degraded", factor=0.5),
    ]
    for seed in range(6):
        outcome = run_adaptive(SimCluster(layout, two_nics, seed))
        assert "leaf-r1-su00" not in {
            v.subject for v in outcome.verdicts if v.status is Status.FAIL
        }
        assert outcome.accuracy.all_localized
    leaf = [Fault(FaultKind.LEAF, leaf="leaf-r1-su00", rail=1, mode="ports", factor=0.45)]
    outcome = run_adaptive(SimCluster(rail_optimized_layout(6), leaf, seed=2))
    assert outcome.accuracy.perfect, outcome.accuracy.to_dict()


# ---------------------------------------------------------------- item 16: noise


@pytest.mark.parametrize("noise", [0.05, 0.075])
@pytest.mark.parametrize(("name", "layout"), SHAPES[::3], ids=[name for name, _ in SHAPES[::3]])
def test_no_healthy_part_is_blamed_under_noise_in_small_shapes(
    name: str, layout: FabricLayout, noise: float
) -> None:
    for faults, outcome in runs(layout, noise, range(3)):
        assert blames(outcome) == [], (name, noise, [f.describe() for f in faults])


@pytest.mark.parametrize("noise", [0.05, 0.075])
@pytest.mark.parametrize("n_faults", [1, 4, 16])
def test_no_healthy_part_is_blamed_under_noise_in_a_64_node_cluster(
    noise: float, n_faults: int
) -> None:
    layout = rail_optimized_layout(64)
    for seed in range(3):
        faults = inject_faults(layout, n_faults, seed)
        outcome = run_adaptive(SimCluster(layout, faults, seed, noise=noise))
        assert blames(outcome) == [], (noise, seed, [f.describe() for f in faults])
        # Faults far outside the noise (dead or degraded links, failed GPUs, slow
        # switch ports) are found or localized whatever the noise.
        clear = [
            f.describe()
            for f in faults
            if f.kind is FaultKind.GPU
            or (f.kind in (FaultKind.NIC, FaultKind.LEAF) and f.factor <= 0.6)
        ]
        assert not set(clear) & set(outcome.accuracy.missed), (noise, seed)


def test_noise_widens_the_limits_the_planner_uses() -> None:
    layout = rail_optimized_layout(32)
    quiet = IsolationPlanner(layout)
    noisy = IsolationPlanner(layout)
    for planner, noise in ((quiet, 0.01), (noisy, 0.075)):
        cluster = SimCluster(layout, [], seed=4, noise=noise)
        for _ in range(2):  # local, then pairs
            rnd = planner.plan_next_round()
            assert rnd is not None
            planner.observe([cluster.run(t) for t in rnd.tests])
    assert quiet.evidence.noise() < 0.03 < 0.06 < noisy.evidence.noise()
    assert quiet.evidence.rail_floor(TestKind.PAIR) == pytest.approx(48 * 0.95, rel=0.02)
    assert noisy.evidence.rail_floor(TestKind.PAIR) < 48 * 0.88


# ---------------------------------------------------------------- the confidence rule


def constructed_results(rnd: Round, slow: dict[tuple[str, int], float]) -> list[TestResult]:
    # constructed: GEMM at 790 TFLOPS; every rail at 48 GB/s unless (node, rail) is slowed.
    out = []
    for test in rnd.tests:
        if test.kind is TestKind.LOCAL:
            out.append(TestResult(test.test_id, tflops=790.0))
            continue
        rails = {
            r: min([48.0] + [slow[(n, r)] for n in test.nodes if (n, r) in slow])
            for r in test.rails
        }
        out.append(TestResult(test.test_id, rail_gbps=rails))
    return out


def test_one_low_result_blames_nobody_and_a_second_with_a_proven_partner_does() -> None:
    layout = rail_optimized_layout(8)
    once = IsolationPlanner(layout)
    # constructed: node-002 rail 6 reads 20 GB/s in the first pair round only (a blip).
    first = {("node-002", 6): 20.0}
    rnd = once.plan_next_round()
    while rnd is not None:
        once.observe(constructed_results(rnd, first if rnd.phase == "pair" else {}))
        rnd = once.plan_next_round()
    assert not [v for v in once.verdicts() if v.status is Status.FAIL]
    twice = IsolationPlanner(layout)
    always = {("node-002", 6): 20.0}  # constructed: the same rail low in every test
    while (rnd := twice.plan_next_round()) is not None:
        twice.observe(constructed_results(rnd, always))
    failed = {v.subject for v in twice.verdicts() if v.status is Status.FAIL}
    assert failed == {"node-002", "node-002 rail 6"}


def test_a_compute_result_within_the_noise_is_measured_again_before_blaming() -> None:
    layout = rail_optimized_layout(5)
    planner = IsolationPlanner(layout)
    rnd = planner.plan_next_round()
    assert rnd is not None
    # constructed: node-003's GEMM 7% under the median, in a fleet whose results spread
    # by 4% above it: below the warning line, not clearly beyond the noise.
    gemm = {"node-000": 800.0, "node-001": 780.0, "node-002": 820.0, "node-003": 735.0}
    planner.observe([TestResult(t.test_id, tflops=gemm.get(t.nodes[0], 790.0)) for t in rnd.tests])
    rnd = planner.plan_next_round()
    assert rnd is not None
    assert [t.nodes for t in rnd.tests if t.kind is TestKind.LOCAL] == [("node-003",)]
    assert all("node-003" not in t.nodes for t in rnd.tests if t.kind is TestKind.PAIR)
    results = constructed_results(rnd, {})  # the second GEMM result is normal
    planner.observe(results)
    while (rnd := planner.plan_next_round()) is not None:
        planner.observe(constructed_results(rnd, {}))
    node = next(v for v in planner.verdicts() if v.subject == "node-003")
    assert node.status is not Status.FAIL


# ---------------------------------------------------------------- estimators


def test_noise_is_estimated_from_the_spread_within_tests() -> None:
    rng = random.Random(7)
    # constructed: 6 tests of 8 rails with 5% uniform noise, two of them 15% slow
    # (a straggler in the pair) and one with a dead rail.
    tests = [
        [48.0 * f * (1 + rng.uniform(-0.05, 0.05)) for _ in range(8)]
        for f in (1.0, 1.0, 1.0, 0.85, 0.85, 1.0)
    ]
    tests[0][3] = 0.0
    within = within_test_noise(tests)
    assert within is not None and 0.035 < within < 0.075
    base, noise = noisy_baseline(tests)
    assert base == pytest.approx(48.0, rel=0.02)
    assert noise == within
    assert estimate_noise([48.0, 49.0, 50.0], 48.0) == pytest.approx(2 / 48 * 3 / 2)


def verdict_subjects(verdicts: list[Verdict], status: Status) -> set[str]:
    return {v.subject for v in verdicts if v.status is status}
