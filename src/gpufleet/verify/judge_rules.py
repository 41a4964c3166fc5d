"""The finding rules of the nccl-tests judge, one function per thing that can be wrong.

Each rule takes the `RunContext` of one run (the run, its log, what the caller
knows, the pack that applies, the row measured) and returns findings:
`(Status, reason)`. `RULES` is the order they run in; `gpufleet.verify.judge`
composes the verdict from their findings.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpufleet.verify.nccl import LogLine, NcclLog, NcclRun, SizeRow, rounding_slack
from gpufleet.verify.thresholds import Floors, NcclPack
from gpufleet.verify.verdict import Status
from gpufleet.verify.wording import below, fmt_hosts, fmt_size

Finding = tuple[Status, str]

FABRIC_WORDS = {
    "ib": "InfiniBand",
    "roce": "RoCE",
    "efa": "EFA",
    "tcpx": "GPUDirect-TCPX/TCPXO",
    "socket": "TCP socket",
    "any": "any fabric",
}
KIND_WORDS = {
    "1node": "single-node",
    "2node": "2-node",
    "multinode": "multi-node",
    "nic": "one-NIC",
}
# Fabrics no built-in pack has floors for: their runs get an explicit "not judged".
UNJUDGED_FABRICS = ("efa", "tcpx", "socket")
MULTI_NODE_KINDS = ("2node", "multinode", "nic")
# Smallest size at which a zero busbw means "no bandwidth" rather than rounding.
LARGE_BYTES = 1 << 20


@dataclass(frozen=True)
class JudgeOptions:
    """What the caller knows about the job that produced the log."""

    profile: str = "hgx-h100-8gpu-ib"
    kind: str = "auto"
    expected_ranks: int | None = None
    expected_max_bytes: int | None = None
    labels: frozenset[str] = frozenset()


@dataclass
class RunContext:
    """One run with everything the rules need to judge it."""

    run: NcclRun
    log: NcclLog | None
    options: JudgeOptions
    platform: str
    profile_fabric: str
    fabric: str
    kind: str
    labels: set[str]
    pack: NcclPack | None
    measure: SizeRow | None
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def hosts(self) -> list[str]:
        return self.run.hosts

    @property
    def partial(self) -> bool:
        return bool(self.log and self.log.partial)


def summarize_errors(lines: list[LogLine]) -> str:
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


def no_table_reasons(run: NcclRun) -> list[str]:
    """Why a run printed no size table, and where to look."""
    if not run.errors:
        return [
            f"{run.name} printed no size table and no error line: the output ends after "
            "the header (killed, timed out, or the log was cut)"
        ]
    hosts = run.hosts
    reasons = [f"{run.name} failed before printing any size: {summarize_errors(run.errors)}"]
    text = " ".join(line.text for line in run.errors)
    reporting = [h for h in hosts if any(h in line.text for line in run.errors)]
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


# ---------------------------------------------------------------- rules


def data_errors(ctx: RunContext) -> list[Finding]:
    """Wrong values and out-of-bounds values: NCCL delivered corrupted data."""
    found: list[Finding] = []
    bad_rows = [r for r in ctx.run.rows if r.wrong > 0]
    if bad_rows:
        total = sum(r.wrong for r in bad_rows)
        found.append(
            (
                Status.FAIL,
                f"{total} wrong values in {len(bad_rows)} size rows (first at "
                f"{fmt_size(bad_rows[0].size_bytes)}): NCCL delivered corrupted data; check the "
                "GPUs for Xid/ECC errors (nvidia-smi -q -d ECC, dmesg) and NVLink/fabric error "
                "counters",
            )
        )
    if ctx.run.out_of_bounds:
        found.append(
            (
                Status.FAIL,
                f"{ctx.run.out_of_bounds} out-of-bounds values reported: results were outside "
                "the expected range (data corruption)",
            )
        )
    return found


def zero_busbw(ctx: RunContext) -> list[Finding]:
    """busbw 0 at every large size: a build without MPI started as many single-rank jobs."""
    run = ctx.run
    large = [r for r in run.rows if r.size_bytes >= LARGE_BYTES]
    if not large or any((r.busbw_gbps or 0.0) != 0.0 for r in large):
        return []
    algbw = max((r.algbw_gbps or 0.0) for r in large)
    ranks_txt = f"{run.n_ranks} rank" + ("" if run.n_ranks == 1 else "s")
    return [
        (
            Status.FAIL,
            f"busbw is 0 at every size from {fmt_size(large[0].size_bytes)} up while algbw "
            f"reaches {algbw:.1f} GB/s, with {ranks_txt} in the device list: each process "
            "ran alone (busbw = algbw x 2(n-1)/n is 0 for n = 1); nccl-tests was built "
            "without MPI=1 or started without MPI: rebuild with `make MPI=1` and launch "
            "with mpirun/srun",
        )
    ]


def rank_count(ctx: RunContext) -> list[Finding]:
    """The ranks listed (or implied by busbw/algbw) against the ranks the job expected."""
    run = ctx.run
    ranks = run.n_ranks
    implied = run.ranks_from_ratio() if ranks is None else None
    if implied:
        ctx.notes.append(f"{implied} ranks implied by busbw/algbw (no device list)")
        ctx.metrics["ranks_implied"] = implied
    want = ctx.options.expected_ranks
    if want is None:
        return []
    seen = ranks if ranks is not None else implied
    if seen is None:
        ctx.notes.append("rank count unknown (no device list): expected ranks not checked")
        return []
    if seen == want:
        return []
    how = "listed" if ranks is not None else "implied by busbw/algbw"
    return [
        (
            Status.FAIL,
            f"{seen} ranks {how}, the job expected {want}: processes did not join one "
            "communicator (launcher, MPI build or host list problem), so the bandwidth is not "
            "that of the job",
        )
    ]


def sizes(ctx: RunContext) -> list[Finding]:
    """The table reaches the sizes asked for (rounded rows count as reached)."""
    run = ctx.run
    largest = max(r.size_bytes for r in run.rows)
    found: list[Finding] = []
    want_max = ctx.options.expected_max_bytes
    if want_max is not None and largest < want_max and run.size_reached(want_max) is None:
        found.append(
            (
                Status.FAIL,
                f"the table stops at {fmt_size(largest)}, the job expected sizes up to "
                f"{fmt_size(want_max)}: the run ended early or was started with a smaller -e",
            )
        )
    expected = run.expected_sizes()
    missing = run.missing_sizes()
    if not (missing and expected):
        return found
    if ctx.partial:
        ctx.notes.append(
            f"{len(missing)} sizes of the header's range are absent (partial log): "
            f"{fmt_size(missing[0])}..{fmt_size(missing[-1])}"
        )
    elif largest < expected[-1] and missing[-1] == expected[-1]:
        found.append(
            (
                Status.FAIL,
                f"the table stops at {fmt_size(largest)} although the header asks for "
                f"sizes up to {fmt_size(expected[-1])}: the run ended early (killed, "
                "timed out or crashed)",
            )
        )
    else:
        found.append(
            (
                Status.WARN,
                f"{len(missing)} sizes of the header's range are missing from the table "
                f"(first {fmt_size(missing[0])})",
            )
        )
    return found


def interleaving(ctx: RunContext) -> list[Finding]:
    """Rows that may belong to another run of the same file: a warning where the
    judged sizes are concerned, a note for the small, latency-bound ones."""
    run = ctx.run
    if not run.ambiguous_sizes:
        return []
    ambiguous = sorted(run.ambiguous_sizes)
    others = ", ".join(f"line {n}" for n in sorted(run.interleaved_with))
    what = (
        f"the lines of this run and of the run starting at {others} are interleaved "
        "with nothing telling them apart (same sizes, type and op, no launch prefix)"
    )
    large = [s for s in ambiguous if s >= LARGE_BYTES]
    if not large:
        ctx.notes.append(f"{what}: rows up to {fmt_size(ambiguous[-1])} may belong to either run")
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


def log_lines(ctx: RunContext) -> list[Finding]:
    """NCCL WARN lines and error lines around a table."""
    run = ctx.run
    found: list[Finding] = []
    if run.warnings:
        quoted = "; ".join(line.text for line in run.warnings[:2])
        found.append(
            (
                Status.WARN,
                f"{len(run.warnings)} NCCL WARN lines, e.g. line {run.warnings[0].line}: "
                f"{quoted[:300]}",
            )
        )
    if run.errors:
        found.append((Status.WARN, f"error lines around the table: {summarize_errors(run.errors)}"))
    return found


def socket_fallback(ctx: RunContext) -> list[Finding]:
    """NCCL fell back to TCP sockets on a site whose fabric is RDMA (or offloaded TCP)."""
    if ctx.fabric != "socket" or ctx.profile_fabric == "socket":
        return []
    status = Status.FAIL if ctx.kind in MULTI_NODE_KINDS else Status.WARN
    ib_off = any("NCCL_IB_DISABLE set by environment to 1" in li.text for li in ctx.run.info)
    cause = " (NCCL_IB_DISABLE=1 is set)" if ib_off else ""
    return [
        (
            status,
            f"NCCL fell back to TCP sockets (NET/Socket){cause} instead of "
            f"{FABRIC_WORDS.get(ctx.profile_fabric, 'RDMA')}: check NCCL_IB_DISABLE/NCCL_NET, "
            "that the IB/RoCE devices are up (ibstat, ibv_devinfo) and visible in the container, "
            "and NCCL_IB_HCA",
        )
    ]


def floors_for(pack: NcclPack, labels: set[str]) -> tuple[Floors | None, str]:
    """The floors a run is judged against: ring floors for a ring run, else the pack's."""
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


def bandwidth_floors(ctx: RunContext) -> list[Finding]:
    """busbw at the largest size against the pack's warn and fail floors."""
    pack, measure = ctx.pack, ctx.measure
    if pack is None or measure is None or measure.busbw_gbps is None:
        return []
    floors, variant = floors_for(pack, ctx.labels)
    if floors is None:
        return []
    ctx.metrics["fail_gbps"] = floors.fail_below.value if floors.fail_below else None
    ctx.metrics["warn_gbps"] = floors.warn_below.value if floors.warn_below else None
    ctx.metrics["expected_gbps"] = floors.expected.value if floors.expected else None
    slack = rounding_slack(measure, ctx.run.n_ranks)
    if measure.size_bytes <= floors.measure_at_bytes - slack:
        return [
            (
                Status.WARN,
                f"the largest size is {fmt_size(measure.size_bytes)}, below the "
                f"{fmt_size(floors.measure_at_bytes)} the {pack.name} floors are "
                "defined at: rerun with -e 16G to judge the bandwidth",
            )
        ]
    found = _below_floor(ctx, pack, floors, variant, measure)
    if not found:
        return found
    found.extend(_nvls_missing(ctx, pack, variant, measure.busbw_gbps))
    if ctx.kind in ("2node", "multinode"):
        found.append((found[0][0], _fabric_path(ctx, pack, measure)))
    return found


def _below_floor(
    ctx: RunContext, pack: NcclPack, floors: Floors, variant: str, measure: SizeRow
) -> list[Finding]:
    bus = measure.busbw_gbps or 0.0
    at = fmt_size(measure.size_bytes)
    # A socket fallback is judged against the floor of the site's own fabric.
    fabric = ctx.profile_fabric if ctx.fabric == "socket" else ctx.fabric
    where = _describe_floor(pack, ctx.kind, fabric, variant)
    fail = floors.fail_below.value if floors.fail_below else None
    warn = floors.warn_below.value if floors.warn_below else None
    if fail is not None and bus < fail:
        text = below(bus, fail, f"the {where} floor of {fail:g} GB/s")
        return [(Status.FAIL, f"busbw {bus:.1f} GB/s at {at} is {text}")]
    if warn is not None and bus < warn:
        level = f"the {where} warning level of {warn:g} GB/s"
        tail = f" (fail floor {fail:g} GB/s)" if fail is not None else ""
        return [(Status.WARN, f"busbw {bus:.1f} GB/s at {at} is {below(bus, warn, level)}{tail}")]
    return []


def _nvls_missing(ctx: RunContext, pack: NcclPack, variant: str, bus: float) -> list[Finding]:
    """NVLS expected but the number is ring-level."""
    if variant != "nvls" or pack.nvls is None:
        return []
    low, high = pack.nvls.ring_level_low.value, pack.nvls.ring_level_high.value
    if not low <= bus <= high:
        return []
    ring = pack.ring_busbw.expected.value if pack.ring_busbw and pack.ring_busbw.expected else None
    ring_txt = f" (about {ring:g} GB/s)" if ring else ""
    label = "the run is labelled NVLS but" if "nvls" in ctx.labels else "this is"
    return [
        (
            Status.FAIL,
            f"{label} ring-level bandwidth{ring_txt}: NVLink SHARP (NVLS) was not used; "
            "check that nvidia-fabricmanager is running, that NCCL_NVLS_ENABLE is not 0 "
            "and NCCL_ALGO does not exclude NVLS, NCCL >= 2.17, and that the GPUs "
            "support multicast (nvidia-smi -q: Fabric state Completed)",
        )
    ]


def _fabric_path(ctx: RunContext, pack: NcclPack, measure: SizeRow) -> str:
    """Where a slow multi-node run points: one rail carrying it all, or the fabric path."""
    algbw, nic = measure.algbw_gbps, pack.nic
    if (
        nic is not None
        and ctx.run.collective == "all_reduce"
        and nic.nics_per_node > 1
        and algbw is not None
        and 0.8 * nic.per_nic_gbps.value <= algbw <= 1.2 * nic.per_nic_gbps.value
    ):
        return (
            f"the ring algbw of {algbw:.1f} GB/s equals one NIC "
            f"(~{nic.per_nic_gbps.value:g} GB/s per 400G NIC): check that all "
            f"{nic.nics_per_node} rails are in use (NCCL_IB_HCA, NCCL_IB_DISABLE, "
            "NCCL_SOCKET_IFNAME, ibstat on every node)"
        )
    return (
        f"the fault lies in the fabric path between {fmt_hosts(ctx.hosts)} (NICs, "
        "cables, switch ports) or in their PCIe/GPUDirect setup (ACS, IOMMU): "
        "compare each node with a known-good peer"
    )


def collapse(ctx: RunContext) -> list[Finding]:
    """busbw that falls as messages grow: congestion or a flapping link."""
    pack = ctx.pack
    if pack is None or pack.relative is None:
        return []
    rel = pack.relative
    rows = [r for r in ctx.run.rows if r.busbw_gbps is not None and r.size_bytes >= LARGE_BYTES]
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
        f"the fabric between {fmt_hosts(ctx.hosts)}"
        if ctx.kind in MULTI_NODE_KINDS
        else ("this node")
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


Rule = Callable[[RunContext], list[Finding]]

RULES: tuple[Rule, ...] = (
    data_errors,
    zero_busbw,
    rank_count,
    sizes,
    interleaving,
    log_lines,
    socket_fallback,
    bandwidth_floors,
    collapse,
)
