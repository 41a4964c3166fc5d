"""Judge parsed nccl-tests runs: pass, warn or fail, with the reason in words.

Pure functions: a parsed `NcclLog`, the `ThresholdSet` and what the caller knows
about the job (`JudgeOptions`) go in; `RunJudgement`s (a `Verdict` plus the
numbers a report plots) come out. The checks themselves are the rules of
`gpufleet.verify.judge_rules`; the reasons name the measured value, the floor and
its meaning, and what to check next.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from gpufleet.verify.judge_rules import (
    FABRIC_WORDS,
    KIND_WORDS,
    MULTI_NODE_KINDS,
    RULES,
    UNJUDGED_FABRICS,
    Finding,
    JudgeOptions,
    RunContext,
    no_table_reasons,
)
from gpufleet.verify.nccl import NcclLog, NcclRun, SizeRow
from gpufleet.verify.thresholds import NcclPack, ThresholdSet, parse_profile
from gpufleet.verify.verdict import Status, Verdict, worst
from gpufleet.verify.wording import below, fmt_hosts, fmt_size

__all__ = [
    "FABRIC_WORDS",
    "KIND_CHOICES",
    "KIND_WORDS",
    "JudgeOptions",
    "RunJudgement",
    "detect_fabric",
    "detect_kind",
    "fmt_hosts",
    "fmt_size",
    "judge_log",
    "judge_logs",
    "judge_peers",
    "judge_run",
    "labels_from_name",
    "pair_matrix",
]

KIND_CHOICES = ("auto", "1node", "2node", "2node-ring", "multinode", "nic")
_LABEL_WORDS = {"nvls", "ring", "tree", "sharp", "collnet"}


@dataclass
class RunJudgement:
    """The verdict of one run and the numbers behind it (for reports)."""

    source: str
    run: NcclRun
    verdict: Verdict
    kind: str
    fabric: str
    pack: NcclPack | None = None
    measure: SizeRow | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def busbw_gbps(self) -> float | None:
        return self.measure.busbw_gbps if self.measure else None


def labels_from_name(name: str) -> frozenset[str]:
    """Algorithm labels in a file name: `all_reduce_nvls.out` -> {'nvls'}."""
    tokens = re.split(r"[^a-z0-9]+", name.lower())
    return frozenset(t for t in tokens if t in _LABEL_WORDS)


def detect_fabric(run: NcclRun, default: str) -> str:
    """The network NCCL says it used, from INFO lines; `default` when it does not say."""
    text = "\n".join(line.text for line in run.info)
    if re.search(r"Using network Socket|NET/Socket : Using", text):
        return "socket"
    # Google's GPUDirect-TCPX (A3 High) and TCPXO / FasTrak (A3 Mega) NCCL plugins.
    if re.search(r"Using network (?:GPUDirectTCPX|FasTrak)|NET/(?:GPUDirectTCPX|FasTrak)", text):
        return "tcpx"
    if re.search(r"Using network (?:AWS )?Libfabric|NET/OFI", text):
        return "efa"
    if re.search(r"NET/IB : Using .*/RoCE", text):
        return "roce"
    if re.search(r"Using network IB|NET/IB : Using", text):
        return "ib" if default not in ("roce",) else default
    return default


def detect_kind(run: NcclRun, requested: str) -> str:
    if requested == "2node-ring":
        return "2node"
    if requested != "auto":
        return requested
    hosts = run.hosts
    if not hosts:
        return "unknown"
    ranks = run.n_ranks or 0
    if len(hosts) == 1:
        return "1node"
    if ranks and ranks == len(hosts):
        return "nic"
    return "2node" if len(hosts) == 2 else "multinode"


def _run_labels(run: NcclRun, options: JudgeOptions, source: str) -> set[str]:
    labels = set(options.labels) | set(labels_from_name(source))
    if options.kind == "2node-ring":
        labels.add("ring")
    for line in run.info:
        m = re.search(r"NCCL_ALGO set by environment to (\S+)", line.text)
        if m:
            labels |= {w for w in re.split(r"[^a-z]+", m.group(1).lower()) if w in _LABEL_WORDS}
    return labels


def _largest_row(run: NcclRun) -> SizeRow | None:
    rows = [r for r in run.rows if r.busbw_gbps is not None]
    return max(rows, key=lambda r: r.size_bytes) if rows else None


def _context(
    run: NcclRun, thresholds: ThresholdSet, options: JudgeOptions, source: str, log: NcclLog | None
) -> RunContext:
    platform, profile_fabric = parse_profile(options.profile)
    fabric = detect_fabric(run, profile_fabric)
    kind = detect_kind(run, options.kind)
    collective = run.collective or "unknown"
    pack = thresholds.nccl_pack(collective, kind, fabric, platform) if kind != "unknown" else None
    # A fallback to sockets has no pack of its own: judge against the fabric the site has.
    if pack is None and fabric == "socket" and profile_fabric != "socket":
        pack = thresholds.nccl_pack(collective, kind, profile_fabric, platform)
    notes = list(run.notes)
    if log is not None:
        notes.extend(n for n in log.notes if n not in notes)
    ctx = RunContext(
        run, log, options, platform, profile_fabric, fabric, kind,
        _run_labels(run, options, source), pack, _largest_row(run), notes,
    )  # fmt: skip
    ctx.metrics.update(
        source=source,
        collective=collective,
        kind=kind,
        fabric=fabric,
        platform=platform,
        hosts=run.hosts,
        ranks=run.n_ranks,
        labels=sorted(ctx.labels),
        pack=pack.name if pack else None,
    )
    if fabric != profile_fabric and fabric != "socket":
        ctx.notes.append(
            f"NCCL used {FABRIC_WORDS.get(fabric, fabric)}, the profile says "
            f"{FABRIC_WORDS.get(profile_fabric, profile_fabric)}: judged as "
            f"{FABRIC_WORDS.get(fabric, fabric)}"
        )
    return ctx


def _subject(run: NcclRun, source: str) -> str:
    subject = f"{run.name} on {fmt_hosts(run.hosts)}"
    if run.n_ranks:
        subject += f" ({run.n_ranks} ranks)"
    return subject + (f" [{source}]" if source else "")


def judge_run(
    run: NcclRun,
    thresholds: ThresholdSet,
    options: JudgeOptions,
    source: str = "",
    log: NcclLog | None = None,
) -> RunJudgement:
    """Judge one run on its own (peer comparison happens in `judge_peers`)."""
    ctx = _context(run, thresholds, options, source, log)
    subject = _subject(run, source)
    if not run.has_table:
        reasons = no_table_reasons(run)
        ctx.metrics["notes"] = ctx.notes
        verdict = Verdict(subject, "nccl", Status.FAIL, reasons, ctx.metrics)
        return RunJudgement(source, run, verdict, ctx.kind, ctx.fabric, ctx.pack, None, ctx.notes)
    ctx.metrics["curve"] = [
        [r.size_bytes, r.busbw_gbps] for r in run.rows if r.busbw_gbps is not None
    ]
    if ctx.measure is not None:
        # Every run's bandwidth at its largest size, judged or not (JSON, Prometheus).
        ctx.metrics["size_bytes"] = ctx.measure.size_bytes
        ctx.metrics["busbw_gbps"] = ctx.measure.busbw_gbps
        ctx.metrics["algbw_gbps"] = ctx.measure.algbw_gbps
    findings: list[Finding] = []
    for rule in RULES:
        findings.extend(rule(ctx))
    status = worst([s for s, _ in findings])
    reasons = [r for _, r in sorted(findings, key=lambda f: -f[0].rank)]
    unjudged = _unjudged_reason(ctx)
    if unjudged:
        reasons.insert(0 if status is Status.PASS else len(reasons), unjudged)
    elif status is Status.PASS and ctx.measure is not None and ctx.measure.busbw_gbps is not None:
        reasons.append(_pass_reason(ctx.measure, ctx.metrics))
    reasons.extend(f"note: {n}" for n in ctx.notes if f"note: {n}" not in reasons)
    ctx.metrics["notes"] = ctx.notes
    verdict = Verdict(subject, "nccl", status, reasons, ctx.metrics)
    return RunJudgement(
        source, run, verdict, ctx.kind, ctx.fabric, ctx.pack, ctx.measure, ctx.notes
    )


def _unjudged_reason(ctx: RunContext) -> str | None:
    """Why a run's bandwidth was not judged against any floor, said as a reason."""
    if ctx.pack is not None:
        return None
    measured = ""
    if ctx.measure is not None and ctx.measure.busbw_gbps is not None:
        measured = (
            f" (busbw {ctx.measure.busbw_gbps:.1f} GB/s at {fmt_size(ctx.measure.size_bytes)})"
        )
    fabric = ctx.fabric if ctx.fabric != "socket" or ctx.profile_fabric == "socket" else None
    if ctx.kind in MULTI_NODE_KINDS and fabric in UNJUDGED_FABRICS:
        ctx.metrics["thresholds"] = f"none for {fabric}"
        return (
            f"no thresholds for the {FABRIC_WORDS[fabric]} fabric: the bandwidth{measured} was "
            "not judged against a floor (the built-in packs are for InfiniBand and RoCE); "
            "make a site baseline from a healthy run (gpufleet verify baseline) and pass it "
            "with --thresholds"
        )
    collective = ctx.run.collective or "unknown"
    why = (
        "kind unknown (no device list; pass --kind)"
        if ctx.kind == "unknown"
        else (
            f"no threshold pack for {collective} {KIND_WORDS.get(ctx.kind, ctx.kind)} on "
            f"{ctx.platform}/{ctx.fabric}"
        )
    )
    ctx.notes.append(f"{why}: judged for errors only")
    return None


def _pass_reason(measure: SizeRow, metrics: dict[str, Any]) -> str:
    text = f"busbw {measure.busbw_gbps:.1f} GB/s at {fmt_size(measure.size_bytes)}"
    if metrics.get("fail_gbps") is not None:
        text += f" meets the floor of {metrics['fail_gbps']:g} GB/s"
        if metrics.get("expected_gbps") is not None:
            text += f" (expected about {metrics['expected_gbps']:g} GB/s)"
    elif metrics.get("pack"):
        text += (
            f": no absolute floor in {metrics['pack']}; judged on its own curve (and against "
            "the other runs of a sweep with --peers)"
        )
    return text


def judge_log(log: NcclLog, thresholds: ThresholdSet, options: JudgeOptions) -> list[RunJudgement]:
    """Judge every run of one log; runs that would read alike name their first line."""
    judgements = [judge_run(run, thresholds, options, log.source, log) for run in log.runs]
    if not judgements and log.errors:
        run = NcclRun(start_line=log.errors[0].line, errors=list(log.errors))
        judgements.append(judge_run(run, thresholds, options, log.source, log))
    subjects = Counter(j.verdict.subject for j in judgements)
    for j in judgements:
        if subjects[j.verdict.subject] > 1 and j.verdict.subject.endswith("]"):
            j.verdict.subject = f"{j.verdict.subject[:-1]}:{j.run.start_line}]"
    return judgements


def judge_peers(judgements: list[RunJudgement]) -> list[RunJudgement]:
    """Compare runs of the same collective, kind and rank count with each other.

    A run far below the median of the others (pairwise sweeps) is flagged with
    the pack's `relative` limits. Returns new judgements; the inputs stay as they are.
    """
    groups: dict[tuple[str, str, int | None, int], list[int]] = {}
    for i, j in enumerate(judgements):
        if j.measure is None or j.busbw_gbps is None or j.pack is None or j.pack.relative is None:
            continue
        key = (j.run.collective or "", j.kind, j.run.n_ranks, j.measure.size_bytes)
        groups.setdefault(key, []).append(i)
    out = list(judgements)
    for members in groups.values():
        if len(members) < 2:
            continue
        for i in members:
            peers = [judgements[k] for k in members if k != i]
            out[i] = _against_peers(judgements[i], peers)
    return out


def _against_peers(j: RunJudgement, peers: list[RunJudgement]) -> RunJudgement:
    """One run against the median of the other runs of its group."""
    rel = j.pack.relative if j.pack else None
    bus, measure = j.busbw_gbps, j.measure
    ref = statistics.median(p.busbw_gbps or 0.0 for p in peers)
    if rel is None or bus is None or measure is None or ref <= 0:
        return j
    frac = bus / ref
    status = None
    if rel.peer_fail_fraction and frac < rel.peer_fail_fraction.value:
        status = Status.FAIL
    elif rel.peer_warn_fraction and frac < rel.peer_warn_fraction.value:
        status = Status.WARN
    metrics = {**j.verdict.metrics, "peer_median_gbps": ref, "peer_count": len(peers)}
    reasons = list(j.verdict.reasons)
    new_status = j.verdict.status
    if status is not None:
        names = ", ".join(fmt_hosts(p.run.hosts) for p in peers[:3])
        more = f" and {len(peers) - 3} more" if len(peers) > 3 else ""
        where = (
            f"the fabric path of {fmt_hosts(j.run.hosts)} (NICs, cables, switch ports "
            "of these nodes)"
            if j.kind in MULTI_NODE_KINDS
            else f"node {fmt_hosts(j.run.hosts)}"
        )
        median = f"the median {ref:.1f} GB/s of the other {len(peers)} run(s) of this sweep"
        reason = (
            f"{j.run.collective} busbw {bus:.1f} GB/s at {fmt_size(measure.size_bytes)} is "
            f"{below(bus, ref, median)} ({names}{more}): the fault is on {where}"
        )
        if j.verdict.status is Status.PASS:
            reasons = [r for r in reasons if r.startswith("note:")]
        reasons.insert(0, reason)
        new_status = worst([j.verdict.status, status])
    verdict = replace(j.verdict, status=new_status, reasons=reasons, metrics=metrics)
    return replace(j, verdict=verdict)


def judge_logs(
    logs: list[NcclLog], thresholds: ThresholdSet, options: JudgeOptions, peers: bool = False
) -> list[RunJudgement]:
    """Judge many logs: each run alone and, for a sweep of one cluster (`peers`), each
    run against the others of the same collective and shape."""
    judgements: list[RunJudgement] = []
    for log in logs:
        judgements.extend(judge_log(log, thresholds, options))
    return judge_peers(judgements) if peers else judgements


def pair_matrix(
    judgements: list[RunJudgement], collective: str | None = None
) -> tuple[dict[tuple[str, str], float | None], dict[tuple[str, str], Status], str | None]:
    """Node-pair results of 2-node runs of one collective, for the report's heatmap.

    `collective` defaults to the one with the most 2-node runs; the worst run of a
    pair wins. Returns (busbw by pair, status by pair, collective).
    """
    pairs = [j for j in judgements if len(j.run.hosts) == 2 and j.kind != "nic"]
    if collective is None:
        counts = Counter(j.run.collective for j in pairs if j.run.collective)
        collective = counts.most_common(1)[0][0] if counts else None
    values: dict[tuple[str, str], float | None] = {}
    statuses: dict[tuple[str, str], Status] = {}
    for j in pairs:
        if j.run.collective != collective:
            continue
        a, b = sorted(j.run.hosts)
        key = (a, b)
        previous = statuses.get(key)
        if previous is None or j.verdict.status.rank > previous.rank:
            statuses[key] = j.verdict.status
            values[key] = j.busbw_gbps
    return values, statuses, collective
