"""Parser for nccl-tests output (all_reduce_perf, all_gather_perf, alltoall_perf, ...).

One log may hold several tests (a script that runs each collective in turn),
launcher prefixes (`srun --label` writes `  0: `, Open MPI `--tag-output` writes
`[1,0]<stdout>:`, even in the middle of a line), thousands of `NCCL INFO` lines
and error lines from processes that died. `parse_nccl_log` turns all of that
into typed records; it never judges (see `gpufleet.verify.judge`).

Column layout (nccl-tests src/common.cu): size, count, type, redop, root, then
time/algbw/busbw/#wrong out-of-place and the same in-place. `#wrong` reads
`N/A` where the test cannot check in-place results (alltoall, sendrecv) or
validation is off; any cell reading `N/A` becomes None.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

from gpufleet.errors import Problem, UserError

# Bytes per element of the types nccl-tests prints in the `type` column.
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

# Launcher prefixes. Open MPI's tag may appear anywhere in a line because
# each write() of a rank is tagged separately.
_OMPI_TAG = re.compile(r"\[\d+,\d+\]<std(?:out|err)>:")
_SRUN_LABEL = re.compile(r"^\s{0,6}\d{1,5}: ")

_VERSION = re.compile(r"^#\s*nccl-tests version\s+(\S+)(.*)$")
_STARTING = re.compile(r"^#\s*Collective test starting:\s*(\S+)")
_CONCLUDED = re.compile(r"^#\s*Collective test concluded:\s*(\S+)")
_PARAMS = re.compile(r"^#\s*nThread\s+\d+")
_USING_DEVICES = re.compile(r"^#\s*Using devices")
_DEVICE = re.compile(
    r"^#\s*Rank\s+(?P<rank>\d+)(?:\s+Group\s+(?P<group>\d+))?\s+Pid\s+(?P<pid>\d+)\s+on\s+"
    r"(?P<host>\S+)\s+device\s+(?P<device>\d+)\s+\[(?P<busid>[^\]]*)\]\s*(?P<model>.*?)\s*$"
)
_REDUCING = re.compile(r"^#\s*Reducing maxBytes to\s+(\d+)")
_TABLE_HEADER = re.compile(r"^#\s*size\s+count\s+type\s+")
_OOB = re.compile(r"^#\s*Out of bounds values\s*:\s*(\d+)\s*(\S*)")
_AVG = re.compile(r"^#\s*Avg bus bandwidth\s*:\s*(\S+)")
_ROW_LIKE = re.compile(r"^\s*\d+\s+\d+\s+[A-Za-z]\w*\s+")
_NCCL_VERSION = re.compile(r"NCCL version\s+(\d+\.\d+\.\d+\S*)")
_NCCL_INFO = re.compile(r"\bNCCL INFO\b")
_NCCL_WARN = re.compile(r"\bNCCL WARN\b")
_ELISION = re.compile(r"^\s*(?:\.\.\.|\[\.\.\.\]|…)\s*$")
# Lines that report a failure of the test or of a process.
_ERROR_PATTERNS = (
    re.compile(r"Test (?:NCCL|CUDA) failure"),
    re.compile(r"\bTest failure\b"),
    re.compile(r"remote process exited"),
    re.compile(r"\bnccl\w*Error\b"),
    re.compile(r"NCCL error", re.IGNORECASE),
    re.compile(r"mpirun noticed that process"),
    re.compile(r"exited on signal"),
    re.compile(r"^srun: error"),
    re.compile(r"Segmentation fault|Bus error|core dumped"),
    re.compile(r"Primary job\s+terminated normally, but"),
    re.compile(r"^(?:ERROR|Error):"),
)
# NCCL INFO lines worth keeping: they say which transport and algorithm ran.
_NOTABLE_INFO = re.compile(
    r"Using network|NET/Socket|NET/IB|NET/OFI Selected|NVLS|NCCL_ALGO|NCCL_PROTO|"
    r"NCCL_IB_DISABLE|NCCL_NET |NCCL_SOCKET_IFNAME|NCCL_IB_HCA|CollNet|SHARP|comm \S+ rank \d+ "
    r"nranks \d+ .*Init COMPLETE"
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


@dataclass
class NcclLog:
    """Everything read from one log file."""

    source: str
    runs: list[NcclRun]
    partial: bool = False
    notes: list[str] = field(default_factory=list)
    errors: list[LogLine] = field(default_factory=list)
    info_count: int = 0


def strip_launcher_prefixes(line: str) -> list[str]:
    """Remove launcher tags; split a line where another rank's output was spliced in.

    Open MPI tags each write of each rank, so `[1,0]<stdout>: 8 2 float sum -1[1,0]<stdout>: 85.70`
    is one row of rank 0, while a `[1,3]<stdout>:` part inside it is rank 3's own line.
    """
    tags = list(_OMPI_TAG.finditer(line))
    if not tags:
        return [_SRUN_LABEL.sub("", line, count=1)]
    head = line[: tags[0].start()]
    first_tag = tags[0].group(0)
    own: list[str] = [head] if head.strip() else []
    others: list[str] = []
    for i, tag in enumerate(tags):
        end = tags[i + 1].start() if i + 1 < len(tags) else len(line)
        segment = line[tag.end() : end]
        if tag.group(0) == first_tag:
            own.append(segment)
        else:
            others.append(segment)
    return ["".join(own), *others]


def _to_float(token: str) -> float | None:
    if token.upper() == "N/A":
        return None
    return float(token)


def _to_wrong(token: str) -> int | None:
    if token.upper() == "N/A":
        return None
    # Old nccl-tests printed an `error` column as a float (e.g. 0e+00).
    value = float(token)
    return int(value) if value == int(value) else 1


def _parse_params(text: str) -> TestParams:
    values: dict[str, int | None] = {}
    for key, rx in _PARAM_INT.items():
        m = rx.search(text)
        values[key] = int(m.group(1)) if m else None
    step = _FACTOR.search(text)
    factor = int(step.group(1)) if step and step.group(2) == "factor" else None
    step_bytes = int(step.group(1)) if step and step.group(2) == "bytes" else None
    return TestParams(step_factor=factor, step_bytes=step_bytes, **values)


def _parse_columns(text: str) -> tuple[str, ...]:
    tokens = text.lstrip("#").split()
    return tuple(tokens) if len(tokens) >= 8 else DEFAULT_COLUMNS


def _parse_row(text: str, lineno: int, columns: tuple[str, ...], source: str) -> SizeRow:
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
            halves_parsed.append(
                Measurement(_to_float(t), _to_float(a), _to_float(b), _to_wrong(w))
            )
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


def _collective_from_binary(binary: str) -> str | None:
    name = binary.rsplit("/", 1)[-1].removesuffix("_perf").removesuffix("_mpi")
    return name if name in COLLECTIVES else None


def _is_error(text: str) -> bool:
    return any(rx.search(text) for rx in _ERROR_PATTERNS)


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.runs: list[NcclRun] = []
        self.current: NcclRun | None = None
        self.in_table = False
        self.pending_version: tuple[str, str] | None = None
        self.pending_binary: str | None = None
        self.pending_line: int | None = None
        self.log = NcclLog(source=source, runs=self.runs)
        self.nccl_version: str | None = None
        self.recognised = 0
        self.early_info: list[LogLine] = []

    def _new_run(self, lineno: int) -> NcclRun:
        self.in_table = False
        run = NcclRun(start_line=self.pending_line or lineno)
        if self.pending_version:
            run.tests_version = self.pending_version[0]
        if self.pending_binary:
            run.binary = self.pending_binary
            run.collective = _collective_from_binary(self.pending_binary)
        self.pending_version = None
        self.pending_binary = None
        self.pending_line = None
        self.runs.append(run)
        self.current = run
        return run

    def _run_started(self) -> bool:
        run = self.current
        return run is not None and (
            run.params != TestParams() or bool(run.devices) or bool(run.rows) or run.concluded
        )

    def feed(self, lineno: int, text: str) -> None:
        stripped = text.strip()
        if not stripped:
            return
        if m := _VERSION.match(stripped):
            self.recognised += 1
            if self._run_started():
                self.current = None
            self.pending_version = (m.group(1), m.group(2).strip())
            self.pending_line = self.pending_line or lineno
            return
        if m := _STARTING.match(stripped):
            self.recognised += 1
            if self._run_started():
                self.current = None
            self.pending_binary = m.group(1)
            self.pending_line = self.pending_line or lineno
            return
        if _PARAMS.match(stripped):
            self.recognised += 1
            if self.current is None or self._run_started():
                self._new_run(lineno)
            assert self.current is not None
            self.current.params = _parse_params(stripped)
            return
        if m := _CONCLUDED.match(stripped):
            self.recognised += 1
            run = self.current or self._new_run(lineno)
            run.concluded = True
            run.binary = run.binary or m.group(1)
            run.collective = run.collective or _collective_from_binary(m.group(1))
            self.in_table = False
            self.current = None
            return
        if _ELISION.match(stripped):
            self.log.partial = True
            self.log.notes.append(
                f"line {lineno}: the output is an excerpt (lines elided with "
                f"{stripped!r}); checks that need the whole log are limited"
            )
            return
        run = self.current
        if m := _DEVICE.match(stripped):
            self.recognised += 1
            run = run or self._new_run(lineno)
            run.devices.append(
                Device(
                    rank=int(m["rank"]),
                    group=int(m["group"]) if m["group"] is not None else None,
                    pid=int(m["pid"]),
                    host=m["host"],
                    device=int(m["device"]),
                    busid=m["busid"],
                    model=m["model"],
                )
            )
            return
        if _USING_DEVICES.match(stripped):
            self.recognised += 1
            run = run or self._new_run(lineno)
            return
        if m := _REDUCING.match(stripped):
            run = run or self._new_run(lineno)
            run.reduced_max_bytes = int(m.group(1))
            return
        if _TABLE_HEADER.match(stripped):
            self.recognised += 1
            run = run or self._new_run(lineno)
            if run.rows:
                run = self._new_run(lineno)
            run.columns = _parse_columns(stripped)
            self.in_table = True
            return
        if m := _OOB.match(stripped):
            self.recognised += 1
            run = run or self._new_run(lineno)
            run.out_of_bounds = int(m.group(1))
            run.out_of_bounds_ok = m.group(2).upper() == "OK" if m.group(2) else None
            self.in_table = False
            return
        if m := _AVG.match(stripped):
            self.recognised += 1
            run = run or self._new_run(lineno)
            try:
                run.avg_busbw_gbps = float(m.group(1))
            except ValueError:
                run.notes.append(f"line {lineno}: unreadable average bus bandwidth {m.group(1)!r}")
            self.in_table = False
            return
        if _NCCL_WARN.search(stripped):
            target = run.warnings if run else self.log.errors
            target.append(LogLine(lineno, stripped))
            return
        if _NCCL_INFO.search(stripped):
            self.log.info_count += 1
            if m := _NCCL_VERSION.search(stripped):
                self.nccl_version = self.nccl_version or m.group(1)
            if run is not None:
                run.info_count += 1
                if _NOTABLE_INFO.search(stripped):
                    run.info.append(LogLine(lineno, stripped))
            elif _NOTABLE_INFO.search(stripped):
                # Init lines of some launchers come before the header of the first test.
                self.early_info.append(LogLine(lineno, stripped))
            return
        if _ROW_LIKE.match(text) and not stripped.startswith("#"):
            if run is None or not self.in_table:
                if run is not None and run.columns and run.rows:
                    # Rows after the summary lines of a test: a second table without header.
                    self.in_table = True
                else:
                    return
            self.recognised += 1
            run.rows.append(_parse_row(stripped, lineno, run.columns, self.source))
            return
        if m := _NCCL_VERSION.search(stripped):
            self.nccl_version = self.nccl_version or m.group(1)
            return
        if _is_error(stripped):
            self.recognised += 1
            (run.errors if run else self.log.errors).append(LogLine(lineno, stripped))
            return


def parse_nccl_log(text: str, source: str = "") -> NcclLog:
    """Read nccl-tests output; raise NcclParseError (a UserError) if it is not one."""
    builder = _Builder(source or "nccl-tests log")
    lineno = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        for part in strip_launcher_prefixes(raw):
            builder.feed(lineno, part)
    log = builder.log
    if builder.recognised == 0:
        raise NcclParseError(
            "no nccl-tests output found (no '# nThread' header, device list or size table)",
            None,
            builder.source,
        )
    for run in log.runs:
        run.nccl_version = builder.nccl_version
        if run is log.runs[0]:
            run.info = builder.early_info + run.info
        _finish_run(run, log)
    if not log.runs and log.errors:
        log.notes.append("no test header found; only error lines")
    return log


def _finish_run(run: NcclRun, log: NcclLog) -> None:
    if run.collective is None and run.rows:
        guess = infer_collective(run)
        if guess:
            run.collective = guess
            run.collective_inferred = True
            run.notes.append(
                f"collective inferred as {guess} from the table "
                "(the log does not name the test binary)"
            )
    if run.rows:
        sizes = [r.size_bytes for r in run.rows]
        if sizes != sorted(sizes):
            run.notes.append("size rows are not in increasing order")
        if run.params.max_bytes is not None and max(sizes) > run.params.max_bytes:
            run.notes.append(
                f"the table goes up to {max(sizes)} B, beyond maxBytes "
                f"{run.params.max_bytes} in the header: header and table may come from "
                "different runs (edited excerpt?)"
            )
        if not run.devices:
            run.notes.append("no device list ('# Using devices'): ranks and hosts are unknown")
    if log.partial and "partial" not in " ".join(run.notes):
        run.notes.append("partial log: parts of the output were elided by its author")


def read_nccl_log(path: str) -> NcclLog:
    """Read and parse one log file (I/O edge of `parse_nccl_log`)."""
    from pathlib import Path

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise UserError(
            [Problem(str(p), f"cannot read: {err.strerror}", "check the path")]
        ) from None
    return parse_nccl_log(text, source=p.name)
