"""The vocabulary of fault isolation: tests, rounds, results, fabric layouts, thresholds.

`gpufleet.verify.isolation` plans with these; `gpufleet.verify.simulate` answers
them. Layouts come from a real site (`FabricLayout` built by the caller) or from
`rail_optimized_layout` / `units_layout` for simulations.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gpufleet.errors import Problem, UserError

VERDICT_KIND = "isolation"


class TestKind(StrEnum):
    __test__ = False  # not a pytest class

    LOCAL = "local"
    PAIR = "pair"
    GROUP = "group"
    ALL = "all"


@dataclass(frozen=True)
class Test:
    """One job of a round: what to run, on which nodes, over which rails."""

    __test__ = False  # not a pytest class

    test_id: str
    kind: TestKind
    nodes: tuple[str, ...]
    rails: tuple[int, ...]
    purpose: str = ""


@dataclass(frozen=True)
class Round:
    """Tests that run at the same time; no node appears in two of them."""

    index: int
    phase: str
    tests: tuple[Test, ...]

    def node_count(self) -> int:
        return sum(len(t.nodes) for t in self.tests)

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for test in self.tests:
            kinds[test.kind.value] = kinds.get(test.kind.value, 0) + 1
        parts = ", ".join(f"{n} {k} test{'s' if n != 1 else ''}" for k, n in kinds.items())
        largest = max((len(t.nodes) for t in self.tests), default=0)
        return (
            f"round {self.index} ({self.phase}): {parts} over {self.node_count()} nodes, "
            f"largest test {largest} node{'s' if largest != 1 else ''}"
        )


@dataclass(frozen=True)
class TestResult:
    """What one test reported.

    Fabric tests fill `rail_gbps` (busbw per rail, GB/s); local tests fill
    `failed_gpus` and `tflops` (the slowest GPU's GEMM throughput). `error`
    is set when the test did not complete (NCCL error, hang, diag failure).
    """

    __test__ = False  # not a pytest class

    test_id: str
    rail_gbps: Mapping[int, float] = field(default_factory=dict)
    failed_gpus: tuple[int, ...] = ()
    tflops: float | None = None
    error: str = ""


@dataclass(frozen=True, eq=False)
class FabricLayout:
    """Nodes, rails per node and the leaf switch each (node, rail) plugs into."""

    nodes: tuple[str, ...]
    rails: int
    leaf_of: Mapping[tuple[str, int], str]

    def leaf(self, node: str, rail: int) -> str:
        return self.leaf_of[(node, rail)]


def rail_optimized_layout(
    n_nodes: int, rails: int = 8, nodes_per_leaf: int = 32, prefix: str = "node"
) -> FabricLayout:
    """A rail-optimized fabric: each rail has its own leaf switches, one per
    `nodes_per_leaf` nodes (a scalable unit). A 64-port NDR leaf serves 32 nodes
    with 32 ports down and 32 up, hence the default."""
    problems = []
    if n_nodes < 1:
        problems.append(Problem("nodes", f"{n_nodes} nodes", "give at least 1 node"))
    if rails < 1:
        problems.append(Problem("rails", f"{rails} rails", "give at least 1 rail"))
    if nodes_per_leaf < 1:
        problems.append(
            Problem("nodes_per_leaf", f"{nodes_per_leaf} nodes per leaf", "give at least 1")
        )
    if problems:
        raise UserError(problems, title="cannot build the fabric layout:")
    width = max(3, len(str(n_nodes - 1)))
    units = (n_nodes + nodes_per_leaf - 1) // nodes_per_leaf
    unit_width = max(2, len(str(units - 1)))
    nodes = tuple(f"{prefix}-{i:0{width}d}" for i in range(n_nodes))
    leaf_of = {
        (node, rail): f"leaf-r{rail}-su{i // nodes_per_leaf:0{unit_width}d}"
        for i, node in enumerate(nodes)
        for rail in range(rails)
    }
    return FabricLayout(nodes=nodes, rails=rails, leaf_of=leaf_of)


def validate_layout(layout: FabricLayout) -> None:
    """Raise UserError naming each duplicate node or missing leaf mapping."""
    problems: list[Problem] = []
    if not layout.nodes:
        problems.append(Problem("nodes", "no nodes", "list at least one node"))
    if layout.rails < 1:
        problems.append(Problem("rails", f"{layout.rails} rails", "give at least 1 rail"))
    seen: set[str] = set()
    for node in layout.nodes:
        if node in seen:
            problems.append(Problem(f"nodes.{node}", "listed twice", "list each node once"))
        seen.add(node)
    missing = [
        (n, r) for n in layout.nodes for r in range(layout.rails) if (n, r) not in layout.leaf_of
    ]
    for node, rail in missing[:20]:
        problems.append(
            Problem(f"leaf_of.{node}.rail{rail}", "no leaf switch", "name the leaf of every rail")
        )
    if len(missing) > 20:
        problems.append(Problem("leaf_of", f"{len(missing) - 20} more (node, rail) without a leaf"))
    if problems:
        raise UserError(problems, title="invalid fabric layout:")


def units_layout(unit_sizes: Sequence[int], rails: int = 8, prefix: str = "node") -> FabricLayout:
    """A rail-optimized fabric whose scalable units (leaf groups) have the given sizes:
    `units_layout([1, 3, 5])` puts 9 nodes under leaves of 1, 3 and 5 nodes per rail."""
    problems = [
        Problem(f"unit_sizes[{i}]", f"{size} nodes", "give at least 1 node per unit")
        for i, size in enumerate(unit_sizes)
        if size < 1
    ]
    if not unit_sizes:
        problems.append(Problem("unit_sizes", "no units", "give at least one unit"))
    if rails < 1:
        problems.append(Problem("rails", f"{rails} rails", "give at least 1 rail"))
    if problems:
        raise UserError(problems, title="cannot build the fabric layout:")
    total = sum(unit_sizes)
    width = max(3, len(str(total - 1)))
    unit_width = max(2, len(str(len(unit_sizes) - 1)))
    nodes: list[str] = []
    leaf_of: dict[tuple[str, int], str] = {}
    for unit, size in enumerate(unit_sizes):
        for _ in range(size):
            node = f"{prefix}-{len(nodes):0{width}d}"
            nodes.append(node)
            for rail in range(rails):
                leaf_of[(node, rail)] = f"leaf-r{rail}-su{unit:0{unit_width}d}"
    return FabricLayout(nodes=tuple(nodes), rails=rails, leaf_of=leaf_of)


@dataclass(frozen=True)
class IsolationConfig:
    """Thresholds of the planner.

    `expected_gbps` is the busbw one rail should reach; None takes the median of
    the first round of each test size as the fleet baseline (robust while fewer
    than half of the results are bad). 46-49 GB/s per 400G NDR NIC through NCCL
    (NVIDIA/nccl-tests issue 290).

    `noise` is the measurement noise the operator knows of (relative, e.g. 0.05 for
    results within 5% of each other); the planner also estimates it from each
    round and uses the larger. Limits widen with the noise: a rail fails below
    `1 - max(1 - min_fraction, 2 x noise)` of the baseline (docs/isolation.md).
    """

    min_fraction: float = 0.95  # a rail below 95% of the baseline fails (quiet fabrics)
    expected_gbps: float | None = None
    noise: float = 0.0
    # Azure/azurehpc-health-checks: a GPU 3.5% below the fleet baseline is flagged,
    # 7% below is to be replaced.
    compute_warn_fraction: float = 0.965
    compute_fail_fraction: float = 0.93
    # Retest rounds before what is still undecided is reported as "cannot localize further".
    max_retest_rounds: int = 4


def robust_baseline(values: Sequence[float]) -> float:
    """The rate healthy rails reach: the median of the values near the top.

    A plain median breaks when most rails of a round are slow (several failed
    leaf switches in a small cluster); this holds while at least a tenth of the
    values are healthy. Values below 92% of the 90th percentile (stragglers,
    degraded links) are left out before taking the median.
    """
    ordered = sorted(values)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return statistics.median(v for v in ordered if v >= 0.92 * p90)


def _largest_excursion(deviations: Sequence[float]) -> float:
    upper = sorted(d for d in deviations if d > 0)
    k = len(upper)
    if k == 0:
        return 0.0
    if k < 20:
        # The largest of k draws falls short of the bound by about 1/(k+1) of it.
        return upper[-1] * (k + 1) / k
    return upper[int(0.95 * (k - 1))] / 0.95


def estimate_noise(values: Sequence[float], baseline: float) -> float:
    """Relative measurement noise, from the values above the baseline.

    Faults only slow a link down, so the spread above the healthy rate is noise
    alone: the largest excursion (scaled by (k+1)/k for k values), or from 20
    values on, the 95th percentile over 0.95.
    """
    if baseline <= 0:
        return 0.0
    return _largest_excursion([v / baseline - 1 for v in values])


def within_test_noise(tests: Sequence[Sequence[float]]) -> float | None:
    """Relative noise from the spread of each test's rails around that test's median.

    The rails of one test share its nodes, so a node-wide slowdown moves them all
    and leaves their spread alone. Rails far below the test's best (failed links,
    leaves) are left out of its median, and only the values above the median
    count. Tests of fewer than four rails say too little and are skipped; None
    when no test is left.
    """
    deviations: list[float] = []
    used = 0
    for values in tests:
        if len(values) < 4:
            continue
        top = max(values)
        kept = [v for v in values if v >= 0.8 * top]
        median = statistics.median(kept)
        if median > 0:
            used += 1
            deviations.extend(v / median - 1 for v in kept if v > median)
    return _largest_excursion(deviations) if used else None


def noisy_baseline(tests: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(baseline, noise) of the rail values of tests of one kind.

    The noise comes from within tests (`within_test_noise`). The baseline comes from
    the tests that run at the top rate: faults only slow a test down, so a test whose
    median lies more than twice the noise of such a median (and 2%) below the 90th
    percentile of the test medians is slow, and its values stay out; within a test,
    rails below 80% of its best (failed links, leaves) stay out too.
    """
    kept = [[v for v in test if v >= 0.8 * max(test)] for test in tests if test]
    within = within_test_noise(tests)
    if within is None:  # tests of a few rails: the spread across tests is all there is
        values = sorted(v for test in kept for v in test)
        p90 = values[math.ceil(0.9 * (len(values) - 1))]
        within = estimate_noise(values, statistics.median(v for v in values if v >= 0.92 * p90))
    medians = sorted(statistics.median(test) for test in kept)
    # The 90th percentile, rounded up: of two tests, the faster one.
    top = medians[math.ceil(0.9 * (len(medians) - 1))]
    # Three times the noise of a median: a test slowed by noise alone stays in (leaving
    # it out would bias the baseline up), one slowed by 10% or more does not.
    chosen = [
        v
        for test in kept
        if statistics.median(test) >= top * (1 - max(0.02, 3.75 * within / math.sqrt(len(test))))
        for v in test
    ]
    return statistics.median(chosen), within


def tolerance(min_fraction: float, noise: float, samples: int = 1) -> float:
    """How far below the baseline a result may fall before it fails: the configured
    margin, or twice the noise (of a median of `samples` values) if that is wider."""
    spread = noise if samples <= 1 else noise * 1.25 / math.sqrt(samples)
    return max(1 - min_fraction, 2 * spread)


def fmt_gbps(value: float) -> str:
    return f"{value:.1f} GB/s"


def join_names(names: Sequence[str], limit: int = 4) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
