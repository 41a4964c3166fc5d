"""What the isolation planner knows so far: baselines, noise, every observation, and
the findings drawn from them.

The phases (`gpufleet.verify.isolation_phases`) add to an `Evidence`; the verdicts
(`gpufleet.verify.isolation_verdicts`) read it. Judging a fabric test is done
here, once for every phase: each rail against the rail floor, and the median of
the rails (a node-wide slowdown) against the median floor, both widened by the
measurement noise (docs/isolation.md, "Noise and the confidence rule").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gpufleet.verify.isolation_model import (
    FabricLayout,
    IsolationConfig,
    Test,
    TestKind,
    TestResult,
    fmt_gbps,
    join_names,
    noisy_baseline,
    tolerance,
)
from gpufleet.verify.verdict import Verdict
from gpufleet.verify.wording import below

Port = tuple[str, int]  # (node, rail)
UnitKey = tuple[str, ...]  # the leaf switch of a node on each rail: its leaf group


@dataclass(frozen=True)
class Judged:
    """One fabric test judged: each rail's value and outcome, and the rails' median."""

    test: Test
    values: dict[int, float]
    passed: dict[int, bool]
    median: float
    fast: bool  # the median is within the noise of the baseline: no node-wide slowdown
    error: str
    # Proof lines, above the pass lines: a rail or median this high proves its nodes good
    # (docs/isolation.md, the confidence rule).
    proven: dict[int, bool] = field(default_factory=dict)
    quick: bool = False

    @property
    def failed(self) -> list[int]:
        return [r for r, ok in self.passed.items() if not ok]


@dataclass(frozen=True)
class Obs:
    """One fabric test as seen from one node: partners and per-rail outcome."""

    test_id: str
    kind: TestKind
    partners: tuple[str, ...]
    values: dict[int, float]
    passed: dict[int, bool]
    median: float
    fast: bool
    error: str


@dataclass(frozen=True)
class Target:
    """What a retest is for: a node's suspect rails and/or a node-wide slowdown.
    `proven` says the partner was known good on those rails (and fast) beforehand."""

    node: str
    rails: frozenset[int]
    node_wide: bool
    proven: bool


@dataclass(frozen=True)
class Candidates:
    """A fault localized to a set of subjects and no further."""

    subjects: tuple[str, ...]
    reason: str


def _proof_line(fail_line: float, noise: float, samples: Sequence[float]) -> float:
    """The rate a partner must have shown to be trusted: high enough that, with the
    noise of a result (of a median of `samples` values), it could not pull a test
    below the fail line by itself: fail line / (1 - 2 x noise), and never above the
    baseline the fail line was drawn from."""
    spread = noise if len(samples) <= 1 else noise * 1.25 / math.sqrt(len(samples))
    return fail_line / max(0.5, 1 - 2 * spread)


class Evidence:
    """Observations and findings of one isolation run."""

    def __init__(self, layout: FabricLayout, config: IsolationConfig) -> None:
        self.layout = layout
        self.config = config
        self.rails: tuple[int, ...] = tuple(range(layout.rails))
        self.order = {n: i for i, n in enumerate(layout.nodes)}
        self.unit_of: dict[str, UnitKey] = {
            n: tuple(layout.leaf_of[(n, r)] for r in self.rails) for n in layout.nodes
        }
        self.unit_nodes: dict[UnitKey, list[str]] = {}
        self.leaf_ports: dict[str, list[Port]] = {}
        for node in layout.nodes:
            self.unit_nodes.setdefault(self.unit_of[node], []).append(node)
            for rail in self.rails:
                self.leaf_ports.setdefault(layout.leaf_of[(node, rail)], []).append((node, rail))
        self.baselines: dict[TestKind, float] = {}
        self.pools: dict[TestKind, list[list[float]]] = {}
        self.noise_by_kind: dict[TestKind, float] = {}
        self.noise_estimate = 0.0
        self.obs: dict[str, list[Obs]] = {}
        self.tried: set[frozenset[str]] = set()
        self.pair_tests: list[Judged] = []  # every two- or three-node test, judged anew
        self.fabric_results: list[tuple[Test, TestResult]] = []
        # Node-local checks.
        self.local_fail: dict[str, list[str]] = {}
        self.local_warn: dict[str, list[str]] = {}
        self.local_tflops: dict[str, list[float]] = {}
        self.compute_median: float | None = None
        self.compute_noise = 0.0
        self.compute_upper = 0  # results above the median the compute noise comes from
        self.compute_lowest: list[tuple[str, float]] = []  # the two lowest first results
        self.compute_suspects: set[str] = set()
        self.late_nodes: set[str] = set()  # cleared after the pair round: still to be paired
        # Ports and nodes on the fabric.
        self.good: set[Port] = set()
        self.suspect: set[Port] = set()
        self.bad: set[Port] = set()
        self.fast: set[str] = set()
        self.slow: set[str] = set()
        self.slow_bad: set[str] = set()
        self.node_bad: dict[str, str] = {}
        self.nic_bad: dict[Port, str] = {}
        self.nic_ambiguous: dict[Port, str] = {}
        self.unverifiable: set[Port] = set()
        self.targets: dict[str, list[Target]] = {}
        self.retest_rounds = 0
        self.calibrated: set[str] = set()
        # Switches.
        self.leaf_good: set[tuple[str, int]] = set()
        self.leaf_bad: dict[str, dict[int, str]] = {}
        self.uplink_good: set[tuple[str, int]] = set()
        self.uplink_bad: dict[str, dict[int, str]] = {}
        self.uplink_ambiguous: dict[str, dict[int, str]] = {}
        self.uplink_fails: list[tuple[tuple[UnitKey, ...], int, float]] = []
        self.uplink_tried: set[frozenset[UnitKey]] = set()
        self.group_members: dict[str, tuple[UnitKey, ...]] = {}
        self.candidates: list[Candidates] = []
        self.cluster: Verdict | None = None
        self.node_level_done = False

    # ------------------------------------------------------------ nodes

    def sorted(self, nodes: Iterable[str]) -> list[str]:
        return sorted(nodes, key=self.order.__getitem__)

    def fabric_nodes(self) -> list[str]:
        """Nodes that take part in fabric tests: not failed or pending node-locally."""
        return [
            n
            for n in self.layout.nodes
            if n not in self.local_fail and n not in self.compute_suspects
        ]

    def leaf(self, node: str, rail: int) -> str:
        return self.layout.leaf_of[(node, rail)]

    def explained(self, node: str, rail: int) -> bool:
        """A failure on `rail` that the failed leaf switch on the node's path explains."""
        return rail in self.leaf_bad.get(self.leaf(node, rail), {})

    def still_suspect(self, node: str, rail: int) -> bool:
        """A failure on `rail` that no failed leaf switch on the path explains."""
        if (node, rail) in self.good:
            return False
        return any(
            rail in o.passed
            and not o.passed[rail]
            and not any(self.explained(m, rail) for m in (node, *o.partners))
            for o in self.obs.get(node, [])
        )

    def proven(self, node: str, rails: Iterable[int]) -> bool:
        """Known good on these rails and without a node-wide slowdown: a partner to trust."""
        return node in self.fast and all((node, r) in self.good for r in rails)

    # ------------------------------------------------------------ judging

    def noise(self) -> float:
        return max(self.config.noise, self.noise_estimate)

    def baseline_for(self, kind: TestKind) -> float:
        if self.config.expected_gbps is not None:
            return self.config.expected_gbps
        chain = {
            TestKind.PAIR: (TestKind.PAIR,),
            TestKind.GROUP: (TestKind.GROUP, TestKind.PAIR),
            TestKind.ALL: (TestKind.ALL, TestKind.GROUP, TestKind.PAIR),
        }[kind]
        for k in chain:
            if k in self.baselines:
                return self.baselines[k]
        return math.inf  # nothing ever ran: every rail fails

    def learn(self, kind: TestKind, results: Sequence[TestResult]) -> None:
        """Baseline and noise from every result of a test kind so far (more results,
        better estimates; a round of two tests alone gives a poor one)."""
        pool = self.pools.setdefault(kind, [])
        pool.extend(
            [v for v in res.rail_gbps.values() if v > 0]
            for res in results
            if not res.error and any(v > 0 for v in res.rail_gbps.values())
        )
        if not pool:
            return
        base, noise = noisy_baseline(pool)
        if self.config.expected_gbps is None:
            self.baselines[kind] = base
        self.noise_by_kind[kind] = noise
        self.noise_estimate = max(self.noise_by_kind.values())

    def rail_floor(self, kind: TestKind) -> float:
        return self.baseline_for(kind) * (1 - tolerance(self.config.min_fraction, self.noise()))

    def judge(self, test: Test, result: TestResult) -> Judged:
        base = self.baseline_for(test.kind)
        floor = self.rail_floor(test.kind)
        values = {
            r: 0.0 if result.error else float(result.rail_gbps.get(r, 0.0)) for r in test.rails
        }
        # A node-wide slowdown moves every rail: the median of the rails that did not
        # fail outright (within 80% of the best; failed links and leaves are far below).
        top = max(values.values(), default=0.0)
        kept = [v for v in values.values() if v >= 0.8 * top]
        median = statistics.median(kept) if kept else 0.0
        noise = self.noise()
        spread = tolerance(self.config.min_fraction, noise, samples=len(kept))
        median_floor = base * (1 - spread)
        # Fewer than three rails cannot tell a slow node from a slow rail: no verdict.
        few = len(values) < 3
        fast = not result.error and (few or median >= median_floor)
        quick = not result.error and (few or median >= _proof_line(median_floor, noise, kept))
        passed = {r: v >= floor for r, v in values.items()}
        # A rail far below the floor is a failed link; a partner merely slow on every
        # rail is what the proof line for the median keeps out (`proven` needs both).
        proven = {r: ok and not result.error for r, ok in passed.items()}
        return Judged(test, values, passed, median, fast, result.error, proven, quick)

    def record(self, judged: Judged) -> None:
        test = judged.test
        small = len(test.nodes) <= 3  # partners matter for the reasons of pair tests only
        if small:
            self.tried.add(frozenset(test.nodes))
        for node in test.nodes:
            partners = tuple(n for n in test.nodes if n != node) if small else ()
            self.obs.setdefault(node, []).append(
                Obs(
                    test.test_id, test.kind, partners, judged.values, judged.passed,
                    judged.median, judged.fast, judged.error,
                )
            )  # fmt: skip

    def add(self, results: Sequence[tuple[Test, TestResult]]) -> list[Judged]:
        """Take a round's fabric results: learn baselines and noise from them, then judge
        every test so far anew (a first round of a few tests, all slow, can set the
        baseline too low; what it proved must not outlive a better baseline)."""
        for kind in {t.kind for t, _ in results}:
            self.learn(kind, [r for t, r in results if t.kind is kind])
        self.fabric_results.extend(results)
        self.rejudge()
        return [self.judge(t, r) for t, r in results]

    def rejudge(self) -> None:
        """Observations, proofs (good ports, fast nodes, good leaves) and suspects from
        every fabric test so far, against the current baselines and noise."""
        self.obs.clear()
        self.good.clear()
        self.fast.clear()
        self.leaf_good.clear()
        self.pair_tests = []
        judged = [self.judge(t, r) for t, r in self.fabric_results]
        for j in judged:
            self.record(j)
            if j.test.kind is TestKind.PAIR:
                self.pair_tests.append(j)
                self._apply_passes(j)
        self.suspect = {
            (node, rail)
            for j in self.pair_tests
            for rail in j.failed
            for node in j.test.nodes
            if (node, rail) not in self.good and (node, rail) not in self.bad
        } - set(self.nic_ambiguous)
        self.slow = {
            n
            for j in self.pair_tests
            if not j.fast
            for n in j.test.nodes
            if n not in self.fast and n not in self.slow_bad
        }

    def _apply_passes(self, judged: Judged) -> None:
        """What a two- or three-node test proves: rails above the proof line are good
        for every member, a median above it clears every member of a slowdown."""
        for rail, ok in judged.proven.items():
            if ok:
                for node in judged.test.nodes:
                    self.good.add((node, rail))
                    self.leaf_good.add((self.leaf(node, rail), rail))
        if judged.quick:
            self.fast.update(judged.test.nodes)

    def blame_leaf(self, leaf: str, rail: int, reason: str) -> None:
        self.leaf_bad.setdefault(leaf, {})[rail] = reason
        for node, r in self.leaf_ports[leaf]:
            if r == rail:
                self.suspect.discard((node, rail))
                self.bad.discard((node, rail))

    # ------------------------------------------------------------ reasons

    def nic_reason(self, node: str, rail: int) -> str:
        obs = [o for o in self.obs.get(node, []) if o.kind is TestKind.PAIR and rail in o.values]
        fails = [o for o in obs if not o.passed[rail]]
        partners = self.sorted({p for o in fails for p in o.partners if (p, rail) in self.good})
        low = min((o.values[rail] for o in fails), default=0.0)
        others = [
            v
            for o in obs
            for r, v in o.values.items()
            if r != rail and o.passed.get(r) and not self.explained(node, r)
        ]
        other = statistics.median(others) if others else self.baseline_for(TestKind.PAIR)
        dead = " (no traffic: link down or NIC unusable)" if low == 0 else ""
        count = len(partners)
        return (
            f"{node} rail {rail}: pair tests with {count} known-good partner"
            f"{'s' if count != 1 else ''} ({join_names(partners)}) reached {fmt_gbps(low)}{dead} "
            f"on rail {rail} against {fmt_gbps(other)} on its other rails: check the NIC or "
            f"cable of rail {rail}"
        )

    def node_wide_reason(self, node: str) -> str:
        rails = [r for r in self.rails if not self.explained(node, r)]
        obs = [o for o in self.obs.get(node, []) if o.kind is TestKind.PAIR]
        checked = [o for o in obs if all(self.proven(p, rails) for p in o.partners)] or obs
        values = [o.values[r] for o in checked for r in rails if r in o.values]
        value = statistics.median(values) if values else 0.0
        base = self.baseline_for(TestKind.PAIR)
        partners = self.sorted({p for o in checked for p in o.partners})
        distance = (
            below(value, base, f"the {fmt_gbps(base)} baseline")
            if base and math.isfinite(base)
            else "far below the baseline"
        )
        return (
            f"{node}: {fmt_gbps(value)} on all {len(rails)} rails ({distance}) with "
            f"{join_names(partners)} as partners: a node-wide bottleneck (PCIe link width or "
            "speed, NUMA or CPU binding, thermal throttling), not one NIC"
        )

    def ambiguous_reason(self, node: str, rail: int) -> str:
        obs = [o for o in self.obs.get(node, []) if rail in o.values and not o.passed[rail]]
        partners = self.sorted({p for o in obs for p in o.partners})
        low = min((o.values[rail] for o in obs), default=0.0)
        return (
            f"{node} rail {rail}: reached {fmt_gbps(low)} on rail {rail} with "
            f"{join_names(partners)}, and no partner known good on that rail was left to tell "
            "which node is at fault: retest it against a node that passed"
        )
