"""Parser for nccl-tests output (all_reduce_perf, all_gather_perf, alltoall_perf, ...).

One log may hold several tests (a script that runs each collective in turn, or
two launches appending to the same file, their lines concatenated or
interleaved), launcher prefixes of every shape, stacked (see
`gpufleet.verify.nccl_lines`), thousands of `NCCL INFO` lines and error lines
from processes that died. `parse_nccl_log` turns all of that into typed
records, one `NcclRun` per test; it never judges (see `gpufleet.verify.judge`).

Column layout (nccl-tests src/common.cu): size, count, type, redop, root, then
time/algbw/busbw/#wrong out-of-place and the same in-place. `#wrong` reads
`N/A` where the test cannot check in-place results (alltoall, sendrecv) or
validation is off; any cell reading `N/A` becomes None.

Sizes: nccl-tests steps the *requested* size from minBytes to maxBytes and
prints the size it really moved. all_gather, reduce_scatter and alltoall need a
count that divides by the rank count (and align it: 4 elements per rank in
all_gather.cu, 16 bytes in alltoall.cu), so their rows read a little less than
requested: 17179868160 for 16 GiB of doubles over 80 ranks. `size_reached`
matches a row to a requested size within that rounding.
"""

from __future__ import annotations

from pathlib import Path

from gpufleet.errors import Problem, UserError
from gpufleet.verify.nccl_lines import split_line
from gpufleet.verify.nccl_model import (
    COLLECTIVES,
    DEFAULT_COLUMNS,
    ROUNDED_COLLECTIVES,
    TYPE_SIZES,
    Device,
    LogLine,
    Measurement,
    NcclLog,
    NcclParseError,
    NcclRun,
    SizeRow,
    TestParams,
    infer_collective,
    rounding_slack,
    row_ranks,
    size_slack,
)
from gpufleet.verify.nccl_search import demultiplex

__all__ = [
    "COLLECTIVES",
    "DEFAULT_COLUMNS",
    "ROUNDED_COLLECTIVES",
    "TYPE_SIZES",
    "Device",
    "LogLine",
    "Measurement",
    "NcclLog",
    "NcclParseError",
    "NcclRun",
    "SizeRow",
    "TestParams",
    "infer_collective",
    "parse_nccl_log",
    "read_nccl_log",
    "rounding_slack",
    "row_ranks",
    "size_slack",
    "strip_launcher_prefixes",
]


def strip_launcher_prefixes(line: str) -> list[str]:
    """Remove launcher prefixes (stacked, any order); split a line where another rank's
    output was spliced in (see `gpufleet.verify.nccl_lines.split_line`)."""
    return [piece.text for piece in split_line(line)]


def parse_nccl_log(text: str, source: str = "") -> NcclLog:
    """Read nccl-tests output; raise NcclParseError (a UserError) if it is not one."""
    log = demultiplex(text.splitlines(), source or "nccl-tests log")
    for run in log.runs:
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
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise UserError(
            [Problem(str(p), f"cannot read: {err.strerror}", "check the path")]
        ) from None
    return parse_nccl_log(text, source=p.name)
