"""Judge parsed nccl-tests runs: pass, warn or fail, with the reason in words.

Pure functions: a parsed `NcclLog`, the `ThresholdSet` and what the caller knows
about the job (`JudgeOptions`) go in; `RunJudgement`s (a `Verdict` plus the
numbers a report plots) come out. The reasons name the measured value, the
floor and its meaning, and what to check next.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from gpufleet.verify.nccl import LogLine, NcclLog, NcclRun, SizeRow, rounding_slack
from gpufleet.verify.thresholds import Floors, NcclPack, ThresholdSet, parse_profile
from gpufleet.verify.verdict import Status, Verdict, worst

KIND_CHOICES = ("auto", "1node", "2node", "2node-ring", "multinode", "nic")
FABRIC_WORDS = {
    "ib": "InfiniBand",
    "roce": "RoCE",
    "efa": "EFA",
    "socket": "TCP socket",
    "any": "any fabric",
}
KIND_WORDS = {
    "1node": "single-node",
    "2node": "2-node",
    "multinode": "multi-node",
    "nic": "one-NIC",
}
# Smallest size at which a zero busbw means "no bandwidth" rather than rounding.
_ZERO_BUSBW_MIN_BYTES = 1 << 20
_LABEL_WORDS = {"nvls", "ring", "tree", "sharp", "collnet"}


@dataclass(frozen=True)
class JudgeOptions:
    """What the caller knows about the job that produced the log."""

    profile: str = "hgx-h100-8gpu-ib"
    kind: str = "auto"
    expected_ranks: int | None = None
    expected_max_bytes: int | None = None
    labels: frozenset[str] = frozenset()


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


def fmt_size(size: int) -> str:
    """Bytes as nccl-tests users say them: 16 GiB, 512 MiB, 8 B."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"


def fmt_hosts(hosts: list[str]) -> str:
    if not hosts:
        return "unknown hosts"
    if len(hosts) <= 3:
        return "+".join(hosts)
    return f"{hosts[0]}..{hosts[-1]} ({len(hosts)} nodes)"


def labels_from_name(name: str) -> frozenset[str]:
    """Algorithm labels in a file name: `all_reduce_nvls.out` -> {'nvls'}."""
    tokens = re.split(r"[^a-z0-9]+", name.lower())
    return frozenset(t for t in tokens if t in _LABEL_WORDS)


def detect_fabric(run: NcclRun, default: str) -> str:
    """The network NCCL says it used, from INFO lines; `default` when it does not say."""
    text = "\n".join(line.text for line in run.info)
    if re.search(r"Using network Socket|NET/Socket : Using", text):
        return "socket"
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


def _pct_below(value: float, floor: float) -> int:
    return round(100 * (floor - value) / floor) if floor else 0


def _measure_row(run: NcclRun, floors: Floors | None) -> tuple[SizeRow | None, bool]:
    """The row to judge: the largest size at or above the pack's measuring size.

    Returns (row, reached): `reached` is False when the run stops below that size
    (then the largest row is returned for information).
    """
    rows = [r for r in run.rows if r.busbw_gbps is not None]
    if not rows:
        return None, False
    largest = max(rows, key=lambda r: r.size_bytes)
    if floors is None:
        return largest, True
    slack = rounding_slack(largest, run.n_ranks)
    return largest, largest.size_bytes > floors.measure_at_bytes - slack


def _interleaving_findings(run: NcclRun, notes: list[str]) -> list[tuple[Status, str]]:
    """Rows that may belong to another run of the same file: a warning where the
    judged sizes are concerned, a note for the small, latency-bound ones."""
    sizes = sorted(run.ambiguous_sizes)
    others = ", ".join(f"line {n}" for n in sorted(run.interleaved_with))
    what = (
        f"the lines of this run and of the run starting at {others} are interleaved "
        "with nothing telling them apart (same sizes, type and op, no launch prefix)"
    )
    large = [s for s in sizes if s >= _ZERO_BUSBW_MIN_BYTES]
    if not large:
        notes.append(f"{what}: rows up to {fmt_size(sizes[-1])} may belong to either run")
        return []
    span = fmt_size(large[0]) if len(large) == 1 else f"{fmt_size(large[0])}..{fmt_size(large[-1])}"
    return [
        (
            Status.WARN,
            f"{what}: the rows at {span} may belong to the other run, so this verdict may "
            "be the other run's; give each launch its own output file (srun --output=%j.log) "
            "or a prefix naming it ([host:pid], a group with its pid)",
        )
    ]


def _summarize_errors(lines: list[LogLine]) -> str:
    """Group repeated error lines: 'X (6 times)'."""
    cleaned = []
    for line in lines:
        text = re.sub(r"\bpid \d+", "pid N", line.text).strip(" .")
        text = re.sub(r"\s*/\s*'$", "'", text)
        cleaned.append(text)
    counts = Counter(cleaned)
    parts = [f"{text} ({n} times)" if n > 1 else text for text, n in counts.most_common(3)]
    more = len(counts) - 3
    return "; ".join(parts) + (f"; and {more} other error lines" if more > 0 else "")


def _error_hosts(lines: list[LogLine], hosts: list[str]) -> list[str]:
    named = [h for h in hosts if any(h in line.text for line in lines)]
    return named


def _no_table_reasons(run: NcclRun, hosts: list[str]) -> list[str]:
    if not run.errors:
        return [
            f"{run.name} printed no size table and no error line: the output ends after "
            "the header (killed, timed out, or the log was cut)"
        ]
    reasons = [
        f"{run.name} failed before printing any size: {_summarize_errors(run.errors)}",
    ]
    text = " ".join(line.text for line in run.errors)
    reporting = _error_hosts(run.errors, hosts)
    where = f" (reported by ranks on {', '.join(reporting)})" if reporting else ""
    if "remote process exited" in text or "network error" in text:
        others = [h for h in hosts if h not in reporting]
        peer = f"; the peer is {', '.join(others)}" if others and reporting else ""
        reasons.append(
            f"a remote process exited or the network between {fmt_hosts(hosts)} failed{where}"
            f"{peer}: check the peer's log and `dmesg` for Xid errors, and the fabric links "
            "(ibstat, port counters) of these nodes; rerun each node against a known-good one "
            "to tell which side is bad"
        )
    elif reporting:
        reasons.append(f"the failing ranks run on {', '.join(reporting)}: start there")
    return reasons


def _floors_for(pack: NcclPack, labels: set[str]) -> tuple[Floors | None, str]:
    if "ring" in labels and pack.ring_busbw is not None:
        return pack.ring_busbw, "ring"
    return pack.busbw, "nvls" if pack.nvls is not None else ""


def _describe_floor(pack: NcclPack, kind: str, fabric: str, variant: str) -> str:
    if pack.site:
        return f"site baseline ({pack.name})"
    if kind == "1node":
        base = "single-node"
        if variant == "nvls":
            base += " NVLS"
        elif variant == "ring":
            base += " ring (no NVLS)"
        return base
    if kind == "nic":
        return "one-NIC (400G)"
    return f"{KIND_WORDS.get(kind, kind)} {FABRIC_WORDS.get(fabric, fabric)}"


def judge_run(
    run: NcclRun,
    thresholds: ThresholdSet,
    options: JudgeOptions,
    source: str = "",
    log: NcclLog | None = None,
) -> RunJudgement:
    """Judge one run on its own (peer comparison happens in `judge_peers`)."""
    platform, profile_fabric = parse_profile(options.profile)
    fabric = detect_fabric(run, profile_fabric)
    kind = detect_kind(run, options.kind)
    labels = _run_labels(run, options, source)
    hosts = run.hosts
    collective = run.collective or "unknown"
    findings: list[tuple[Status, str]] = []
    notes = list(run.notes)
    if log is not None:
        notes.extend(n for n in log.notes if n not in notes)
    metrics: dict[str, Any] = {
        "source": source,
        "collective": collective,
        "kind": kind,
        "fabric": fabric,
        "platform": platform,
        "hosts": hosts,
        "ranks": run.n_ranks,
        "labels": sorted(labels),
    }
    subject = f"{run.name} on {fmt_hosts(hosts)}"
    if run.n_ranks:
        subject += f" ({run.n_ranks} ranks)"
    if source:
        subject += f" [{source}]"

    pack = thresholds.nccl_pack(collective, kind, fabric, platform) if kind != "unknown" else None
    # A socket fallback has no pack of its own: judge against the fabric the profile names.
    if pack is None and fabric == "socket":
        pack = thresholds.nccl_pack(collective, kind, profile_fabric, platform)
    metrics["pack"] = pack.name if pack else None

    if not run.has_table:
        findings.extend((Status.FAIL, r) for r in _no_table_reasons(run, hosts))
        verdict = Verdict(subject, "nccl", Status.FAIL, [r for _, r in findings], metrics)
        metrics["notes"] = notes
        return RunJudgement(source, run, verdict, kind, fabric, pack, None, notes)

    metrics["curve"] = [[r.size_bytes, r.busbw_gbps] for r in run.rows if r.busbw_gbps is not None]

    # Data errors.
    bad_rows = [r for r in run.rows if r.wrong > 0]
    if bad_rows:
        first = bad_rows[0]
        total = sum(r.wrong for r in bad_rows)
        findings.append(
            (
                Status.FAIL,
                f"{total} wrong values in {len(bad_rows)} size rows (first at "
                f"{fmt_size(first.size_bytes)}): NCCL delivered corrupted data; check the GPUs "
                "for Xid/ECC errors (nvidia-smi -q -d ECC, dmesg) and NVLink/fabric error counters",
            )
        )
    if run.out_of_bounds:
        findings.append(
            (
                Status.FAIL,
                f"{run.out_of_bounds} out-of-bounds values reported: results were outside "
                "the expected range (data corruption)",
            )
        )

    # busbw 0: a build without MPI started as many single-rank processes.
    large = [r for r in run.rows if r.size_bytes >= _ZERO_BUSBW_MIN_BYTES]
    if large and all((r.busbw_gbps or 0.0) == 0.0 for r in large):
        algbw = max((r.algbw_gbps or 0.0) for r in large)
        ranks_txt = f"{run.n_ranks} rank" + ("" if run.n_ranks == 1 else "s")
        findings.append(
            (
                Status.FAIL,
                f"busbw is 0 at every size from {fmt_size(large[0].size_bytes)} up while algbw "
                f"reaches {algbw:.1f} GB/s, with {ranks_txt} in the device list: each process "
                "ran alone (busbw = algbw x 2(n-1)/n is 0 for n = 1); nccl-tests was built "
                "without MPI=1 or started without MPI: rebuild with `make MPI=1` and launch "
                "with mpirun/srun",
            )
        )

    # Rank count.
    ranks = run.n_ranks
    implied = run.ranks_from_ratio() if ranks is None else None
    if implied:
        notes.append(f"{implied} ranks implied by busbw/algbw (no device list)")
        metrics["ranks_implied"] = implied
    if options.expected_ranks is not None:
        seen = ranks if ranks is not None else implied
        if seen is not None and seen != options.expected_ranks:
            how = "listed" if ranks is not None else "implied by busbw/algbw"
            findings.append(
                (
                    Status.FAIL,
                    f"{seen} ranks {how}, the job expected {options.expected_ranks}: "
                    "processes did not join one communicator (launcher, MPI build or host "
                    "list problem), so the bandwidth is not that of the job",
                )
            )
        elif seen is None:
            notes.append("rank count unknown (no device list): expected ranks not checked")

    # Sizes: all_gather, reduce_scatter and alltoall print a little less than requested.
    sizes = [r.size_bytes for r in run.rows]
    expected = run.expected_sizes()
    partial = bool(log and log.partial)
    want_max = options.expected_max_bytes
    if want_max is not None and max(sizes) < want_max and run.size_reached(want_max) is None:
        findings.append(
            (
                Status.FAIL,
                f"the table stops at {fmt_size(max(sizes))}, the job expected sizes up to "
                f"{fmt_size(want_max)}: the run ended early or was started with a smaller -e",
            )
        )
    missing = run.missing_sizes()
    if missing and expected:
        if partial:
            notes.append(
                f"{len(missing)} sizes of the header's range are absent (partial log): "
                f"{fmt_size(missing[0])}..{fmt_size(missing[-1])}"
            )
        elif max(sizes) < expected[-1] and missing[-1] == expected[-1]:
            findings.append(
                (
                    Status.FAIL,
                    f"the table stops at {fmt_size(max(sizes))} although the header asks for "
                    f"sizes up to {fmt_size(expected[-1])}: the run ended early (killed, "
                    "timed out or crashed)",
                )
            )
        else:
            findings.append(
                (
                    Status.WARN,
                    f"{len(missing)} sizes of the header's range are missing from the table "
                    f"(first {fmt_size(missing[0])})",
                )
            )

    # Rows of two runs of one file that nothing tells apart.
    if run.ambiguous_sizes:
        findings.extend(_interleaving_findings(run, notes))

    # Log lines.
    if run.warnings:
        quoted = "; ".join(line.text for line in run.warnings[:2])
        findings.append(
            (
                Status.WARN,
                f"{len(run.warnings)} NCCL WARN lines, e.g. line {run.warnings[0].line}: "
                f"{quoted[:300]}",
            )
        )
    if run.errors:
        findings.append(
            (Status.WARN, f"error lines around the table: {_summarize_errors(run.errors)}")
        )
    if fabric == "socket":
        status = Status.FAIL if kind in ("2node", "multinode", "nic") else Status.WARN
        ib_off = any("NCCL_IB_DISABLE set by environment to 1" in li.text for li in run.info)
        cause = " (NCCL_IB_DISABLE=1 is set)" if ib_off else ""
        findings.append(
            (
                status,
                f"NCCL fell back to TCP sockets (NET/Socket){cause} instead of RDMA: check "
                "NCCL_IB_DISABLE/NCCL_NET, that the IB/RoCE devices are up (ibstat, "
                "ibv_devinfo) and visible in the container, and NCCL_IB_HCA",
            )
        )

    # Floors.
    measure: SizeRow | None = None
    if pack is None:
        why = (
            "kind unknown (no device list; pass --kind)"
            if kind == "unknown"
            else (
                f"no threshold pack for {collective} {KIND_WORDS.get(kind, kind)} on "
                f"{platform}/{fabric}"
            )
        )
        notes.append(f"{why}: judged for errors only")
        measure, _ = _measure_row(run, None)
    else:
        floors, variant = _floors_for(pack, labels)
        measure, reached = _measure_row(run, floors or pack.busbw)
        if measure is not None and measure.busbw_gbps is not None:
            bus = measure.busbw_gbps
            metrics["size_bytes"] = measure.size_bytes
            metrics["busbw_gbps"] = bus
            metrics["algbw_gbps"] = measure.algbw_gbps
            if floors is not None:
                metrics["fail_gbps"] = floors.fail_below.value if floors.fail_below else None
                metrics["warn_gbps"] = floors.warn_below.value if floors.warn_below else None
                metrics["expected_gbps"] = floors.expected.value if floors.expected else None
            if floors is not None and not reached:
                findings.append(
                    (
                        Status.WARN,
                        f"the largest size is {fmt_size(measure.size_bytes)}, below the "
                        f"{fmt_size(floors.measure_at_bytes)} the {pack.name} floors are "
                        "defined at: rerun with -e 16G to judge the bandwidth",
                    )
                )
            elif floors is not None:
                findings.extend(
                    _floor_findings(run, pack, floors, variant, measure, kind, fabric, labels)
                )
        if pack.relative is not None:
            findings.extend(_collapse_findings(run, pack, hosts, kind))

    status = worst([s for s, _ in findings])
    reasons = [r for s, r in sorted(findings, key=lambda f: -f[0].rank)]
    if status is Status.PASS and measure is not None and measure.busbw_gbps is not None:
        reasons.append(_pass_reason(measure, metrics))
    reasons.extend(f"note: {n}" for n in notes if f"note: {n}" not in reasons)
    metrics["notes"] = notes
    verdict = Verdict(subject, "nccl", status, reasons, metrics)
    return RunJudgement(source, run, verdict, kind, fabric, pack, measure, notes)


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


def _floor_findings(
    run: NcclRun,
    pack: NcclPack,
    floors: Floors,
    variant: str,
    measure: SizeRow,
    kind: str,
    fabric: str,
    labels: set[str],
) -> list[tuple[Status, str]]:
    bus = measure.busbw_gbps or 0.0
    at = fmt_size(measure.size_bytes)
    where = _describe_floor(pack, kind, fabric, variant)
    found: list[tuple[Status, str]] = []
    fail = floors.fail_below.value if floors.fail_below else None
    warn = floors.warn_below.value if floors.warn_below else None
    if fail is not None and bus < fail:
        found.append(
            (
                Status.FAIL,
                f"busbw {bus:.1f} GB/s at {at} is {_pct_below(bus, fail)}% below the {where} "
                f"floor of {fail:g} GB/s",
            )
        )
    elif warn is not None and bus < warn:
        found.append(
            (
                Status.WARN,
                f"busbw {bus:.1f} GB/s at {at} is {_pct_below(bus, warn)}% below the {where} "
                f"warning level of {warn:g} GB/s (fail floor {fail:g} GB/s)"
                if fail is not None
                else f"busbw {bus:.1f} GB/s at {at} is below the warning level of {warn:g} GB/s",
            )
        )
    if not found:
        return found
    # NVLS expected but the number is ring-level.
    if variant == "nvls" and pack.nvls is not None:
        low, high = pack.nvls.ring_level_low.value, pack.nvls.ring_level_high.value
        if low <= bus <= high:
            ring = (
                pack.ring_busbw.expected.value
                if pack.ring_busbw and pack.ring_busbw.expected
                else None
            )
            ring_txt = f" (about {ring:g} GB/s)" if ring else ""
            label = "the run is labelled NVLS but" if "nvls" in labels else "this is"
            found.append(
                (
                    Status.FAIL,
                    f"{label} ring-level bandwidth{ring_txt}: NVLink SHARP (NVLS) was not used; "
                    "check that nvidia-fabricmanager is running, that NCCL_NVLS_ENABLE is not 0 "
                    "and NCCL_ALGO does not exclude NVLS, NCCL >= 2.17, and that the GPUs "
                    "support multicast (nvidia-smi -q: Fabric state Completed)",
                )
            )
    # A multi-node all_reduce whose ring algbw equals one NIC: one rail carries it all.
    if kind not in ("2node", "multinode"):
        return found
    algbw = measure.algbw_gbps
    nic = pack.nic
    if (
        nic is not None
        and run.collective == "all_reduce"
        and nic.nics_per_node > 1
        and algbw is not None
        and 0.8 * nic.per_nic_gbps.value <= algbw <= 1.2 * nic.per_nic_gbps.value
    ):
        found.append(
            (
                found[0][0],
                f"the ring algbw of {algbw:.1f} GB/s equals one NIC "
                f"(~{nic.per_nic_gbps.value:g} GB/s per 400G NIC): check that all "
                f"{nic.nics_per_node} rails are in use (NCCL_IB_HCA, NCCL_IB_DISABLE, "
                "NCCL_SOCKET_IFNAME, ibstat on every node)",
            )
        )
    else:
        found.append(
            (
                found[0][0],
                f"the fault lies in the fabric path between {fmt_hosts(run.hosts)} (NICs, "
                "cables, switch ports) or in their PCIe/GPUDirect setup (ACS, IOMMU): "
                "compare each node with a known-good peer",
            )
        )
    return found


def _collapse_findings(
    run: NcclRun, pack: NcclPack, hosts: list[str], kind: str
) -> list[tuple[Status, str]]:
    rel = pack.relative
    assert rel is not None
    rows = [r for r in run.rows if r.busbw_gbps is not None and r.size_bytes >= 1 << 20]
    if len(rows) < 3:
        return []
    peak = max(rows, key=lambda r: r.busbw_gbps or 0.0)
    last = max(rows, key=lambda r: r.size_bytes)
    if peak is last or not peak.busbw_gbps:
        return []
    frac = (last.busbw_gbps or 0.0) / peak.busbw_gbps
    status = None
    if rel.collapse_fail_fraction and frac < rel.collapse_fail_fraction.value:
        status = Status.FAIL
    elif rel.collapse_warn_fraction and frac < rel.collapse_warn_fraction.value:
        status = Status.WARN
    if status is None:
        return []
    path = (
        f"the fabric between {fmt_hosts(hosts)}"
        if kind in ("2node", "multinode", "nic")
        else "this node"
    )
    return [
        (
            status,
            f"busbw falls from {peak.busbw_gbps:.1f} GB/s at {fmt_size(peak.size_bytes)} to "
            f"{last.busbw_gbps:.1f} GB/s at {fmt_size(last.size_bytes)} ({round(100 * frac)}% of "
            f"its peak): bandwidth collapses as messages grow, a sign of congestion, a "
            f"flapping or degraded link or PFC/ECN trouble on {path}; check port error "
            "counters and link speed (ibstat, ethtool -S) on both sides",
        )
    ]


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
            j = judgements[i]
            rel = j.pack.relative if j.pack else None
            assert rel is not None and j.busbw_gbps is not None and j.measure is not None
            peers = [judgements[k] for k in members if k != i]
            ref = statistics.median(p.busbw_gbps or 0.0 for p in peers)
            if ref <= 0:
                continue
            frac = j.busbw_gbps / ref
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
                    if j.kind in ("2node", "multinode", "nic")
                    else f"node {fmt_hosts(j.run.hosts)}"
                )
                reason = (
                    f"{j.run.collective} busbw {j.busbw_gbps:.1f} GB/s at "
                    f"{fmt_size(j.measure.size_bytes)} is {_pct_below(j.busbw_gbps, ref)}% "
                    f"below the median {ref:.1f} GB/s of the other {len(peers)} run(s) of this "
                    f"sweep ({names}{more}): the fault is on {where}"
                )
                if j.verdict.status is Status.PASS:
                    reasons = [r for r in reasons if r.startswith("note:")]
                reasons.insert(0, reason)
                new_status = worst([j.verdict.status, status])
            verdict = replace(j.verdict, status=new_status, reasons=reasons, metrics=metrics)
            out[i] = replace(j, verdict=verdict)
    return out


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
