"""Verdicts of fault isolation: per node, per NIC (node, rail), per leaf switch, per
set of candidates that could not be told apart, and for the whole cluster."""

from __future__ import annotations

from gpufleet.verify.isolation_model import VERDICT_KIND
from gpufleet.verify.isolation_state import Evidence, Port
from gpufleet.verify.verdict import Status, Verdict


def all_verdicts(ev: Evidence, include_passing_nics: bool = True) -> list[Verdict]:
    out: list[Verdict] = []
    out.extend(node_verdict(ev, node) for node in ev.layout.nodes)
    out.extend(nic_verdicts(ev, include_passing_nics))
    out.extend(leaf_verdicts(ev))
    out.extend(candidate_verdicts(ev))
    if ev.cluster is not None:
        out.append(ev.cluster)
    return out


def _by_node(ports: dict[Port, str]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for node, rail in ports:
        found.setdefault(node, []).append(rail)
    return found


def node_verdict(ev: Evidence, node: str) -> Verdict:
    metrics: dict[str, object] = {"scope": "node", "node": node}
    if node in ev.local_tflops:
        metrics["tflops"] = ev.local_tflops[node][-1]
    if node in ev.local_fail:
        return Verdict(node, VERDICT_KIND, Status.FAIL, list(ev.local_fail[node]), metrics)
    if node in ev.node_bad:
        return Verdict(node, VERDICT_KIND, Status.FAIL, [ev.node_bad[node]], metrics)
    bad = _by_node(ev.nic_bad)
    if node in bad:
        reasons = [ev.nic_bad[(node, r)] for r in sorted(bad[node])]
        return Verdict(node, VERDICT_KIND, Status.FAIL, reasons, metrics)
    warnings, notes = _node_notes(ev, node)
    if warnings:
        return Verdict(node, VERDICT_KIND, Status.WARN, warnings + notes, metrics)
    tested = sum(1 for r in ev.rails if (node, r) in ev.good)
    passed = (
        f"{node}: passed the node-local check and fabric tests on {tested} of {len(ev.rails)} rails"
    )
    return Verdict(node, VERDICT_KIND, Status.PASS, [passed, *notes], metrics)


def _node_notes(ev: Evidence, node: str) -> tuple[list[str], list[str]]:
    """(warnings, notes) of a node without a finding of its own: what keeps it from a
    plain pass, and rails not verified beyond a switch already failed."""
    warnings = list(ev.local_warn.get(node, []))
    if node not in ev.obs:
        warnings.append(f"{node}: not tested on the fabric: no other healthy node to pair it with")
        return warnings, []
    ambiguous = _by_node(ev.nic_ambiguous)
    warnings += [ev.nic_ambiguous[(node, r)] for r in sorted(ambiguous.get(node, []))]
    warnings += [c.reason for c in ev.candidates if node in c.subjects]
    notes = [
        f"{node}: rail {rail} not verified beyond its failed leaf switch {ev.leaf(node, rail)}"
        for rail in ev.rails
        if rail in ev.leaf_bad.get(ev.leaf(node, rail), {})
        or rail in ev.uplink_bad.get(ev.leaf(node, rail), {})
    ]
    unverified = [r for r in ev.rails if (node, r) not in ev.good and not ev.explained(node, r)]
    if unverified and not warnings:
        warnings.append(
            f"{node}: rail {', '.join(map(str, unverified))} not verified: every test "
            "on it went through a failed leaf switch"
        )
    return warnings, notes


def nic_verdicts(ev: Evidence, include_passing: bool) -> list[Verdict]:
    out: list[Verdict] = []
    for node in ev.layout.nodes:
        if node in ev.local_fail or node in ev.node_bad:
            continue
        for rail in ev.rails:
            subject = f"{node} rail {rail}"
            metrics: dict[str, object] = {
                "scope": "nic",
                "node": node,
                "rail": rail,
                "leaf": ev.leaf(node, rail),
            }
            if (node, rail) in ev.nic_bad:
                reason = ev.nic_bad[(node, rail)]
                out.append(Verdict(subject, VERDICT_KIND, Status.FAIL, [reason], metrics))
            elif (node, rail) in ev.nic_ambiguous:
                reason = ev.nic_ambiguous[(node, rail)]
                out.append(Verdict(subject, VERDICT_KIND, Status.WARN, [reason], metrics))
            elif include_passing and (node, rail) in ev.good:
                reason = f"{subject}: passed pair tests"
                out.append(Verdict(subject, VERDICT_KIND, Status.PASS, [reason], metrics))
    return out


def leaf_verdicts(ev: Evidence) -> list[Verdict]:
    out: list[Verdict] = []
    for leaf in sorted(ev.leaf_ports):
        rails = sorted({r for _, r in ev.leaf_ports[leaf]})
        metrics: dict[str, object] = {"scope": "leaf", "leaf": leaf, "rails": rails}
        fails = [ev.leaf_bad.get(leaf, {}).get(r) for r in rails]
        fails += [ev.uplink_bad.get(leaf, {}).get(r) for r in rails]
        reasons = [f for f in fails if f]
        if reasons:
            out.append(Verdict(leaf, VERDICT_KIND, Status.FAIL, reasons, metrics))
            continue
        warns = [w for r in rails if (w := ev.uplink_ambiguous.get(leaf, {}).get(r))]
        warns += [
            c.reason for c in ev.candidates if leaf in c.subjects or f"{leaf} uplinks" in c.subjects
        ]
        if warns:
            out.append(Verdict(leaf, VERDICT_KIND, Status.WARN, warns, metrics))
            continue
        ports_ok = all((leaf, r) in ev.leaf_good for r in rails)
        uplinks_ok = all((leaf, r) in ev.uplink_good for r in rails)
        if ports_ok:
            text = f"{leaf}: pair tests under it passed"
            if uplinks_ok:
                text += ", and so did multi-leaf tests through its uplinks"
            out.append(Verdict(leaf, VERDICT_KIND, Status.PASS, [text], metrics))
        else:
            text = f"{leaf}: not verified: no passing test went through it"
            out.append(Verdict(leaf, VERDICT_KIND, Status.WARN, [text], metrics))
    return out


def candidate_verdicts(ev: Evidence) -> list[Verdict]:
    """One WARN per fault localized to several subjects and no further: the operator
    has the short list, nobody is blamed on a guess."""
    return [
        Verdict(
            " or ".join(c.subjects),
            VERDICT_KIND,
            Status.WARN,
            [c.reason],
            {"scope": "candidates", "candidates": list(c.subjects)},
        )
        for c in ev.candidates
    ]
