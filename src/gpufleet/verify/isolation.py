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

Measurements are noisy: limits widen with the noise (given in `IsolationConfig`
or estimated from the results), and nothing is blamed on one measurement: a
port, node, compute straggler or uplink is blamed after two failing
measurements, the later one with partners proven good. What cannot be told
apart that way is reported as candidates ("cannot localize further").

The planner is adaptive and knows nothing about Slurm: `plan_next_round()`
returns a `Round` (tests with node sets and rails), the caller runs the tests
(the simulator in `gpufleet.verify.simulate`, later Slurm jobs) and hands the
results to `observe()`; `verdicts()` gives one `Verdict` per node, NIC (node,
rail), leaf switch and set of candidates. The phases are in
`gpufleet.verify.isolation_phases`, what they know in `isolation_state`, the
verdicts in `isolation_verdicts`, the vocabulary in `isolation_model`.
"""

from __future__ import annotations

from collections.abc import Iterable

from gpufleet.errors import Problem, UserError
from gpufleet.verify.isolation_model import (
    VERDICT_KIND,
    FabricLayout,
    IsolationConfig,
    Round,
    Test,
    TestKind,
    TestResult,
    estimate_noise,
    noisy_baseline,
    rail_optimized_layout,
    robust_baseline,
    tolerance,
    units_layout,
    validate_layout,
)
from gpufleet.verify.isolation_phases import AFTER_EMPTY, ORDER, PHASES, finish_node_level
from gpufleet.verify.isolation_state import Evidence, Port
from gpufleet.verify.isolation_verdicts import all_verdicts
from gpufleet.verify.verdict import Verdict

__all__ = [
    "PHASES",
    "VERDICT_KIND",
    "FabricLayout",
    "IsolationConfig",
    "IsolationPlanner",
    "Round",
    "Test",
    "TestKind",
    "TestResult",
    "estimate_noise",
    "noisy_baseline",
    "rail_optimized_layout",
    "robust_baseline",
    "tolerance",
    "units_layout",
    "validate_layout",
]


class IsolationPlanner:
    """Adaptive planner: alternate `plan_next_round()` and `observe(results)`."""

    def __init__(self, layout: FabricLayout, config: IsolationConfig | None = None) -> None:
        validate_layout(layout)
        self.layout = layout
        self.config = config or IsolationConfig()
        self.evidence = Evidence(layout, self.config)
        self.history: list[tuple[Round, list[TestResult]]] = []
        self._phase = ORDER[0]
        self._pending: Round | None = None

    @property
    def done(self) -> bool:
        return self._phase == "done"

    @property
    def phase(self) -> str:
        return self._phase

    @property
    def suspect(self) -> set[Port]:
        """(node, rail) pairs that failed a test and are not decided yet."""
        return self.evidence.suspect

    def plan_next_round(self) -> Round | None:
        """The next round of tests, or None when isolation is finished."""
        if self._pending is not None:
            raise RuntimeError(f"round {self._pending.index} still waits for observe()")
        index = len(self.history) + 1
        while self._phase != "done":
            tests = PHASES[self._phase].plan(self.evidence, index)
            if tests:
                rnd = Round(index=index, phase=self._phase, tests=tuple(tests))
                _check_disjoint(rnd)
                self._pending = rnd
                return rnd
            self._phase = AFTER_EMPTY[self._phase]
        finish_node_level(self.evidence)
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
        ev = self.evidence
        fabric = [
            (t, r) for t, r in zip(rnd.tests, ordered, strict=True) if t.kind is not TestKind.LOCAL
        ]
        local = [
            (t, r) for t, r in zip(rnd.tests, ordered, strict=True) if t.kind is TestKind.LOCAL
        ]
        judged = ev.add(fabric)
        phase = PHASES[rnd.phase]
        phase.observe(ev, judged, local)
        self._phase = phase.next(ev)

    def verdicts(self, include_passing_nics: bool = True) -> list[Verdict]:
        """Per node, per NIC (node, rail), per leaf switch, per set of candidates, and
        the whole cluster."""
        finish_node_level(self.evidence)
        return all_verdicts(self.evidence, include_passing_nics)


def _check_disjoint(rnd: Round) -> None:
    seen: set[str] = set()
    for test in rnd.tests:
        for node in test.nodes:
            if node in seen:
                raise AssertionError(f"round {rnd.index}: {node} is in two tests")
            seen.add(node)
