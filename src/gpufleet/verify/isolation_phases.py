"""The phases of fault isolation, one class each: what a phase plans and what it
concludes from the results (docs/isolation.md walks through them).

local -> pair -> pair-retest (repeats) -> group -> group-retest (repeats) -> all.

Every phase gets the round's fabric tests already judged (`Judged`, the same for
all phases) and the local results; it adds what it learns to the `Evidence`.
The confidence rule lives here: nothing is blamed on one measurement. A port
(node, rail), a node-wide slowdown, a compute straggler or a leaf's uplinks are
blamed after two failing measurements, the later one against partners proven
good; what cannot be decided that way is reported with its candidates.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from typing import ClassVar

from gpufleet.verify.isolation_model import (
    Test,
    TestKind,
    TestResult,
    estimate_noise,
    fmt_gbps,
    join_names,
)
from gpufleet.verify.isolation_state import (
    Candidates,
    Evidence,
    Judged,
    Port,
    Target,
    UnitKey,
)
from gpufleet.verify.verdict import Status, Verdict
from gpufleet.verify.wording import below, fmt_rate

VERDICT_KIND = "isolation"
LocalResults = Sequence[tuple[Test, TestResult]]


class Phase:
    """A phase: `plan` the tests of a round (none: the phase has nothing to do),
    `observe` their results, and name the phase that comes `next`."""

    name: ClassVar[str] = ""

    def plan(self, ev: Evidence, index: int) -> list[Test]:
        raise NotImplementedError

    def observe(self, ev: Evidence, judged: Sequence[Judged], local: LocalResults) -> None:
        raise NotImplementedError

    def next(self, ev: Evidence) -> str:
        raise NotImplementedError


# ---------------------------------------------------------------- local


def _local_test(index: int, node: str, purpose: str) -> Test:
    return Test(f"r{index}-local-{node}", TestKind.LOCAL, (node,), (), purpose)


def _compute_noise(ev: Evidence, final: bool) -> float:
    """Noise of one GEMM result: known, estimated from the local round, and for a final
    decision the fabric's too (a local round of a few nodes estimates its own poorly)."""
    cfg = ev.config
    return max(cfg.noise, ev.compute_noise, ev.noise_estimate if final else 0.0)


def _compute_text(node: str, tflops: float, median: float) -> str:
    return (
        f"{node}: GEMM reached {fmt_rate(tflops)} TFLOPS per GPU, "
        f"{below(tflops, median, f'the fleet median of {fmt_rate(median)}')}"
    )


def _judge_compute(ev: Evidence, node: str, final: bool) -> None:
    """A GEMM result below the warning line is measured again; the mean of the results
    fails below 93% of the median and twice the noise of a mean. One result alone fails
    only when it lies beyond three times the noise below the median and twice the noise
    below every other node (and the noise is known from four results above the median)."""
    median = ev.compute_median
    measured = ev.local_tflops.get(node, [])
    if not median or not measured:
        return
    cfg = ev.config
    noise = _compute_noise(ev, final)
    n = len(measured)
    mean = statistics.mean(measured)
    fail = min(cfg.compute_fail_fraction, 1 - 2 * noise / math.sqrt(n))
    warn = min(cfg.compute_warn_fraction, 1 - noise / math.sqrt(n))
    lowest = [v for m, v in ev.compute_lowest if m != node]
    gap = (lowest[0] if lowest else median) - mean
    clear = (
        n == 1
        and ev.compute_upper >= 4
        and mean < median * min(fail, 1 - 3 * noise)
        and gap > 2 * noise * median
    )
    runs = f" (mean of {n} runs)" if n > 1 else ""
    if (n >= 2 or clear) and mean < fail * median:
        ev.local_fail[node] = [
            _compute_text(node, mean, median)
            + f"{runs}: a compute straggler; check clocks, power capping and cooling"
        ]
        ev.compute_suspects.discard(node)
        return
    if n == 1 and not final and mean < warn * median:
        ev.compute_suspects.add(node)  # low, but within the noise of one result: again
        return
    if node in ev.compute_suspects:
        ev.compute_suspects.discard(node)
        ev.late_nodes.add(node)
    if mean < warn * median:
        ev.local_warn[node] = [
            _compute_text(node, mean, median) + f"{runs}: watch it (3.5% below the fleet flags)"
        ]


def observe_local(ev: Evidence, local: LocalResults, final: bool) -> None:
    """GPU failures fail a node at once; GEMM throughput is judged against the fleet."""
    for test, res in local:
        node = test.nodes[0]
        detail = f" ({res.error})" if res.error else ""
        reasons = [
            f"{node} GPU {gpu}: failed the node-local check{detail}: "
            "drain the node and replace or reseat the GPU"
            for gpu in res.failed_gpus
        ]
        if res.error and not res.failed_gpus:
            reasons.append(f"{node}: the node-local check did not complete ({res.error})")
        if reasons:
            ev.local_fail[node] = reasons
            ev.compute_suspects.discard(node)
        elif res.tflops is not None:
            ev.local_tflops.setdefault(node, []).append(res.tflops)
    if ev.compute_median is None:
        healthy = [v[0] for n, v in ev.local_tflops.items() if n not in ev.local_fail]
        if healthy:
            ev.compute_median = statistics.median(healthy)
            ev.compute_noise = estimate_noise(healthy, ev.compute_median)
            ev.compute_upper = sum(1 for v in healthy if v > ev.compute_median)
            firsts = ((v[0], n) for n, v in ev.local_tflops.items() if n not in ev.local_fail)
            ev.compute_lowest = [(n, v) for v, n in sorted(firsts)[:2]]
    for test, _ in local:
        if test.nodes[0] not in ev.local_fail:
            _judge_compute(ev, test.nodes[0], final)


class LocalPhase(Phase):
    name = "local"

    def plan(self, ev: Evidence, index: int) -> list[Test]:
        purpose = "DCGM diagnostics, burn-in and single-node NVLink all_reduce"
        return [_local_test(index, node, purpose) for node in ev.layout.nodes]

    def observe(self, ev: Evidence, judged: Sequence[Judged], local: LocalResults) -> None:
        observe_local(ev, local, final=False)

    def next(self, ev: Evidence) -> str:
        return "pair"


# ---------------------------------------------------------------- pairs


def _pairs(ev: Evidence, nodes: list[str]) -> list[tuple[str, ...]]:
    """A perfect matching, pairs under the same leaf group first; an odd node out joins
    a pair of its own leaf group when there is one."""
    groups: list[tuple[str, ...]] = []
    leftovers: list[str] = []
    by_unit: dict[UnitKey, list[str]] = {}
    for node in nodes:
        by_unit.setdefault(ev.unit_of[node], []).append(node)
    for members in by_unit.values():
        groups.extend((members[i], members[i + 1]) for i in range(0, len(members) - 1, 2))
        if len(members) % 2:
            leftovers.append(members[-1])
    groups.extend((leftovers[i], leftovers[i + 1]) for i in range(0, len(leftovers) - 1, 2))
    if len(leftovers) % 2 and groups:
        last = leftovers[-1]
        home = [i for i, g in enumerate(groups) if ev.unit_of[g[0]] == ev.unit_of[last]]
        at = home[-1] if home else len(groups) - 1
        groups[at] = (*groups[at], last)
    return groups


def _leaf_evidence(ev: Evidence, judged: Sequence[Judged]) -> None:
    """A rail that fails in every pair test under one leaf switch, of all rounds so far,
    while the same pairs pass their other rails and run at speed: the switch, once bad
    NICs are the poorer explanation, i.e. no two nodes' NICs explain every failing
    test (it would take three bad NICs on one rail of one leaf)."""
    evidence: dict[tuple[str, int], list[tuple[bool, float, tuple[str, ...]]]] = {}
    for j in judged:
        if not j.fast or not j.failed or len(j.failed) == len(j.passed):
            continue  # a node-wide failure says nothing about one switch
        for rail, ok in j.passed.items():
            leaves = {ev.leaf(n, rail) for n in j.test.nodes}
            if len(leaves) == 1:
                evidence.setdefault((leaves.pop(), rail), []).append(
                    (ok, j.values[rail], j.test.nodes)
                )
    for (leaf, rail), outcomes in evidence.items():
        if any(ok for ok, _, _ in outcomes) or (leaf, rail) in ev.leaf_good:
            continue
        if rail in ev.leaf_bad.get(leaf, {}):
            continue
        failing = [set(nodes) for _, _, nodes in outcomes]
        if _nics_needed(failing) < 3:
            continue
        median = statistics.median(v for _, v, _ in outcomes)
        nics = len(set().union(*failing))
        ev.blame_leaf(
            leaf,
            rail,
            f"{leaf} (rail {rail}): all {len(outcomes)} pair tests under this switch "
            f"failed on rail {rail} (median {fmt_gbps(median)} against "
            f"{fmt_gbps(ev.baseline_for(TestKind.PAIR))}) while passing on their other "
            f"rails: check the switch (ports, firmware, cooling, power) before "
            f"replacing {nics} NICs",
        )


def _disjoint(tests: list[set[str]]) -> int:
    """How many of the tests share no node (greedily): bad NICs needed to explain them."""
    taken: set[str] = set()
    count = 0
    for nodes in sorted(tests, key=len):
        if not nodes & taken:
            taken |= nodes
            count += 1
    return count


def _nics_needed(tests: list[set[str]]) -> int:
    """The fewest nodes that are in every failing test (bad NICs explaining all of
    them), counted up to three."""
    if _disjoint(tests) >= 3:
        return 3
    members = sorted(set().union(*tests))
    for size in (1, 2):
        for chosen in itertools.combinations(members, size):
            if all(nodes & set(chosen) for nodes in tests):
                return size
    return 3


class PairPhase(Phase):
    name = "pair"

    def plan(self, ev: Evidence, index: int) -> list[Test]:
        nodes = ev.fabric_nodes()
        groups = _pairs(ev, nodes) if len(nodes) >= 2 else []
        tests = [
            Test(
                f"r{index}-pair-{i}", TestKind.PAIR, group, ev.rails,
                "two-node nccl-tests over every rail, busbw per rail",
            )
            for i, group in enumerate(groups)
        ]  # fmt: skip
        purpose = "repeat the node-local check: one GEMM result was below the fleet's"
        tests += [_local_test(index, n, purpose) for n in ev.sorted(ev.compute_suspects)]
        return tests

    def observe(self, ev: Evidence, judged: Sequence[Judged], local: LocalResults) -> None:
        observe_local(ev, local, final=True)
        _leaf_evidence(ev, ev.pair_tests)

    def next(self, ev: Evidence) -> str:
        return "pair-retest"


# ---------------------------------------------------------------- pair retests


def _todo(ev: Evidence) -> tuple[dict[str, set[int]], set[str]]:
    """Rails still to decide per node, and nodes whose node-wide slowdown is undecided."""
    rails: dict[str, set[int]] = {}
    for node, rail in list(ev.suspect):
        if ev.still_suspect(node, rail):
            rails.setdefault(node, set()).add(rail)
        else:
            ev.suspect.discard((node, rail))
    fabric = ev.fabric_nodes()
    for node in fabric:
        if node not in ev.obs:
            if node in ev.late_nodes:
                rails[node] = set(ev.rails)
            continue
        # Rails whose every test went through someone else's failed leaf switch (a
        # cross-leaf pair) were never judged: retest them the same way.
        for rail in ev.rails:
            key = (node, rail)
            if not (
                key in ev.good
                or key in ev.bad
                or key in ev.suspect
                or key in ev.nic_ambiguous
                or key in ev.unverifiable
                or ev.explained(node, rail)
            ):
                rails.setdefault(node, set()).add(rail)
    slow = {n for n in fabric if n in ev.slow and n not in ev.fast and n not in ev.slow_bad}
    slow |= {n for n in ev.late_nodes if n in fabric and n not in ev.fast}
    return rails, slow


def _failures(ev: Evidence, node: str, rail: int) -> int:
    return sum(1 for o in ev.obs.get(node, []) if rail in o.passed and not o.passed[rail])


def _slowdowns(ev: Evidence, node: str) -> int:
    return sum(1 for o in ev.obs.get(node, []) if not o.fast)


class PairRetestPhase(Phase):
    """Each suspect is tested again with a partner proven good on its suspect rails
    and proven fast. Where none is left, suspects are paired with each other (pairs
    not tried yet) to find one. Repeats while that makes progress."""

    name = "pair-retest"

    def plan(self, ev: Evidence, index: int) -> list[Test]:
        rails, slow = _todo(ev)
        targets = ev.sorted(set(rails) | slow)
        if not targets:
            return _calibration(ev, index)
        if ev.retest_rounds >= ev.config.max_retest_rounds:
            _undecided(ev, rails, slow)
            return []
        tests = _proven_retests(ev, index, targets, rails, slow)
        left = [t for t in targets if not any(t in test.nodes for test in tests)]
        tests += _split_retests(ev, index, left, rails, slow, len(tests), tests)
        if not tests:
            _undecided(ev, rails, slow)
            return []
        ev.retest_rounds += 1
        return tests

    def observe(self, ev: Evidence, judged: Sequence[Judged], local: LocalResults) -> None:
        for j in judged:
            for target in ev.targets.pop(j.test.test_id, []):
                _conclude(ev, j, target)
        # Retests under one leaf add to the evidence against a switch.
        _leaf_evidence(ev, ev.pair_tests)

    def next(self, ev: Evidence) -> str:
        return "pair-retest"


def _calibration(ev: Evidence, index: int) -> list[Test]:
    """A small cluster whose fast tests all share one node has not seen the healthy rate
    without that node: if it is slow on every rail, every test was, and the baseline
    with it. Pair two other fast nodes that have not met, once."""
    quick = [j for j in ev.pair_tests if j.quick and not j.failed]
    if not quick:
        return []
    common = set.intersection(*(set(j.test.nodes) for j in quick))
    if not common or ev.calibrated & common:
        return []
    others = [n for n in ev.sorted(ev.fast) if n not in common and n in ev.fabric_nodes()]
    pair = next(
        (
            (a, b)
            for i, a in enumerate(others)
            for b in others[i + 1 :]
            if frozenset((a, b)) not in ev.tried
        ),
        None,
    )
    ev.calibrated |= common
    if pair is None:
        return []
    purpose = f"check the baseline without {join_names(ev.sorted(common))}, in every fast test"
    return [Test(f"r{index}-calibrate-0", TestKind.PAIR, pair, ev.rails, purpose)]


def _proven_retests(
    ev: Evidence, index: int, targets: list[str], rails: dict[str, set[int]], slow: set[str]
) -> list[Test]:
    """Each target with a partner proven good on its rails: from its own leaf group first,
    clean (proven on every rail) first; each partner serves one target per round."""
    busy = set(targets)
    used: set[str] = set()
    candidates = [p for p in ev.fabric_nodes() if p in ev.fast and p not in busy]
    tests: list[Test] = []
    for node in targets:
        need = rails.get(node, set())

        def usable(p: str, need: set[int] = need) -> bool:
            return p not in used and ev.proven(p, need or ev.rails)

        home = [p for p in ev.unit_nodes[ev.unit_of[node]] if p in ev.fast and p not in busy]
        partner = next(
            (
                p
                for pool, clean in (
                    (home, True),
                    (home, False),
                    (candidates, True),
                    (candidates, False),
                )
                for p in pool
                if usable(p) and (not clean or ev.proven(p, ev.rails))
            ),
            None,
        )
        if partner is None:
            continue
        used.add(partner)
        test = Test(
            f"r{index}-retest-{len(tests)}", TestKind.PAIR, (node, partner), ev.rails,
            _retest_purpose(node, need, node in slow, partner),
        )  # fmt: skip
        ev.targets[test.test_id] = [Target(node, frozenset(need), node in slow, True)]
        tests.append(test)
    return tests


def _split_retests(
    ev: Evidence,
    index: int,
    left: list[str],
    rails: dict[str, set[int]],
    slow: set[str],
    number: int,
    planned: list[Test],
) -> list[Test]:
    """Suspects without a proven partner tested with each other, in pairs not tried yet."""
    taken = {n for t in planned for n in t.nodes}
    tests: list[Test] = []
    pool = [n for n in left if n not in taken]
    while pool:
        node = pool.pop(0)
        partner = next((p for p in pool if frozenset((node, p)) not in ev.tried), None)
        if partner is None:
            continue
        pool.remove(partner)
        test = Test(
            f"r{index}-retest-{number + len(tests)}", TestKind.PAIR, (node, partner), ev.rails,
            f"split undecided {node} and {partner}: no partner proven good is left",
        )  # fmt: skip
        ev.targets[test.test_id] = [
            Target(n, frozenset(rails.get(n, set())), n in slow, False) for n in (node, partner)
        ]
        tests.append(test)
    return tests


def _retest_purpose(node: str, rails: set[int], slow: bool, partner: str) -> str:
    what = []
    if rails:
        what.append(f"failed on rail {', '.join(map(str, sorted(rails)))}")
    if slow:
        what.append("slow on every rail")
    return f"retest {node} ({'; '.join(what) or 'not tested yet'}) with {partner}, proven good"


def _conclude(ev: Evidence, j: Judged, target: Target) -> None:
    """Blame what failed twice, the second time against a partner proven good, proven
    still by the tests judged against the current baseline."""
    node = target.node
    partners = [p for p in j.test.nodes if p != node]
    if not target.proven or not all(ev.proven(p, target.rails) for p in partners):
        return
    for rail in target.rails:
        failed = not j.passed.get(rail, True)
        unexplained = not any(ev.explained(m, rail) for m in j.test.nodes)
        if failed and unexplained and _failures(ev, node, rail) >= 2:
            ev.bad.add((node, rail))
            ev.suspect.discard((node, rail))
    if target.node_wide and not j.fast and _slowdowns(ev, node) >= 2:
        ev.slow_bad.add(node)
        ev.slow.discard(node)


def _undecided(ev: Evidence, rails: dict[str, set[int]], slow: set[str]) -> None:
    """No partner proven good is left: say what could be at fault, don't guess."""
    for node, todo in rails.items():
        for rail in todo:
            if (node, rail) in ev.suspect:
                ev.nic_ambiguous[(node, rail)] = ev.ambiguous_reason(node, rail)
                ev.suspect.discard((node, rail))
                _port_candidates(ev, node, rail)
            else:
                ev.unverifiable.add((node, rail))
    for node in ev.sorted(slow):
        if node in ev.fast or node in ev.slow_bad:
            continue
        tests = [o for o in ev.obs.get(node, []) if not o.fast]
        members = ev.sorted({node, *(p for o in tests for p in o.partners if p not in ev.fast)})
        median = min((o.median for o in tests), default=0.0)
        _add_candidates(
            ev,
            tuple(members),
            f"cannot localize further: tests of {join_names(members)} ran slow on every rail "
            f"(median {fmt_gbps(median)} against {fmt_gbps(ev.baseline_for(TestKind.PAIR))}) "
            "and no node proven fast was left to tell which of them is the bottleneck: "
            "retest each against a node that passed",
        )


def _port_candidates(ev: Evidence, node: str, rail: int) -> None:
    obs = [o for o in ev.obs.get(node, []) if rail in o.passed and not o.passed[rail]]
    members = ev.sorted({node, *(p for o in obs for p in o.partners)})
    ports = [f"{m} rail {rail}" for m in members if (m, rail) not in ev.good]
    leaves = sorted(
        {ev.leaf(m, rail) for m in members if (ev.leaf(m, rail), rail) not in ev.leaf_good}
    )
    _add_candidates(
        ev,
        (*ports, *leaves),
        f"cannot localize further: rail {rail} failed in tests of {join_names(members)} and "
        f"no partner proven good on rail {rail} was left: the NIC or cable of "
        f"{join_names(ports)}"
        + (f", or {join_names(leaves)}" if leaves else "")
        + "; retest against a node that passed",
    )


def _add_candidates(ev: Evidence, subjects: tuple[str, ...], reason: str) -> None:
    if subjects and not any(set(c.subjects) == set(subjects) for c in ev.candidates):
        ev.candidates.append(Candidates(subjects, reason))


def finish_node_level(ev: Evidence) -> None:
    """Turn confirmed failures into node, NIC and leaf findings, or into candidates."""
    if ev.node_level_done:
        return
    ev.node_level_done = True

    def all_rails(node: str) -> bool:
        rails = [r for r in ev.rails if not ev.explained(node, r)]
        return len(rails) >= 2 and all((node, r) in ev.bad for r in rails)

    wide = ev.slow_bad | {n for n, _ in ev.bad if all_rails(n)}
    _merge_into_leaves(ev, wide)
    for node in ev.sorted({n for n, _ in ev.bad} | ev.slow_bad):
        if node in wide:
            ev.node_bad[node] = ev.node_wide_reason(node)
            continue
        for rail in ev.rails:
            if (node, rail) in ev.bad and not ev.explained(node, rail):
                _blame_port(ev, node, rail)


def _merge_into_leaves(ev: Evidence, wide: set[str]) -> None:
    """Every tested node on a leaf (at least two) failed the same rail with partners
    proven good on that rail: one switch, not that many NICs."""
    for leaf in sorted({ev.leaf(*p) for p in ev.bad}):
        by_rail: dict[int, list[str]] = {}
        for node, rail in ev.leaf_ports[leaf]:
            if node in ev.local_fail or node in wide:
                continue
            if (node, rail) in ev.bad or (node, rail) in ev.good:
                by_rail.setdefault(rail, []).append(node)
        for rail, nodes in by_rail.items():
            if len(nodes) >= 2 and all((n, rail) in ev.bad for n in nodes):
                ev.blame_leaf(
                    leaf,
                    rail,
                    f"{leaf} (rail {rail}): all {len(nodes)} nodes on this switch failed on "
                    f"rail {rail} with partners known good on that rail: check the switch "
                    "(ports, firmware, cooling, power) before replacing their NICs",
                )


def _blame_port(ev: Evidence, node: str, rail: int) -> None:
    """The NIC or cable, when another node on the same leaf passed this rail; otherwise
    the switch port is as likely, and both are named as candidates."""
    leaf = ev.leaf(node, rail)
    # Only a node on the same leaf that passed this rail clears the switch port.
    peers = [n for n, r in ev.leaf_ports[leaf] if r == rail and n != node and (n, r) in ev.good]
    if peers:
        ev.nic_bad[(node, rail)] = ev.nic_reason(node, rail)
        return
    reason = (
        f"cannot localize further: {ev.nic_reason(node, rail).split(': check', 1)[0]}; "
        f"no other node on {leaf} passed rail {rail}, so the fault is its NIC or cable of rail "
        f"{rail} or that switch port: move the cable to another port to tell them apart"
    )
    ev.nic_ambiguous[(node, rail)] = reason
    _add_candidates(ev, (f"{node} rail {rail}", leaf), reason)


# ---------------------------------------------------------------- groups


def _doubtful_ports(ev: Evidence) -> set[Port]:
    """Ports blamed or undecided: their rail stays out of the node's multi-leaf tests."""
    ports = set(ev.nic_bad) | set(ev.nic_ambiguous)
    for c in ev.candidates:
        for subject in c.subjects:
            node, _, rail = subject.partition(" rail ")
            if rail.isdigit():
                ports.add((node, int(rail)))
    return ports


def healthy(ev: Evidence) -> list[str]:
    """Nodes fit for multi-leaf tests: tested, not slow, not failed as a whole (a node
    with one doubtful port still tests its other rails)."""
    whole = {s for c in ev.candidates for s in c.subjects if " " not in s}
    return [
        n
        for n in ev.fabric_nodes()
        if n not in ev.node_bad
        and n not in whole
        and n in ev.obs
        and not (n in ev.slow and n not in ev.fast)
    ]


def healthy_units(ev: Evidence) -> list[tuple[UnitKey, list[str]]]:
    by_unit: dict[UnitKey, list[str]] = {}
    for node in healthy(ev):
        by_unit.setdefault(ev.unit_of[node], []).append(node)
    return list(by_unit.items())


def _allowed_rails(ev: Evidence, key: UnitKey) -> set[int]:
    """Rails a leaf group can be tested on: not behind a failed leaf, and no member
    with a doubtful port on it."""
    doubtful = {r for n, r in _doubtful_ports(ev) if ev.unit_of.get(n) == key}
    return {r for r in ev.rails if r not in ev.leaf_bad.get(key[r], {}) and r not in doubtful}


def group_test(
    ev: Evidence,
    test_id: str,
    a: tuple[UnitKey, list[str]],
    b: tuple[UnitKey, list[str]],
    rails: set[int] | None,
) -> Test | None:
    (key_a, nodes_a), (key_b, nodes_b) = a, b
    allowed = _allowed_rails(ev, key_a) & _allowed_rails(ev, key_b)
    chosen = tuple(sorted(allowed if rails is None else rails & allowed))
    if not chosen:
        return None
    ev.group_members[test_id] = (key_a, key_b)
    ev.uplink_tried.add(frozenset((key_a, key_b)))
    return Test(
        test_id, TestKind.GROUP, (*nodes_a, *nodes_b), chosen,
        f"leaf groups {key_a[0]} and {key_b[0]} together: traffic crosses the spine",
    )  # fmt: skip


def observe_groups(ev: Evidence, judged: Sequence[Judged]) -> None:
    for j in judged:
        keys = ev.group_members.pop(j.test.test_id)
        if not j.fast:
            continue  # slow on every rail: a node, not one leaf's uplinks; decides nothing
        for rail, ok in j.passed.items():
            if ok:
                ev.uplink_good.update((key[rail], rail) for key in keys)
            else:
                ev.uplink_fails.append((keys, rail, j.values[rail]))
    _infer_uplinks(ev)


def _infer_uplinks(ev: Evidence) -> None:
    """A failed multi-leaf test whose other leaves are all proven good on that rail
    points at the one leaf left (its uplinks); it is blamed once two such tests failed."""
    base = ev.baseline_for(TestKind.GROUP)
    for keys, rail, value in ev.uplink_fails:
        unknown = [k for k in keys if (k[rail], rail) not in ev.uplink_good]
        if len(unknown) != 1 or rail in ev.uplink_bad.get(unknown[0][rail], {}):
            continue
        leaf = unknown[0][rail]
        fails = [f for f in ev.uplink_fails if f[1] == rail and any(k[rail] == leaf for k in f[0])]
        if len(fails) < 2:
            continue  # one failing test: retest before blaming
        partners = [k[rail] for k in keys if k is not unknown[0]]
        ev.uplink_bad.setdefault(leaf, {})[rail] = (
            f"{leaf} (rail {rail}): {len(fails)} multi-leaf tests failed on rail {rail}, the "
            f"last with {join_names(partners)} (known good on rail {rail}), reaching "
            f"{fmt_gbps(value)} against {fmt_gbps(base)} while pair tests under it passed: "
            "check its uplinks to the spine (cables, optics, port error counters)"
        )


class GroupPhase(Phase):
    """Pairs of leaf groups in one test each: traffic crosses the spine and loads the
    uplinks, which two-node tests do not. An odd group waits for the retests."""

    name = "group"

    def plan(self, ev: Evidence, index: int) -> list[Test]:
        finish_node_level(ev)
        units = healthy_units(ev)
        tests: list[Test] = []
        for i in range(0, len(units) - 1, 2):
            test = group_test(ev, f"r{index}-group-{len(tests)}", units[i], units[i + 1], None)
            if test is not None:
                tests.append(test)
        ev.retest_rounds = 0
        return tests

    def observe(self, ev: Evidence, judged: Sequence[Judged], local: LocalResults) -> None:
        observe_groups(ev, judged)

    def next(self, ev: Evidence) -> str:
        return "group-retest"


class GroupRetestPhase(Phase):
    """A leaf group with a failed or untested rail meets a group proven good on it; with
    none left, two undecided groups that have not met yet."""

    name = "group-retest"

    def plan(self, ev: Evidence, index: int) -> list[Test]:
        units = dict(healthy_units(ev))
        todo = {key: rails for key in units if (rails := _uplink_needs(ev, key))}
        if not todo:
            return []
        tests = (
            []
            if ev.retest_rounds >= ev.config.max_retest_rounds
            else (_group_retests(ev, index, units, todo))
        )
        if not tests:
            _uplinks_undecided(ev, todo)
            return []
        ev.retest_rounds += 1
        return tests

    def observe(self, ev: Evidence, judged: Sequence[Judged], local: LocalResults) -> None:
        observe_groups(ev, judged)

    def next(self, ev: Evidence) -> str:
        return "group-retest"


def _uplink_needs(ev: Evidence, key: UnitKey) -> set[int]:
    return {
        r
        for r in _allowed_rails(ev, key)
        if (key[r], r) not in ev.uplink_good and r not in ev.uplink_bad.get(key[r], {})
    }


def _group_retests(
    ev: Evidence, index: int, units: dict[UnitKey, list[str]], todo: dict[UnitKey, set[int]]
) -> list[Test]:
    """Each undecided group with the group proven good on most of its undecided rails,
    over those rails; with none, two undecided groups that have not met yet."""
    used: set[UnitKey] = set()
    tests: list[Test] = []
    for key, rails in todo.items():
        if key in used:
            continue
        cover = {
            k: {r for r in rails & _allowed_rails(ev, k) if (k[r], r) in ev.uplink_good}
            for k in units
            if k != key and k not in used
        }
        best = max(cover, key=lambda k: (len(cover[k]), k not in todo), default=None)
        if best is not None and cover[best]:
            partner, both = best, cover[best]
        else:
            # No group proven good on these rails: pair two undecided groups that have
            # not met yet; a later pass on either side decides the other.
            fresh = (
                k
                for k in todo
                if k != key and k not in used and frozenset((key, k)) not in ev.uplink_tried
            )
            met: UnitKey | None = next(fresh, None)
            if met is None:
                continue
            partner, both = met, rails | todo[met]
        test_id = f"r{index}-group-{len(tests)}"
        test = group_test(ev, test_id, (key, units[key]), (partner, units[partner]), both)
        if test is not None:
            used.update((key, partner))
            tests.append(test)
    return tests


def _uplinks_undecided(ev: Evidence, todo: dict[UnitKey, set[int]]) -> None:
    failed = {(k[r], r) for keys, r, _ in ev.uplink_fails for k in keys}
    for key, rails in todo.items():
        for rail in rails:
            if (key[rail], rail) not in failed:
                continue  # never failed, only not verified: the leaf verdict says so
            reason = (
                f"{key[rail]} (rail {rail}): a multi-leaf test including this switch "
                f"failed on rail {rail} and no leaf group known good on that rail was "
                "left to tell which switch's uplinks are at fault: retest it against "
                "a group that passed"
            )
            ev.uplink_ambiguous.setdefault(key[rail], {})[rail] = reason
    for rail in ev.rails:
        leaves = sorted(leaf for leaf, rails in ev.uplink_ambiguous.items() if rail in rails)
        if len(leaves) >= 2:
            _add_candidates(
                ev,
                tuple(f"{leaf} uplinks" for leaf in leaves),
                f"cannot localize further: multi-leaf tests of {join_names(leaves)} failed on "
                f"rail {rail} and no leaf group proven good on that rail was left: the "
                "uplinks of one of them",
            )


# ---------------------------------------------------------------- all


class AllPhase(Phase):
    """One test over every node still considered healthy and not behind a failed switch."""

    name = "all"

    def plan(self, ev: Evidence, index: int) -> list[Test]:
        finish_node_level(ev)
        blocked = set(ev.leaf_bad) | set(ev.uplink_bad) | set(ev.uplink_ambiguous)
        doubtful = {n for n, _ in _doubtful_ports(ev)}
        nodes = [
            n
            for n in healthy(ev)
            if n not in doubtful and not any(ev.leaf(n, r) in blocked for r in ev.rails)
        ]
        if len(nodes) < 2:
            return []
        return [
            Test(
                f"r{index}-all", TestKind.ALL, tuple(nodes), ev.rails,
                "every node still considered healthy in one test",
            )
        ]  # fmt: skip

    def observe(self, ev: Evidence, judged: Sequence[Judged], local: LocalResults) -> None:
        j = judged[0]
        subject = f"cluster ({len(j.test.nodes)} nodes)"
        metrics: dict[str, object] = {
            "scope": "cluster",
            "nodes": len(j.test.nodes),
            "rail_gbps": dict(j.values),
        }
        if j.failed:
            reason = (
                f"the whole-cluster test failed on rail {', '.join(map(str, j.failed))} after "
                "every smaller test passed: a fault that shows only at full scale (spine, "
                "routing, SHARP); rerun it on halves of the cluster to narrow it down"
                + (f" ({j.error})" if j.error else "")
            )
            ev.cluster = Verdict(subject, VERDICT_KIND, Status.FAIL, [reason], metrics)
        else:
            reason = f"the whole-cluster test passed on all {len(j.values)} rails"
            ev.cluster = Verdict(subject, VERDICT_KIND, Status.PASS, [reason], metrics)

    def next(self, ev: Evidence) -> str:
        return "done"


PHASES: dict[str, Phase] = {
    phase.name: phase
    for phase in (
        LocalPhase(),
        PairPhase(),
        PairRetestPhase(),
        GroupPhase(),
        GroupRetestPhase(),
        AllPhase(),
    )
}
# Where to go when a phase has nothing (more) to plan.
AFTER_EMPTY: dict[str, str] = {
    "local": "pair",
    "pair": "pair-retest",
    "pair-retest": "group",
    "group": "group-retest",
    "group-retest": "all",
    "all": "done",
}
ORDER: tuple[str, ...] = tuple(AFTER_EMPTY)
__all__ = ["AFTER_EMPTY", "ORDER", "PHASES", "Phase", "Port", "finish_node_level"]
