"""A synthetic cluster with injected faults, to measure the isolation planner.

`SimCluster` answers the tests of a `Round` the way the real jobs would report
them (per-rail busbw, failed GPUs, GEMM TFLOPS) with measurement noise;
`run_adaptive` drives `IsolationPlanner` against it and `run_naive` runs the
naive plan (whole cluster, then every node against one reference node, one
pair at a time). `score` compares the verdicts with the injected faults.

Fault model (one fault per node; a NIC fault never sits behind a faulty leaf
on the same rail, so no fault hides another):

- gpu: one GPU fails the node-local diagnostics; any NCCL test with the node
  errors out (a GPU that fell off the bus or reports a fatal Xid).
- nic: one rail of a node is down (0 GB/s) or trained low / retransmitting
  (25-60% of the healthy rate).
- straggler: a node 10-20% slow, either in compute (GEMM) or in bandwidth on
  every rail (a PCIe link trained at lower width or speed, NUMA binding).
- leaf: a leaf switch either degrades its node ports (30-70% on every node of
  that rail and scalable unit) or its uplinks to the spine (50-80%, visible
  only in tests that span several leaves and load the uplinks; two-node
  tests do not). Uplink faults are injected only with three or more leaf
  groups: with two, no end-to-end test can tell which side is at fault.

Cost model (seconds; defaults in `CostModel`, each with its source or marked
as an assumption): a round costs its longest test plus a scheduling overhead,
because its tests run in parallel.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gpufleet.errors import Problem, UserError
from gpufleet.verify.isolation import (
    FabricLayout,
    IsolationConfig,
    IsolationPlanner,
    Round,
    Test,
    TestKind,
    TestResult,
)
from gpufleet.verify.verdict import Status, Verdict

# One 400G NDR ConnectX-7 NIC carries 46-49 GB/s through NCCL (NVIDIA/nccl-tests
# issue 290); the simulated healthy rail reads 48 GB/s.
NOMINAL_RAIL_GBPS = 48.0
# Achievable BF16 GEMM on an H100 SXM: about 790 TFLOPS (shared/reference notes).
NOMINAL_TFLOPS = 790.0


class FaultKind(StrEnum):
    GPU = "gpu"
    NIC = "nic"
    STRAGGLER = "straggler"
    LEAF = "leaf"


@dataclass(frozen=True)
class Fault:
    """One injected fault. `factor` scales the affected rate (0 = dead)."""

    kind: FaultKind
    node: str = ""
    rail: int = -1
    gpu: int = -1
    leaf: str = ""
    mode: str = ""  # straggler: compute | network; leaf: ports | uplink; nic: down | degraded
    factor: float = 1.0

    @property
    def subject(self) -> str:
        """The verdict subject that identifies this fault."""
        if self.kind is FaultKind.NIC:
            return f"{self.node} rail {self.rail}"
        if self.kind is FaultKind.LEAF:
            return self.leaf
        return self.node

    def describe(self) -> str:
        if self.kind is FaultKind.GPU:
            return f"{self.node} GPU {self.gpu} fails"
        if self.kind is FaultKind.NIC:
            return f"{self.node} rail {self.rail} NIC/cable {self.mode} (x{self.factor:.2f})"
        if self.kind is FaultKind.STRAGGLER:
            return f"{self.node} {self.mode} straggler (x{self.factor:.2f})"
        return f"{self.leaf} {self.mode} degraded (x{self.factor:.2f})"

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "subject": self.subject,
            "mode": self.mode,
            "factor": round(self.factor, 3),
            "description": self.describe(),
        }


@dataclass(frozen=True)
class CostModel:
    """Durations of tests, in seconds.

    - dcgm_diag_s: `dcgmi diag -r 2` takes about 2 minutes (NVIDIA DCGM
      documentation: level 1 seconds, level 2 about 2 minutes, level 3 about 15).
    - burnin_s: the burn-in length is the operator's choice (5 minutes here).
    - nvlink_allreduce_s: one-node all_reduce_perf sweep to 16 GiB on 8 GPUs,
      about a minute with launch (assumption).
    - pair_s: a two-node nccl-tests sweep (8 B to 16 GiB) with srun/MPI launch
      and NCCL init, 1-2 minutes (assumption, the figure the issue gives).
    - scale_doubling_s and per_node_s: bigger jobs take longer: more sizes
      before bandwidth saturates, ring/tree latency and NCCL bootstrap grow
      with the number of ranks (assumption: +20 s per doubling of nodes, plus
      50 ms per node for launch and wire-up; 4,096 nodes take ~8.5 min).
    - round_overhead_s: Slurm allocation and result collection per round
      (assumption).
    """

    dcgm_diag_s: float = 120.0
    burnin_s: float = 300.0
    nvlink_allreduce_s: float = 60.0
    pair_s: float = 90.0
    scale_doubling_s: float = 20.0
    per_node_s: float = 0.05
    round_overhead_s: float = 30.0

    def test_s(self, test: Test) -> float:
        if test.kind is TestKind.LOCAL:
            return self.dcgm_diag_s + self.burnin_s + self.nvlink_allreduce_s
        n = len(test.nodes)
        if n <= 3:
            return self.pair_s
        return self.pair_s + self.scale_doubling_s * math.log2(n / 2) + self.per_node_s * n

    def round_s(self, rnd: Round) -> float:
        return self.round_overhead_s + max((self.test_s(t) for t in rnd.tests), default=0.0)


class SimCluster:
    """A cluster with faults that answers tests the way real jobs would."""

    def __init__(
        self,
        layout: FabricLayout,
        faults: Sequence[Fault],
        seed: int = 0,
        noise: float = 0.025,
        rail_gbps: float = NOMINAL_RAIL_GBPS,
        tflops: float = NOMINAL_TFLOPS,
    ) -> None:
        self.layout = layout
        self.faults = tuple(faults)
        self.noise = noise
        self.rail_gbps = rail_gbps
        self.tflops = tflops
        self._rng = random.Random(f"sim-noise-{seed}")
        self._unit_of = {
            n: tuple(layout.leaf_of[(n, r)] for r in range(layout.rails)) for n in layout.nodes
        }
        self._gpu: dict[str, int] = {}
        self._compute: dict[str, float] = {}
        self._network: dict[str, float] = {}
        self._nic: dict[tuple[str, int], float] = {}
        self._ports: dict[str, float] = {}
        self._uplink: dict[str, float] = {}
        for fault in self.faults:
            if fault.kind is FaultKind.GPU:
                self._gpu[fault.node] = fault.gpu
            elif fault.kind is FaultKind.NIC:
                self._nic[(fault.node, fault.rail)] = fault.factor
            elif fault.kind is FaultKind.STRAGGLER and fault.mode == "compute":
                self._compute[fault.node] = fault.factor
            elif fault.kind is FaultKind.STRAGGLER:
                self._network[fault.node] = fault.factor
            elif fault.mode == "ports":
                self._ports[fault.leaf] = fault.factor
            else:
                self._uplink[fault.leaf] = fault.factor

    def _jitter(self) -> float:
        return 1.0 + self._rng.uniform(-self.noise, self.noise)

    def run(self, test: Test) -> TestResult:
        if test.kind is TestKind.LOCAL:
            node = test.nodes[0]
            if node in self._gpu:
                gpu = self._gpu[node]
                return TestResult(
                    test.test_id,
                    failed_gpus=(gpu,),
                    tflops=0.0,
                    error=f"simulated: GPU {gpu} failed DCGM diagnostics level 2",
                )
            return TestResult(
                test.test_id, tflops=self.tflops * self._compute.get(node, 1.0) * self._jitter()
            )
        broken = [n for n in test.nodes if n in self._gpu]
        if broken:
            return TestResult(
                test.test_id,
                error=f"simulated: NCCL error on {broken[0]} (GPU {self._gpu[broken[0]]})",
            )
        crosses = len({self._unit_of[n] for n in test.nodes}) > 1
        # Only multi-leaf jobs bigger than a pair load the uplinks enough to show
        # a degraded one (ECMP spreads few flows over the good uplinks).
        loads_uplinks = crosses and test.kind in (TestKind.GROUP, TestKind.ALL)
        rails: dict[int, float] = {}
        for rail in test.rails:
            factor = 1.0
            leaves = set()
            for node in test.nodes:
                leaf = self.layout.leaf_of[(node, rail)]
                leaves.add(leaf)
                factor = min(
                    factor,
                    self._network.get(node, 1.0) * self._nic.get((node, rail), 1.0),
                )
            for leaf in leaves:
                factor *= self._ports.get(leaf, 1.0)
                if loads_uplinks:
                    factor *= self._uplink.get(leaf, 1.0)
            rails[rail] = max(0.0, self.rail_gbps * factor * self._jitter())
        return TestResult(test.test_id, rail_gbps=rails)


def inject_faults(
    layout: FabricLayout,
    count: int,
    seed: int,
    kinds: Sequence[FaultKind] = tuple(FaultKind),
) -> list[Fault]:
    """`count` faults of the given kinds (mixed at random), no two hiding each other.

    A faulty leaf keeps at least one node under it without a fault of its own (a
    node with a failed GPU stays out of the fabric tests, and a slow one hides a
    slow port), and no NIC fault sits behind a leaf whose ports are faulty.
    """
    rng = random.Random(f"sim-faults-{seed}")
    nodes = list(layout.nodes)
    rails = range(layout.rails)
    units: dict[tuple[str, ...], list[str]] = {}
    under: dict[str, set[str]] = {}
    for node in nodes:
        units.setdefault(tuple(layout.leaf_of[(node, r)] for r in rails), []).append(node)
        for r in rails:
            under.setdefault(layout.leaf_of[(node, r)], set()).add(node)
    taken_nodes: set[str] = set()
    port_leaves: set[str] = set()
    taken_leaves: set[str] = set()
    nic_leaves: set[str] = set()
    faults: list[Fault] = []
    attempts = 0
    while len(faults) < count:
        attempts += 1
        if attempts > 1000 * (count + 1):
            raise UserError(
                [Problem("faults", f"cannot place {count} faults", "inject fewer faults")],
                title="fault injection failed:",
            )
        kind = rng.choice(list(kinds))
        if kind is FaultKind.LEAF:
            node = rng.choice(nodes)
            rail = rng.randrange(layout.rails)
            leaf = layout.leaf_of[(node, rail)]
            if leaf in taken_leaves or not under[leaf] - taken_nodes:
                continue
            mode = "uplink" if len(units) >= 3 and rng.random() < 0.5 else "ports"
            if mode == "ports" and leaf in nic_leaves:
                continue
            factor = rng.uniform(0.3, 0.7) if mode == "ports" else rng.uniform(0.5, 0.8)
            taken_leaves.add(leaf)
            if mode == "ports":
                port_leaves.add(leaf)
            faults.append(Fault(kind, leaf=leaf, rail=rail, mode=mode, factor=factor))
            continue
        node = rng.choice(nodes)
        last_free = any(
            under[leaf] - taken_nodes == {node} for leaf in taken_leaves if node in under[leaf]
        )
        if node in taken_nodes or last_free:
            continue
        if kind is FaultKind.GPU:
            faults.append(Fault(kind, node=node, gpu=rng.randrange(8), mode="diag"))
        elif kind is FaultKind.NIC:
            rail = rng.randrange(layout.rails)
            leaf = layout.leaf_of[(node, rail)]
            if leaf in port_leaves:
                continue
            down = rng.random() < 0.25
            factor = 0.0 if down else rng.uniform(0.25, 0.6)
            nic_leaves.add(leaf)
            faults.append(
                Fault(
                    kind, node=node, rail=rail, mode="down" if down else "degraded", factor=factor
                )
            )
        else:
            mode = rng.choice(("compute", "network"))
            faults.append(Fault(kind, node=node, mode=mode, factor=rng.uniform(0.80, 0.90)))
        taken_nodes.add(node)
    return faults


@dataclass
class Accuracy:
    """How the verdicts compare with the injected faults.

    A fault is identified when a FAIL verdict names it, localized when a
    "cannot localize further" verdict lists it among its candidates, missed
    otherwise. Only FAIL verdicts blame: a healthy node or leaf named by one is
    falsely blamed; being a candidate is no blame."""

    faults: int
    identified: int
    missed: list[str] = field(default_factory=list)
    localized: list[str] = field(default_factory=list)
    healthy_nodes_blamed: list[str] = field(default_factory=list)
    healthy_leaves_blamed: list[str] = field(default_factory=list)
    warnings: int = 0

    @property
    def all_identified(self) -> bool:
        return self.identified == self.faults

    @property
    def all_localized(self) -> bool:
        """Every fault identified or named among the candidates of an open verdict."""
        return not self.missed

    @property
    def blamed(self) -> int:
        return len(self.healthy_nodes_blamed) + len(self.healthy_leaves_blamed)

    @property
    def perfect(self) -> bool:
        return (
            self.all_identified and not self.healthy_nodes_blamed and not self.healthy_leaves_blamed
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "faults": self.faults,
            "identified": self.identified,
            "all_identified": self.all_identified,
            "localized": self.localized,
            "missed": self.missed,
            "healthy_nodes_blamed": self.healthy_nodes_blamed,
            "healthy_leaves_blamed": self.healthy_leaves_blamed,
            "warnings": self.warnings,
        }


def _subjects_of(fault: Fault) -> set[str]:
    """What a verdict may name for a fault: the fault, and for a leaf its uplinks."""
    if fault.kind is FaultKind.LEAF:
        return {fault.leaf, f"{fault.leaf} uplinks"}
    return {fault.subject}


def score(faults: Sequence[Fault], verdicts: Sequence[Verdict]) -> Accuracy:
    """Which faults a FAIL verdict names, which a candidates verdict lists, and which
    healthy nodes and leaves a FAIL verdict blames."""
    failed = {v.subject for v in verdicts if v.status is Status.FAIL}
    listed = {
        str(s)
        for v in verdicts
        if v.metrics.get("scope") == "candidates"
        for s in v.metrics.get("candidates", [])
    }
    faulty_nodes = {f.node for f in faults if f.node}
    faulty_leaves = {f.leaf for f in faults if f.leaf}
    found = [f for f in faults if f.subject in failed]
    localized = [f for f in faults if f not in found and _subjects_of(f) & listed]
    missed = [f.describe() for f in faults if f not in found and f not in localized]
    blamed_nodes: set[str] = set()
    blamed_leaves: set[str] = set()
    for v in verdicts:
        if v.status is not Status.FAIL:
            continue
        scope = v.metrics.get("scope")
        if scope in ("node", "nic") and v.metrics["node"] not in faulty_nodes:
            blamed_nodes.add(str(v.metrics["node"]))
        elif scope == "leaf" and v.subject not in faulty_leaves:
            blamed_leaves.add(v.subject)
    return Accuracy(
        faults=len(faults),
        identified=len(found),
        missed=missed,
        localized=[f.describe() for f in localized],
        healthy_nodes_blamed=sorted(blamed_nodes),
        healthy_leaves_blamed=sorted(blamed_leaves),
        warnings=sum(
            1 for v in verdicts if v.status is Status.WARN and v.metrics.get("scope") != "node"
        ),
    )


@dataclass
class RoundRecord:
    index: int
    phase: str
    tests: int
    nodes: int
    seconds: float
    summary: str

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "phase": self.phase,
            "tests": self.tests,
            "nodes": self.nodes,
            "seconds": round(self.seconds, 1),
            "summary": self.summary,
        }


@dataclass
class Outcome:
    plan: str
    rounds: list[RoundRecord]
    verdicts: list[Verdict]
    accuracy: Accuracy
    tests: int

    @property
    def wall_s(self) -> float:
        return sum(r.seconds for r in self.rounds)

    def to_dict(self, verdicts: bool = True) -> dict[str, object]:
        data: dict[str, object] = {
            "plan": self.plan,
            "rounds": len(self.rounds),
            "tests": self.tests,
            "simulated_seconds": round(self.wall_s, 1),
            "accuracy": self.accuracy.to_dict(),
            "round_log": [r.to_dict() for r in self.rounds],
        }
        if verdicts:
            data["verdicts"] = [v.to_dict() for v in self.verdicts]
        return data


def _record(rnd: Round, cost: CostModel) -> RoundRecord:
    return RoundRecord(
        rnd.index, rnd.phase, len(rnd.tests), rnd.node_count(), cost.round_s(rnd), rnd.summary()
    )


def run_adaptive(
    cluster: SimCluster,
    cost: CostModel | None = None,
    config: IsolationConfig | None = None,
    include_passing_nics: bool = False,
) -> Outcome:
    """Drive the isolation planner against the simulated cluster until it is done."""
    cost = cost or CostModel()
    planner = IsolationPlanner(cluster.layout, config)
    records: list[RoundRecord] = []
    tests = 0
    while (rnd := planner.plan_next_round()) is not None:
        planner.observe([cluster.run(t) for t in rnd.tests])
        records.append(_record(rnd, cost))
        tests += len(rnd.tests)
    verdicts = planner.verdicts(include_passing_nics=include_passing_nics)
    return Outcome("adaptive", records, verdicts, score(cluster.faults, verdicts), tests)


def run_naive(
    cluster: SimCluster, cost: CostModel | None = None, min_fraction: float = 0.95
) -> Outcome:
    """The naive plan: a whole-cluster test; if it fails, every node against one
    reference node, one pair at a time (the reference can be in one test only).

    The reference is the first node without a fault of its own: an advantage the
    real naive plan does not have (it has to guess a good node)."""
    cost = cost or CostModel()
    layout = cluster.layout
    rails = tuple(range(layout.rails))
    records: list[RoundRecord] = []
    whole = Test("naive-all", TestKind.ALL, layout.nodes, rails, "whole cluster")
    first = cluster.run(whole)
    records.append(_record(Round(1, "all", (whole,)), cost))
    floor = min_fraction * NOMINAL_RAIL_GBPS
    whole_ok = not first.error and all(first.rail_gbps.get(r, 0.0) >= floor for r in rails)
    if whole_ok or len(layout.nodes) < 2:
        passing = [
            Verdict(
                n,
                "isolation",
                Status.PASS,
                ["whole-cluster test passed"],
                {"scope": "node", "node": n},
            )
            for n in layout.nodes
        ]
        return Outcome("naive", records, passing, score(cluster.faults, passing), 1)
    own = {f.node for f in cluster.faults if f.node}
    ref = next((n for n in layout.nodes if n not in own), layout.nodes[0])
    results: list[tuple[str, TestResult]] = []
    for node in layout.nodes:
        if node == ref:
            continue
        test = Test(f"naive-{node}", TestKind.PAIR, (ref, node), rails, f"{node} against {ref}")
        results.append((node, cluster.run(test)))
        records.append(_record(Round(len(records) + 1, "pair", (test,)), cost))
    values = [v for _, res in results if not res.error for v in res.rail_gbps.values()]
    base = sorted(values)[len(values) // 2] if values else NOMINAL_RAIL_GBPS
    floor = min_fraction * base
    verdicts: list[Verdict] = []
    for node, res in results:
        low = [r for r in rails if res.error or res.rail_gbps.get(r, 0.0) < floor]
        metrics = {"scope": "node", "node": node}
        if res.error or len(low) == len(rails):
            reason = f"{node}: failed against {ref} on every rail" + (
                f" ({res.error})" if res.error else ""
            )
            verdicts.append(Verdict(node, "isolation", Status.FAIL, [reason], metrics))
            continue
        verdicts.append(Verdict(node, "isolation", Status.PASS, [], metrics))
        for rail in low:
            verdicts.append(
                Verdict(
                    f"{node} rail {rail}",
                    "isolation",
                    Status.FAIL,
                    [f"{node} rail {rail}: low against {ref}"],
                    {"scope": "nic", "node": node, "rail": rail},
                )
            )
    return Outcome("naive", records, verdicts, score(cluster.faults, verdicts), len(results) + 1)
