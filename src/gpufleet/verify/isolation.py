"""Fault isolation: find the bad GPU, node, NIC/cable or leaf switch in few test rounds.

NCCL itself has no feature to point at a bad node: a slow all_reduce over 512
nodes only says that something on the path is slow. This planner localizes the
fault with rounds of tests that run in parallel (docs/isolation.md):

1. local: every node alone (DCGM diagnostics, burn-in, single-node NVLink
   all_reduce), all nodes at once. Finds bad GPUs and compute stragglers and
   keeps those nodes out of the fabric tests.
2. pair: a perfect matching of the remaining nodes, pairs under the same leaf
   switches first; every test exercises all rails and reports busbw per rail.
   A rail that fails in every pair under one leaf switch blames the switch.
3. pair-retest: each member of a failing pair is retested with a partner known
   to be good on the failing rails. Fails again: its NIC or cable (one rail) or
   the node itself (all rails: a bandwidth straggler). Passes: it was the partner.
4. group: leaf groups tested together in pairs (traffic crosses the spine), to
   catch leaf uplink faults that two-node tests do not load; failing groups are
   retested against known-good leaf groups (group-retest).
5. all: one test over every node that is still considered healthy.

The planner is adaptive and knows nothing about Slurm: `plan_next_round()`
returns a `Round` (tests with node sets and rails), the caller runs the tests
(the simulator in `gpufleet.verify.simulate`, later Slurm jobs) and hands the
results to `observe()`; `verdicts()` gives one `Verdict` per node, NIC (node,
rail) and leaf switch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gpufleet.errors import Problem, UserError
from gpufleet.verify.verdict import Status, Verdict

VERDICT_KIND = "isolation"

# Phases in the order the planner walks through them.
PHASES: tuple[str, ...] = ("local", "pair", "pair-retest", "group", "group-retest", "all")


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


@dataclass(frozen=True)
class IsolationConfig:
    """Thresholds of the planner.

    `expected_gbps` is the busbw one rail should reach; None takes the median of
    the first round of each test size as the fleet baseline (robust while fewer
    than half of the results are bad). 46-49 GB/s per 400G NDR NIC through NCCL
    (NVIDIA/nccl-tests issue 290).
    """

    min_fraction: float = 0.95  # a rail below 95% of the baseline fails (noise is ~2-3%)
    expected_gbps: float | None = None
    # Azure/azurehpc-health-checks: a GPU 3.5% below the fleet baseline is flagged,
    # 7% below is to be replaced.
    compute_warn_fraction: float = 0.965
    compute_fail_fraction: float = 0.93


@dataclass(frozen=True)
class _Obs:
    """One fabric test as seen from one node: partners and per-rail outcome."""

    test_id: str
    kind: TestKind
    partners: tuple[str, ...]
    values: dict[int, float]
    passed: dict[int, bool]
    error: str


def _fmt(value: float) -> str:
    return f"{value:.1f} GB/s"


def _join(names: Sequence[str], limit: int = 4) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"


class IsolationPlanner:
    """Adaptive planner: alternate `plan_next_round()` and `observe(results)`."""

    def __init__(self, layout: FabricLayout, config: IsolationConfig | None = None) -> None:
        validate_layout(layout)
        self.layout = layout
        self.config = config or IsolationConfig()
        self.rails: tuple[int, ...] = tuple(range(layout.rails))
        self._order = {n: i for i, n in enumerate(layout.nodes)}
        self._unit_of: dict[str, tuple[str, ...]] = {
            n: tuple(layout.leaf_of[(n, r)] for r in self.rails) for n in layout.nodes
        }
        self._unit_nodes: dict[tuple[str, ...], list[str]] = {}
        for node in layout.nodes:
            self._unit_nodes.setdefault(self._unit_of[node], []).append(node)
        self._leaf_ports: dict[str, list[tuple[str, int]]] = {}
        for node in layout.nodes:
            for rail in self.rails:
                self._leaf_ports.setdefault(layout.leaf_of[(node, rail)], []).append((node, rail))

        self._phase = "local"
        self._pending: Round | None = None
        self.history: list[tuple[Round, list[TestResult]]] = []
        self._baseline: dict[TestKind, float] = {}
        self._obs: dict[str, list[_Obs]] = {}
        self._targets: dict[str, tuple[str, frozenset[int]]] = {}
        self._group_members: dict[str, tuple[tuple[str, ...], ...]] = {}
        self._uplink_tried: set[frozenset[tuple[str, ...]]] = set()
        self._uplink_fails: list[tuple[tuple[tuple[str, ...], ...], int, float]] = []

        # Findings.
        self.local_fail: dict[str, list[str]] = {}
        self.local_warn: dict[str, list[str]] = {}
        self._local_tflops: dict[str, float] = {}
        self.good: set[tuple[str, int]] = set()
        self.suspect: set[tuple[str, int]] = set()
        self.bad: set[tuple[str, int]] = set()
        self.node_bad: dict[str, str] = {}
        self.nic_bad: dict[tuple[str, int], str] = {}
        self.nic_ambiguous: dict[tuple[str, int], str] = {}
        self._unverifiable: set[tuple[str, int]] = set()
        self.leaf_good: set[tuple[str, int]] = set()
        self.leaf_bad: dict[str, dict[int, str]] = {}
        self.uplink_good: set[tuple[str, int]] = set()
        self.uplink_bad: dict[str, dict[int, str]] = {}
        self.uplink_ambiguous: dict[str, dict[int, str]] = {}
        self.cluster: Verdict | None = None
        self._node_level_done = False

    # ------------------------------------------------------------------ API

    @property
    def done(self) -> bool:
        return self._phase == "done"

    @property
    def phase(self) -> str:
        return self._phase

    def plan_next_round(self) -> Round | None:
        """The next round of tests, or None when isolation is finished."""
        if self._pending is not None:
            raise RuntimeError(f"round {self._pending.index} still waits for observe()")
        planners: dict[str, Callable[[int], list[Test]]] = {
            "local": self._plan_local,
            "pair": self._plan_pair,
            "pair-retest": self._plan_pair_retest,
            "group": self._plan_group,
            "group-retest": self._plan_group_retest,
            "all": self._plan_all,
        }
        index = len(self.history) + 1
        while self._phase != "done":
            phase = self._phase
            tests = planners[phase](index)
            if tests:
                rnd = Round(index=index, phase=phase, tests=tuple(tests))
                _check_disjoint(rnd)
                self._pending = rnd
                return rnd
        self._finish_node_level()
        return None

    def observe(self, results: Iterable[TestResult]) -> None:
        """Take the results of the round returned by the last `plan_next_round()`."""
        rnd = self._pending
        if rnd is None:
            raise RuntimeError("observe() called with no round pending")
        by_id = {r.test_id: r for r in results}
        missing = [t.test_id for t in rnd.tests if t.test_id not in by_id]
        if missing:
            raise UserError(
                [
                    Problem(tid, "no result", "report an error result for a job that died")
                    for tid in missing
                ],
                title=f"round {rnd.index} is incomplete:",
            )
        ordered = [by_id[t.test_id] for t in rnd.tests]
        self._pending = None
        self.history.append((rnd, ordered))
        observers: dict[str, Callable[[Round, list[TestResult]], None]] = {
            "local": self._observe_local,
            "pair": self._observe_pair,
            "pair-retest": self._observe_pair_retest,
            "group": self._observe_group,
            "group-retest": self._observe_group_retest,
            "all": self._observe_all,
        }
        observers[rnd.phase](rnd, ordered)

    # ------------------------------------------------------------ helpers

    def _sorted(self, nodes: Iterable[str]) -> list[str]:
        return sorted(nodes, key=self._order.__getitem__)

    def _fabric_nodes(self) -> list[str]:
        return [n for n in self.layout.nodes if n not in self.local_fail]

    def _explained(self, node: str, rail: int) -> bool:
        leaf = self.layout.leaf_of[(node, rail)]
        return rail in self.leaf_bad.get(leaf, {})

    def _still_suspect(self, node: str, rail: int) -> bool:
        """A failure on `rail` that no failed leaf switch on the path explains."""
        if (node, rail) in self.good:
            return False
        return any(
            rail in o.passed
            and not o.passed[rail]
            and not any(self._explained(m, rail) for m in (node, *o.partners))
            for o in self._obs.get(node, [])
        )

    def _baseline_for(self, kind: TestKind) -> float:
        if self.config.expected_gbps is not None:
            return self.config.expected_gbps
        chain = {
            TestKind.PAIR: (TestKind.PAIR,),
            TestKind.GROUP: (TestKind.GROUP, TestKind.PAIR),
            TestKind.ALL: (TestKind.ALL, TestKind.GROUP, TestKind.PAIR),
        }[kind]
        for k in chain:
            if k in self._baseline:
                return self._baseline[k]
        return math.inf  # nothing ever ran: every rail fails

    def _learn_baseline(self, kind: TestKind, results: list[TestResult]) -> None:
        if self.config.expected_gbps is not None or kind in self._baseline:
            return
        values = [v for res in results if not res.error for v in res.rail_gbps.values() if v > 0]
        if values:
            self._baseline[kind] = robust_baseline(values)

    def _judge(self, test: Test, result: TestResult) -> dict[int, tuple[float, bool]]:
        floor = self.config.min_fraction * self._baseline_for(test.kind)
        judged: dict[int, tuple[float, bool]] = {}
        for rail in test.rails:
            value = 0.0 if result.error else float(result.rail_gbps.get(rail, 0.0))
            judged[rail] = (value, value >= floor)
        return judged

    def _record(self, test: Test, judged: dict[int, tuple[float, bool]], error: str) -> None:
        values = {r: v for r, (v, _) in judged.items()}
        passed = {r: ok for r, (_, ok) in judged.items()}
        small = len(test.nodes) <= 3  # partners matter for the reasons of pair tests only
        for node in test.nodes:
            partners = tuple(n for n in test.nodes if n != node) if small else ()
            self._obs.setdefault(node, []).append(
                _Obs(test.test_id, test.kind, partners, values, passed, error)
            )

    # ------------------------------------------------------------ local

    def _plan_local(self, index: int) -> list[Test]:
        return [
            Test(
                test_id=f"r{index}-local-{node}",
                kind=TestKind.LOCAL,
                nodes=(node,),
                rails=(),
                purpose="DCGM diagnostics, burn-in and single-node NVLink all_reduce",
            )
            for node in self.layout.nodes
        ]

    def _observe_local(self, rnd: Round, results: list[TestResult]) -> None:
        tflops = [r.tflops for r in results if r.tflops is not None and not r.failed_gpus]
        median = statistics.median(tflops) if tflops else None
        cfg = self.config
        for test, res in zip(rnd.tests, results, strict=True):
            node = test.nodes[0]
            reasons: list[str] = []
            detail = f" ({res.error})" if res.error else ""
            for gpu in res.failed_gpus:
                reasons.append(
                    f"{node} GPU {gpu}: failed the node-local check{detail}: "
                    "drain the node and replace or reseat the GPU"
                )
            if res.error and not res.failed_gpus:
                reasons.append(f"{node}: the node-local check did not complete ({res.error})")
            if res.tflops is not None:
                self._local_tflops[node] = res.tflops
            if median and res.tflops is not None and not res.failed_gpus:
                ratio = res.tflops / median
                text = (
                    f"{node}: GEMM reached {res.tflops:.0f} TFLOPS per GPU, "
                    f"{(1 - ratio) * 100:.1f}% below the fleet median of {median:.0f}"
                )
                if ratio < cfg.compute_fail_fraction:
                    reasons.append(
                        text + ": a compute straggler; check clocks, power capping and cooling"
                    )
                elif ratio < cfg.compute_warn_fraction:
                    self.local_warn[node] = [text + ": watch it (3.5% below the fleet flags)"]
            if reasons:
                self.local_fail[node] = reasons
        self._phase = "pair"

    # ------------------------------------------------------------ pairs

    def _plan_pair(self, index: int) -> list[Test]:
        nodes = self._fabric_nodes()
        if len(nodes) < 2:
            for node in nodes:
                self.local_warn.setdefault(node, []).append(
                    f"{node}: not tested on the fabric: no other healthy node to pair it with"
                )
            self._phase = "all"
            return []
        groups: list[tuple[str, ...]] = []
        leftovers: list[str] = []
        by_unit: dict[tuple[str, ...], list[str]] = {}
        for node in nodes:
            by_unit.setdefault(self._unit_of[node], []).append(node)
        for members in by_unit.values():
            for i in range(0, len(members) - 1, 2):
                groups.append((members[i], members[i + 1]))
            if len(members) % 2:
                leftovers.append(members[-1])
        for i in range(0, len(leftovers) - 1, 2):
            groups.append((leftovers[i], leftovers[i + 1]))
        if len(leftovers) % 2:
            last = leftovers[-1]
            # An odd node out joins a pair of its own leaf group when there is one.
            home = [i for i, g in enumerate(groups) if self._unit_of[g[0]] == self._unit_of[last]]
            at = home[-1] if home else len(groups) - 1
            groups[at] = (*groups[at], last)
        return [
            Test(
                test_id=f"r{index}-pair-{i}",
                kind=TestKind.PAIR,
                nodes=group,
                rails=self.rails,
                purpose="two-node nccl-tests over every rail, busbw per rail",
            )
            for i, group in enumerate(groups)
        ]

    def _observe_pair(self, rnd: Round, results: list[TestResult]) -> None:
        self._learn_baseline(TestKind.PAIR, results)
        evidence: dict[tuple[str, int], list[tuple[bool, float, int]]] = {}
        for test, res in zip(rnd.tests, results, strict=True):
            judged = self._judge(test, res)
            self._record(test, judged, res.error)
            self._apply_pair(test, judged)
            if all(not ok for _, ok in judged.values()):
                continue  # a node-wide failure says nothing about one switch
            for rail, (value, ok) in judged.items():
                leaves = {self.layout.leaf_of[(n, rail)] for n in test.nodes}
                if len(leaves) == 1:
                    evidence.setdefault((leaves.pop(), rail), []).append(
                        (ok, value, len(test.nodes))
                    )
        # A rail that fails in every (and at least two) pair tests under one leaf
        # switch while the same pairs pass on their other rails: the switch.
        for (leaf, rail), outcomes in evidence.items():
            if len(outcomes) >= 2 and not any(ok for ok, _, _ in outcomes):
                if (leaf, rail) in self.leaf_good:
                    continue
                median = statistics.median(v for _, v, _ in outcomes)
                nics = sum(n for _, _, n in outcomes)
                self._blame_leaf(
                    leaf,
                    rail,
                    f"{leaf} (rail {rail}): all {len(outcomes)} pair tests under this switch "
                    f"failed on rail {rail} (median {_fmt(median)} against "
                    f"{_fmt(self._baseline_for(TestKind.PAIR))}) while passing on their other "
                    f"rails: check the switch (ports, firmware, cooling, power) before "
                    f"replacing {nics} NICs",
                )
        self._phase = "pair-retest"

    def _apply_pair(self, test: Test, judged: dict[int, tuple[float, bool]]) -> None:
        for rail, (_, ok) in judged.items():
            for node in test.nodes:
                if ok:
                    self.good.add((node, rail))
                    self.suspect.discard((node, rail))
                    self.leaf_good.add((self.layout.leaf_of[(node, rail)], rail))
                elif (node, rail) not in self.good:
                    self.suspect.add((node, rail))

    def _blame_leaf(self, leaf: str, rail: int, reason: str) -> None:
        self.leaf_bad.setdefault(leaf, {})[rail] = reason
        for node, r in self._leaf_ports[leaf]:
            if r == rail:
                self.suspect.discard((node, rail))
                self.bad.discard((node, rail))

    def _plan_pair_retest(self, index: int) -> list[Test]:
        todo: dict[str, set[int]] = {}
        for node, rail in list(self.suspect):
            if not self._still_suspect(node, rail):
                self.suspect.discard((node, rail))
            else:
                todo.setdefault(node, set()).add(rail)
        # Rails whose every test went through someone else's failed leaf switch
        # (a cross-leaf pair) were never judged: retest them the same way.
        for node in self._fabric_nodes():
            if node not in self._obs:
                continue
            for rail in self.rails:
                key = (node, rail)
                if (
                    key not in self.good
                    and key not in self.bad
                    and key not in self.suspect
                    and key not in self.nic_ambiguous
                    and key not in self._unverifiable
                    and not self._explained(node, rail)
                ):
                    todo.setdefault(node, set()).add(rail)
        if not todo:
            self._finish_node_level()
            self._phase = "group"
            return []
        busy = set(todo)
        used: set[str] = set()
        tests: list[Test] = []

        def usable(p: str, rails: set[int]) -> bool:
            return (
                p not in used
                and p not in busy
                and p not in self.local_fail
                and all((p, r) in self.good for r in rails)
            )

        def clean(p: str) -> bool:
            return all((p, r) in self.good for r in self.rails)

        fabric = self._fabric_nodes()
        for node in self._sorted(todo):
            rails = todo[node]
            home = self._unit_nodes[self._unit_of[node]]
            partner = (
                next((p for p in home if usable(p, rails) and clean(p)), None)
                or next((p for p in home if usable(p, rails)), None)
                or next((p for p in fabric if usable(p, rails) and clean(p)), None)
                or next((p for p in fabric if usable(p, rails)), None)
            )
            if partner is None:
                continue
            used.add(partner)
            test = Test(
                test_id=f"r{index}-retest-{len(tests)}",
                kind=TestKind.PAIR,
                nodes=(node, partner),
                rails=self.rails,
                purpose=(
                    f"retest {node} (failed on rail {', '.join(map(str, sorted(rails)))}) "
                    f"with {partner}, known good on those rails"
                ),
            )
            self._targets[test.test_id] = (node, frozenset(rails))
            tests.append(test)
        if not tests:
            # No partner known good on the failing rails is left: say so, don't guess.
            for node, rails in todo.items():
                for rail in rails:
                    if (node, rail) in self.suspect:
                        self.nic_ambiguous[(node, rail)] = self._ambiguous_reason(node, rail)
                        self.suspect.discard((node, rail))
                    else:
                        self._unverifiable.add((node, rail))
        return tests

    def _observe_pair_retest(self, rnd: Round, results: list[TestResult]) -> None:
        for test, res in zip(rnd.tests, results, strict=True):
            judged = self._judge(test, res)
            self._record(test, judged, res.error)
            node, rails = self._targets.pop(test.test_id)
            for rail, (_, ok) in judged.items():
                if ok:
                    for member in test.nodes:
                        self.good.add((member, rail))
                        self.suspect.discard((member, rail))
                elif rail in rails and not any(self._explained(m, rail) for m in test.nodes):
                    self.bad.add((node, rail))
                    self.suspect.discard((node, rail))

    def _finish_node_level(self) -> None:
        """Turn confirmed (node, rail) failures into node, NIC and leaf findings."""
        if self._node_level_done:
            return
        self._node_level_done = True

        def node_wide(node: str) -> bool:
            rails = [r for r in self.rails if not self._explained(node, r)]
            return len(rails) >= 2 and all((node, r) in self.bad for r in rails)

        wide = {n for n, _ in self.bad if node_wide(n)}
        # Every tested node on a leaf (at least two) failed the same rail with
        # known-good partners: one switch, not that many NICs.
        for leaf in sorted({self.layout.leaf_of[p] for p in self.bad}):
            by_rail: dict[int, list[str]] = {}
            for node, rail in self._leaf_ports[leaf]:
                if node in self.local_fail or node in wide:
                    continue
                if (node, rail) in self.bad or (node, rail) in self.good:
                    by_rail.setdefault(rail, []).append(node)
            for rail, nodes in by_rail.items():
                if len(nodes) >= 2 and all((n, rail) in self.bad for n in nodes):
                    self._blame_leaf(
                        leaf,
                        rail,
                        f"{leaf} (rail {rail}): all {len(nodes)} nodes on this switch failed on "
                        f"rail {rail} with partners known good on that rail: check the switch "
                        "(ports, firmware, cooling, power) before replacing their NICs",
                    )
        for node in self._sorted({n for n, _ in self.bad}):
            if node_wide(node):
                self.node_bad[node] = self._node_wide_reason(node)
            else:
                for rail in self.rails:
                    if (node, rail) in self.bad and not self._explained(node, rail):
                        self.nic_bad[(node, rail)] = self._nic_reason(node, rail)

    def _nic_reason(self, node: str, rail: int) -> str:
        obs = [o for o in self._obs.get(node, []) if o.kind is TestKind.PAIR and rail in o.values]
        fails = [o for o in obs if not o.passed[rail]]
        partners = self._sorted({p for o in fails for p in o.partners if (p, rail) in self.good})
        low = min((o.values[rail] for o in fails), default=0.0)
        others = [
            v
            for o in obs
            for r, v in o.values.items()
            if r != rail and o.passed.get(r) and not self._explained(node, r)
        ]
        other = statistics.median(others) if others else self._baseline_for(TestKind.PAIR)
        dead = " (no traffic: link down or NIC unusable)" if low == 0 else ""
        count = len(partners)
        leaf = self.layout.leaf_of[(node, rail)]
        peers = [
            n
            for n, r in self._leaf_ports[leaf]
            if r == rail and n != node and ((n, r) in self.good or (n, r) in self.bad)
        ]
        alone = (
            ""
            if peers
            else f"; it is the only tested node on {leaf}, so that switch port is as likely"
        )
        return (
            f"{node} rail {rail}: pair tests with {count} known-good partner"
            f"{'s' if count != 1 else ''} ({_join(partners)}) reached {_fmt(low)}{dead} on rail "
            f"{rail} against {_fmt(other)} on its other rails: check the NIC or cable of rail "
            f"{rail}{alone}"
        )

    def _node_wide_reason(self, node: str) -> str:
        rails = [r for r in self.rails if not self._explained(node, r)]
        obs = [o for o in self._obs.get(node, []) if o.kind is TestKind.PAIR]
        checked = [
            o for o in obs if all((p, r) in self.good for p in o.partners for r in rails)
        ] or obs
        values = [o.values[r] for o in checked for r in rails if r in o.values]
        value = statistics.median(values) if values else 0.0
        base = self._baseline_for(TestKind.PAIR)
        partners = self._sorted({p for o in checked for p in o.partners})
        below = (1 - value / base) * 100 if base and math.isfinite(base) else 100.0
        return (
            f"{node}: {_fmt(value)} on all {len(rails)} rails ({below:.0f}% below the "
            f"{_fmt(base)} baseline) with {_join(partners)} as partners: a node-wide "
            "bottleneck (PCIe link width or speed, NUMA or CPU binding, thermal throttling), "
            "not one NIC"
        )

    def _ambiguous_reason(self, node: str, rail: int) -> str:
        obs = [o for o in self._obs.get(node, []) if rail in o.values and not o.passed[rail]]
        partners = self._sorted({p for o in obs for p in o.partners})
        low = min((o.values[rail] for o in obs), default=0.0)
        return (
            f"{node} rail {rail}: reached {_fmt(low)} on rail {rail} with {_join(partners)}, and "
            "no partner known good on that rail was left to tell which node is at fault: "
            "retest it against a node that passed"
        )

    # ------------------------------------------------------------ groups

    def _healthy(self) -> list[str]:
        bad_nodes = {n for n, _ in self.nic_bad} | {n for n, _ in self.nic_ambiguous}
        return [
            n
            for n in self._fabric_nodes()
            if n not in self.node_bad and n not in bad_nodes and n in self._obs
        ]

    def _healthy_units(self) -> list[tuple[tuple[str, ...], list[str]]]:
        by_unit: dict[tuple[str, ...], list[str]] = {}
        for node in self._healthy():
            by_unit.setdefault(self._unit_of[node], []).append(node)
        return list(by_unit.items())

    def _group_rails(self, units: Sequence[tuple[str, ...]]) -> tuple[int, ...]:
        return tuple(
            r for r in self.rails if all(r not in self.leaf_bad.get(u[r], {}) for u in units)
        )

    def _plan_group(self, index: int) -> list[Test]:
        units = self._healthy_units()
        if len(units) < 2:
            self._phase = "all"
            return []
        # Pairs of leaf groups; with an odd count the last group waits for the
        # retest round, where it meets a group known to be good.
        tests: list[Test] = []
        for i in range(0, len(units) - 1, 2):
            (key_a, nodes_a), (key_b, nodes_b) = units[i], units[i + 1]
            test = self._group_test(index, len(tests), key_a, nodes_a, key_b, nodes_b, None)
            if test is not None:
                tests.append(test)
        if not tests:
            self._phase = "all"
        return tests

    def _allowed_rails(self, key: tuple[str, ...]) -> set[int]:
        return {r for r in self.rails if r not in self.leaf_bad.get(key[r], {})}

    def _group_test(
        self,
        index: int,
        number: int,
        key_a: tuple[str, ...],
        nodes_a: list[str],
        key_b: tuple[str, ...],
        nodes_b: list[str],
        rails: set[int] | None,
    ) -> Test | None:
        allowed = self._allowed_rails(key_a) & self._allowed_rails(key_b)
        chosen = tuple(sorted(allowed if rails is None else rails & allowed))
        if not chosen:
            return None
        self._group_members[f"r{index}-group-{number}"] = (key_a, key_b)
        self._uplink_tried.add(frozenset((key_a, key_b)))
        return Test(
            test_id=f"r{index}-group-{number}",
            kind=TestKind.GROUP,
            nodes=(*nodes_a, *nodes_b),
            rails=chosen,
            purpose=f"leaf groups {key_a[0]} and {key_b[0]} together: traffic crosses the spine",
        )

    def _observe_group(self, rnd: Round, results: list[TestResult]) -> None:
        self._learn_baseline(TestKind.GROUP, results)
        for test, res in zip(rnd.tests, results, strict=True):
            judged = self._judge(test, res)
            self._record(test, judged, res.error)
            keys = self._group_members.pop(test.test_id)
            for rail, (value, ok) in judged.items():
                if ok:
                    self.uplink_good.update((key[rail], rail) for key in keys)
                else:
                    self._uplink_fails.append((keys, rail, value))
        self._infer_uplinks()
        self._phase = "group-retest"

    def _infer_uplinks(self) -> None:
        """A failed multi-leaf test whose other leaves are all known good on that
        rail blames the one leaf left (its uplinks)."""
        base = self._baseline_for(TestKind.GROUP)
        for keys, rail, value in self._uplink_fails:
            unknown = [k for k in keys if (k[rail], rail) not in self.uplink_good]
            if len(unknown) != 1 or rail in self.uplink_bad.get(unknown[0][rail], {}):
                continue
            leaf = unknown[0][rail]
            partners = [k[rail] for k in keys if k is not unknown[0]]
            self.uplink_bad.setdefault(leaf, {})[rail] = (
                f"{leaf} (rail {rail}): a multi-leaf test with {_join(partners)} (known good on "
                f"rail {rail}) reached {_fmt(value)} on rail {rail} against {_fmt(base)} while "
                "pair tests under it passed: check its uplinks to the spine (cables, optics, "
                "port error counters)"
            )

    def _plan_group_retest(self, index: int) -> list[Test]:
        units = dict(self._healthy_units())

        def needs(key: tuple[str, ...]) -> set[int]:
            return {
                r
                for r in self._allowed_rails(key)
                if (key[r], r) not in self.uplink_good and r not in self.uplink_bad.get(key[r], {})
            }

        todo = {key: rails for key in units if (rails := needs(key))}
        if not todo:
            self._phase = "all"
            return []
        used: set[tuple[str, ...]] = set()
        tests: list[Test] = []
        for key, rails in todo.items():
            if key in used:
                continue
            partner = next(
                (
                    k
                    for k in units
                    if k != key
                    and k not in used
                    and k not in todo
                    and all((k[r], r) in self.uplink_good for r in rails)
                ),
                None,
            )
            both = set(rails)
            if partner is None:
                # No group known good on these rails: pair two undecided groups that
                # have not met yet; a later pass on either side decides the other.
                partner = next(
                    (
                        k
                        for k in todo
                        if k != key
                        and k not in used
                        and frozenset((key, k)) not in self._uplink_tried
                    ),
                    None,
                )
                if partner is None:
                    continue
                both |= todo[partner]
            test = self._group_test(
                index, len(tests), key, units[key], partner, units[partner], both
            )
            if test is None:
                continue
            used.update((key, partner))
            tests.append(test)
        if not tests:
            failed = {(k[r], r) for keys, r, _ in self._uplink_fails for k in keys}
            for key, rails in todo.items():
                for rail in rails:
                    if (key[rail], rail) not in failed:
                        continue  # never failed, only not verified: the leaf verdict says so
                    self.uplink_ambiguous.setdefault(key[rail], {})[rail] = (
                        f"{key[rail]} (rail {rail}): a multi-leaf test including this switch "
                        f"failed on rail {rail} and no leaf group known good on that rail was "
                        "left to tell which switch's uplinks are at fault: retest it against "
                        "a group that passed"
                    )
            self._phase = "all"
        return tests

    def _observe_group_retest(self, rnd: Round, results: list[TestResult]) -> None:
        for test, res in zip(rnd.tests, results, strict=True):
            judged = self._judge(test, res)
            self._record(test, judged, res.error)
            keys = self._group_members.pop(test.test_id)
            for rail, (value, ok) in judged.items():
                if ok:
                    self.uplink_good.update((key[rail], rail) for key in keys)
                else:
                    self._uplink_fails.append((keys, rail, value))
        self._infer_uplinks()

    # ------------------------------------------------------------ all

    def _plan_all(self, index: int) -> list[Test]:
        self._finish_node_level()
        blocked = set(self.leaf_bad) | set(self.uplink_bad) | set(self.uplink_ambiguous)
        nodes = [
            n
            for n in self._healthy()
            if not any(self.layout.leaf_of[(n, r)] in blocked for r in self.rails)
        ]
        if len(nodes) < 2:
            self._phase = "done"
            return []
        return [
            Test(
                test_id=f"r{index}-all",
                kind=TestKind.ALL,
                nodes=tuple(nodes),
                rails=self.rails,
                purpose="every node still considered healthy in one test",
            )
        ]

    def _observe_all(self, rnd: Round, results: list[TestResult]) -> None:
        self._learn_baseline(TestKind.ALL, results)
        test, res = rnd.tests[0], results[0]
        judged = self._judge(test, res)
        self._record(test, judged, res.error)
        failed = [r for r, (_, ok) in judged.items() if not ok]
        subject = f"cluster ({len(test.nodes)} nodes)"
        metrics = {"scope": "cluster", "nodes": len(test.nodes)}
        metrics["rail_gbps"] = {r: v for r, (v, _) in judged.items()}
        if failed:
            self.cluster = Verdict(
                subject,
                VERDICT_KIND,
                Status.FAIL,
                [
                    f"the whole-cluster test failed on rail {', '.join(map(str, failed))} after "
                    "every smaller test passed: a fault that shows only at full scale (spine, "
                    "routing, SHARP); rerun it on halves of the cluster to narrow it down"
                    + (f" ({res.error})" if res.error else "")
                ],
                metrics,
            )
        else:
            self.cluster = Verdict(
                subject,
                VERDICT_KIND,
                Status.PASS,
                [f"the whole-cluster test passed on all {len(judged)} rails"],
                metrics,
            )
        self._phase = "done"

    # ------------------------------------------------------------ verdicts

    def verdicts(self, include_passing_nics: bool = True) -> list[Verdict]:
        """Per node, per NIC (node, rail), per leaf switch, and the whole cluster."""
        self._finish_node_level()
        out: list[Verdict] = []
        out.extend(self._node_verdicts())
        out.extend(self._nic_verdicts(include_passing_nics))
        out.extend(self._leaf_verdicts())
        if self.cluster is not None:
            out.append(self.cluster)
        return out

    def _node_verdicts(self) -> list[Verdict]:
        nics_by_node: dict[str, list[int]] = {}
        for node, rail in self.nic_bad:
            nics_by_node.setdefault(node, []).append(rail)
        ambiguous_by_node: dict[str, list[int]] = {}
        for node, rail in self.nic_ambiguous:
            ambiguous_by_node.setdefault(node, []).append(rail)
        out: list[Verdict] = []
        for node in self.layout.nodes:
            metrics: dict[str, object] = {"scope": "node", "node": node}
            if node in self._local_tflops:
                metrics["tflops"] = self._local_tflops[node]
            if node in self.local_fail:
                out.append(
                    Verdict(node, VERDICT_KIND, Status.FAIL, list(self.local_fail[node]), metrics)
                )
                continue
            if node in self.node_bad:
                out.append(Verdict(node, VERDICT_KIND, Status.FAIL, [self.node_bad[node]], metrics))
                continue
            if node in nics_by_node:
                rails = sorted(nics_by_node[node])
                reasons = [self.nic_bad[(node, r)] for r in rails]
                out.append(Verdict(node, VERDICT_KIND, Status.FAIL, reasons, metrics))
                continue
            notes = list(self.local_warn.get(node, []))
            status = Status.WARN if notes else Status.PASS
            if node in ambiguous_by_node:
                status = Status.WARN
                notes += [self.nic_ambiguous[(node, r)] for r in sorted(ambiguous_by_node[node])]
            for rail in self.rails:
                leaf = self.layout.leaf_of[(node, rail)]
                if rail in self.leaf_bad.get(leaf, {}) or rail in self.uplink_bad.get(leaf, {}):
                    notes.append(
                        f"{node}: rail {rail} not verified beyond its failed leaf switch {leaf}"
                    )
            unverified = [
                r for r in self.rails if (node, r) not in self.good and not self._explained(node, r)
            ]
            if unverified and node in self._obs and status is Status.PASS:
                status = Status.WARN
                notes.append(
                    f"{node}: rail {', '.join(map(str, unverified))} not verified: every test "
                    "on it went through a failed leaf switch"
                )
            if status is Status.PASS:
                tested = sum(1 for r in self.rails if (node, r) in self.good)
                notes.insert(
                    0,
                    f"{node}: passed the node-local check and fabric tests on "
                    f"{tested} of {len(self.rails)} rails",
                )
            out.append(Verdict(node, VERDICT_KIND, status, notes, metrics))
        return out

    def _nic_verdicts(self, include_passing: bool) -> list[Verdict]:
        out: list[Verdict] = []
        for node in self.layout.nodes:
            if node in self.local_fail or node in self.node_bad:
                continue
            for rail in self.rails:
                subject = f"{node} rail {rail}"
                metrics = {
                    "scope": "nic",
                    "node": node,
                    "rail": rail,
                    "leaf": self.layout.leaf_of[(node, rail)],
                }
                if (node, rail) in self.nic_bad:
                    out.append(
                        Verdict(
                            subject,
                            VERDICT_KIND,
                            Status.FAIL,
                            [self.nic_bad[(node, rail)]],
                            metrics,
                        )
                    )
                elif (node, rail) in self.nic_ambiguous:
                    reason = self.nic_ambiguous[(node, rail)]
                    out.append(Verdict(subject, VERDICT_KIND, Status.WARN, [reason], metrics))
                elif include_passing and (node, rail) in self.good:
                    out.append(
                        Verdict(
                            subject,
                            VERDICT_KIND,
                            Status.PASS,
                            [f"{subject}: passed pair tests"],
                            metrics,
                        )
                    )
        return out

    def _leaf_verdicts(self) -> list[Verdict]:
        out: list[Verdict] = []
        for leaf in sorted(self._leaf_ports):
            rails = sorted({r for _, r in self._leaf_ports[leaf]})
            metrics = {"scope": "leaf", "leaf": leaf, "rails": rails}
            fails = [self.leaf_bad.get(leaf, {}).get(r) for r in rails]
            fails += [self.uplink_bad.get(leaf, {}).get(r) for r in rails]
            reasons = [f for f in fails if f]
            if reasons:
                out.append(Verdict(leaf, VERDICT_KIND, Status.FAIL, reasons, metrics))
                continue
            warns = [self.uplink_ambiguous.get(leaf, {}).get(r) for r in rails]
            if any(warns):
                out.append(
                    Verdict(leaf, VERDICT_KIND, Status.WARN, [w for w in warns if w], metrics)
                )
                continue
            ports_ok = all((leaf, r) in self.leaf_good for r in rails)
            uplinks_ok = all((leaf, r) in self.uplink_good for r in rails)
            if ports_ok:
                text = f"{leaf}: pair tests under it passed"
                if uplinks_ok:
                    text += ", and so did multi-leaf tests through its uplinks"
                out.append(Verdict(leaf, VERDICT_KIND, Status.PASS, [text], metrics))
            else:
                out.append(
                    Verdict(
                        leaf,
                        VERDICT_KIND,
                        Status.WARN,
                        [f"{leaf}: not verified: no passing test went through it"],
                        metrics,
                    )
                )
        return out


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


def _check_disjoint(rnd: Round) -> None:
    seen: set[str] = set()
    for test in rnd.tests:
        for node in test.nodes:
            if node in seen:
                raise AssertionError(f"round {rnd.index}: {node} is in two tests")
            seen.add(node)
