"""Records of a parsed nccl-tests log: runs, devices, size rows, parameters.

See `gpufleet.verify.nccl` for the parser and what the fields mean.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

from gpufleet.errors import Problem, UserError

TYPE_SIZES: dict[str, int] = {
    "int8": 1,
    "uint8": 1,
    "f8e4m3": 1,
    "f8e5m2": 1,
    "half": 2,
    "bfloat16": 2,
    "int32": 4,
    "uint32": 4,
    "float": 4,
    "int64": 8,
    "uint64": 8,
    "double": 8,
}

COLLECTIVES: tuple[str, ...] = (
    "all_reduce",
    "all_gather",
    "reduce_scatter",
    "alltoall",
    "broadcast",
    "reduce",
    "sendrecv",
    "gather",
    "scatter",
    "hypercube",
)

_FACTOR = re.compile(r"step:\s*(\d+)\((factor|bytes)\)")
_PARAM_INT = {
    "n_thread": re.compile(r"nThread\s+(\d+)"),
    "n_gpus": re.compile(r"nGpus\s+(\d+)"),
    "min_bytes": re.compile(r"minBytes\s+(\d+)"),
    "max_bytes": re.compile(r"maxBytes\s+(\d+)"),
    "warmup_iters": re.compile(r"warmup iters:\s*(\d+)"),
    "iters": re.compile(r"(?<!warmup )(?<!agg )iters:\s*(\d+)"),
    "agg_iters": re.compile(r"agg iters:\s*(\d+)"),
    "validation": re.compile(r"validation:\s*(\d+)"),
    "graph": re.compile(r"graph:\s*(\d+)"),
}
# NCCL INFO lines worth keeping: they say which transport and algorithm ran.
NOTABLE_INFO = re.compile(
    r"Using network|NET/Socket|NET/IB|NET/OFI Selected|NVLS|NCCL_ALGO|NCCL_PROTO|"
    r"NCCL_IB_DISABLE|NCCL_NET |NCCL_SOCKET_IFNAME|NCCL_IB_HCA|CollNet|SHARP|comm \S+ rank \d+ "
    r"nranks \d+ .*Init COMPLETE"
)
# Collectives whose count must divide by the rank count: their sizes are rounded down.
ROUNDED_COLLECTIVES = frozenset({"all_gather", "reduce_scatter", "alltoall"})

DEFAULT_COLUMNS: tuple[str, ...] = (
    "size",
    "count",
    "type",
    "redop",
    "root",
    "time",
    "algbw",
    "busbw",
    "#wrong",
    "time",
    "algbw",
    "busbw",
    "#wrong",
)


class NcclParseError(UserError):
    """nccl-tests output that cannot be read; names the line and the fix."""

    def __init__(self, message: str, line: int | None = None, source: str = "") -> None:
        where = source or "nccl-tests log"
        if line is not None:
            where = f"{where}:{line}"
        self.line = line
        super().__init__(
            [Problem(where, message, "pass the raw nccl-tests output (stdout of *_perf)")]
        )


@dataclass(frozen=True)
class LogLine:
    """A line of the log worth keeping, with its 1-based line number in the input."""

    line: int
    text: str


@dataclass(frozen=True)
class Device:
    rank: int
    group: int | None
    pid: int
    host: str
    device: int
    busid: str
    model: str


@dataclass(frozen=True)
class TestParams:
    n_thread: int | None = None
    n_gpus: int | None = None
    min_bytes: int | None = None
    max_bytes: int | None = None
    step_factor: int | None = None
    step_bytes: int | None = None
    warmup_iters: int | None = None
    iters: int | None = None
    agg_iters: int | None = None
    validation: int | None = None
    graph: int | None = None


@dataclass(frozen=True)
class Measurement:
    """One half of a size row (out-of-place or in-place); None where the cell reads N/A."""

    time_us: float | None
    algbw_gbps: float | None
    busbw_gbps: float | None
    wrong: int | None


@dataclass(frozen=True)
class SizeRow:
    size_bytes: int
    count: int
    dtype: str
    redop: str
    root: int | None
    out_of_place: Measurement
    in_place: Measurement | None
    line: int

    @property
    def busbw_gbps(self) -> float | None:
        """Out-of-place bus bandwidth, the in-place one where out-of-place is N/A."""
        if self.out_of_place.busbw_gbps is not None:
            return self.out_of_place.busbw_gbps
        return self.in_place.busbw_gbps if self.in_place else None

    @property
    def algbw_gbps(self) -> float | None:
        if self.out_of_place.algbw_gbps is not None:
            return self.out_of_place.algbw_gbps
        return self.in_place.algbw_gbps if self.in_place else None

    @property
    def wrong(self) -> int:
        """Wrong values in both halves (N/A counts as 0)."""
        total = self.out_of_place.wrong or 0
        if self.in_place is not None:
            total += self.in_place.wrong or 0
        return total


@dataclass
class NcclRun:
    """One test of a log: header, devices, the size table and what went wrong."""

    start_line: int
    binary: str | None = None
    collective: str | None = None
    collective_inferred: bool = False
    tests_version: str | None = None
    nccl_version: str | None = None
    params: TestParams = field(default_factory=TestParams)
    reduced_max_bytes: int | None = None
    devices: list[Device] = field(default_factory=list)
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    rows: list[SizeRow] = field(default_factory=list)
    out_of_bounds: int | None = None
    out_of_bounds_ok: bool | None = None
    avg_busbw_gbps: float | None = None
    concluded: bool = False
    errors: list[LogLine] = field(default_factory=list)
    warnings: list[LogLine] = field(default_factory=list)
    info: list[LogLine] = field(default_factory=list)
    info_count: int = 0
    notes: list[str] = field(default_factory=list)
    # The launch prefix of its lines (`[host:pid]`, a pod, a group), when there was one.
    launch: str | None = None
    # Sizes whose row could as well belong to another run of the file (start lines in
    # `interleaved_with`): the two runs' lines interleave with nothing telling them apart.
    ambiguous_sizes: list[int] = field(default_factory=list)
    interleaved_with: list[int] = field(default_factory=list)

    @property
    def hosts(self) -> list[str]:
        """Hosts in rank order, each once."""
        seen: dict[str, None] = {}
        for dev in sorted(self.devices, key=lambda d: d.rank):
            seen.setdefault(dev.host, None)
        return list(seen)

    @property
    def n_ranks(self) -> int | None:
        return len({d.rank for d in self.devices}) if self.devices else None

    @property
    def has_table(self) -> bool:
        return bool(self.rows)

    @property
    def name(self) -> str:
        if self.binary:
            return self.binary
        return f"{self.collective}_perf" if self.collective else "nccl-tests"

    def expected_sizes(self) -> list[int]:
        """Sizes the header promises: minBytes stepping up to (reduced) maxBytes."""
        p = self.params
        if p.min_bytes is None or p.max_bytes is None:
            return []
        top = min(p.max_bytes, self.reduced_max_bytes or p.max_bytes)
        sizes: list[int] = []
        size = p.min_bytes
        while size <= top and len(sizes) < 64:
            sizes.append(size)
            if p.step_factor and p.step_factor > 1:
                size *= p.step_factor
            elif p.step_bytes and p.step_bytes > 0:
                size += p.step_bytes
            else:
                break
            if size <= 0:
                break
        return sizes

    def size_reached(self, requested: int) -> SizeRow | None:
        """The row that ran `requested` bytes: that size, or a little less where the
        collective rounds the count down to a multiple of the rank count."""
        for row in self.rows:
            if requested - rounding_slack(row, self.n_ranks) < row.size_bytes <= requested:
                return row
        return None

    def missing_sizes(self) -> list[int]:
        """Requested sizes of the header's range without a row."""
        return [s for s in self.expected_sizes() if self.size_reached(s) is None]

    def ranks_from_ratio(self) -> int | None:
        """Rank count implied by busbw/algbw (nccl-tests doc/PERFORMANCE.md factors)."""
        ratios = [
            r.busbw_gbps / r.algbw_gbps
            for r in self.rows
            if r.algbw_gbps and r.busbw_gbps and r.algbw_gbps >= 1.0
        ]
        if not ratios or self.collective is None:
            return None
        ratio = statistics.median(ratios)
        if self.collective == "all_reduce" and ratio < 2.0:
            return round(2.0 / (2.0 - ratio))
        if self.collective in ("all_gather", "reduce_scatter", "alltoall") and ratio < 1.0:
            return round(1.0 / (1.0 - ratio))
        return None


def row_ranks_of(size: int, count: int, dtype: str) -> int | None:
    """Ranks a row's size/count ratio implies (all_gather, alltoall: count is per rank)."""
    width = TYPE_SIZES.get(dtype)
    if not width or count <= 0:
        return None
    return max(1, round(size / (count * width)))


def row_ranks(row: SizeRow) -> int | None:
    return row_ranks_of(row.size_bytes, row.count, row.dtype)


def size_slack(dtype: str, ranks: int) -> int:
    """Bytes a row may lack against its requested size: all_gather aligns each rank's
    count to 4 elements, alltoall to 16 bytes, after dividing by the rank count."""
    width = TYPE_SIZES.get(dtype, 8)
    return max(1, ranks) * (4 * width + 16) + width


def rounding_slack(row: SizeRow, ranks: int | None) -> int:
    return size_slack(row.dtype, max(ranks or 1, row_ranks(row) or 1))


@dataclass
class NcclLog:
    """Everything read from one log file."""

    source: str
    runs: list[NcclRun]
    partial: bool = False
    notes: list[str] = field(default_factory=list)
    errors: list[LogLine] = field(default_factory=list)
    info_count: int = 0


def to_float(token: str) -> float | None:
    if token.upper() == "N/A":
        return None
    return float(token)


def to_wrong(token: str) -> int | None:
    if token.upper() == "N/A":
        return None
    # Old nccl-tests printed an `error` column as a float (e.g. 0e+00).
    value = float(token)
    return int(value) if value == int(value) else 1


def parse_params(text: str) -> TestParams:
    values: dict[str, int | None] = {}
    for key, rx in _PARAM_INT.items():
        m = rx.search(text)
        values[key] = int(m.group(1)) if m else None
    step = _FACTOR.search(text)
    factor = int(step.group(1)) if step and step.group(2) == "factor" else None
    step_bytes = int(step.group(1)) if step and step.group(2) == "bytes" else None
    return TestParams(step_factor=factor, step_bytes=step_bytes, **values)


def parse_columns(text: str) -> tuple[str, ...]:
    tokens = text.lstrip("#").split()
    return tuple(tokens) if len(tokens) >= 8 else DEFAULT_COLUMNS


def parse_row(text: str, lineno: int, columns: tuple[str, ...], source: str) -> SizeRow:
    tokens = text.split()
    has_root = "root" in columns
    fixed = 5 if has_root else 4
    halves = (len(tokens) - fixed) // 4
    if len(tokens) < fixed + 4 or (len(tokens) - fixed) % 4 or halves > 2:
        raise NcclParseError(
            f"size row has {len(tokens)} columns, expected {fixed + 8} "
            f"({' '.join(columns)}): {text.strip()[:120]!r}",
            lineno,
            source,
        )
    try:
        size = int(tokens[0])
        count = int(tokens[1])
        root = int(tokens[4]) if has_root and tokens[4].upper() != "N/A" else None
        halves_parsed: list[Measurement] = []
        for h in range(halves):
            t, a, b, w = tokens[fixed + 4 * h : fixed + 4 * h + 4]
            halves_parsed.append(Measurement(to_float(t), to_float(a), to_float(b), to_wrong(w)))
    except (ValueError, OverflowError) as err:
        raise NcclParseError(
            f"cannot read size row ({err}): {text.strip()[:120]!r}", lineno, source
        ) from None
    return SizeRow(
        size_bytes=size,
        count=count,
        dtype=tokens[2],
        redop=tokens[3],
        root=root,
        out_of_place=halves_parsed[0],
        in_place=halves_parsed[1] if halves == 2 else None,
        line=lineno,
    )


def infer_collective(run: NcclRun) -> str | None:
    """Guess the collective from the table when the log does not name the binary.

    The count column and the in-place #wrong cell tell them apart: all_reduce,
    sendrecv, broadcast and reduce count every element; all_gather,
    reduce_scatter and alltoall count one rank's share; alltoall and sendrecv
    cannot check in-place (N/A).
    """
    if not run.rows:
        return None
    row = run.rows[-1]
    width = TYPE_SIZES.get(row.dtype)
    if not width or row.count <= 0:
        return None
    full = row.count * width == row.size_bytes
    in_place_na = row.in_place is None or row.in_place.wrong is None
    validated = run.params.validation != 0 and row.out_of_place.wrong is not None
    if row.root is not None and row.root >= 0:
        return "broadcast" if row.redop == "none" else "reduce"
    if full:
        if row.redop == "none":
            return None
        return "sendrecv" if (in_place_na and validated) else "all_reduce"
    if row.redop == "none":
        return "alltoall" if (in_place_na and validated) else "all_gather"
    return "reduce_scatter"


def collective_from_binary(binary: str) -> str | None:
    name = binary.rsplit("/", 1)[-1].removesuffix("_perf").removesuffix("_mpi")
    return name if name in COLLECTIVES else None
