"""nccl-tests parser: recorded logs (tests/data/nccl-tests, line 1 = provenance) and
small constructed inputs for edge cases no recording covers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufleet.errors import UserError
from gpufleet.verify.nccl import (
    NcclParseError,
    parse_nccl_log,
    strip_launcher_prefixes,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl-tests"


def recording(name: str) -> str:
    """A recorded log without its provenance line."""
    text = (DATA / name).read_text(encoding="utf-8")
    assert text.startswith("# source:")
    return text.split("\n", 1)[1]


SINGLE = "h100-1node-8gpu-nvls-5collectives-cluster01.log"
EFA = "h100-aws-p5-efa-2node-allreduce-mpirun-prefix-info.log"
FAILED = "h100-2node-alltoall-sendrecv-cluster00-pair-failed.log"
PARTIAL = "h100-coreweave-64gpu-ib-sharp-allreduce-partial.log"

# constructed: a minimal single-rank-per-row header, used as a base for edge cases.
CONSTRUCTED_HEADER = """\
# nThread 1 nGpus 1 minBytes 1048576 maxBytes 4194304 step: 2(factor) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0
#
# Using devices
#  Rank  0 Group  0 Pid   1001 on node-a device  0 [0000:1b:00] NVIDIA H100 80GB HBM3
#  Rank  1 Group  0 Pid   1002 on node-a device  1 [0000:43:00] NVIDIA H100 80GB HBM3
#
#                                                              out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw  #wrong     time   algbw   busbw  #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)             (us)  (GB/s)  (GB/s)
"""  # noqa: E501 - nccl-tests column widths
CONSTRUCTED_ROWS = """\
     1048576        262144     float     sum      -1    20.00   52.43   52.43       0    20.00   52.43   52.43       0
     2097152        524288     float     sum      -1    30.00   69.91   69.91       0    30.00   69.91   69.91       0
     4194304       1048576     float     sum      -1    50.00   83.89   83.89       0    50.00   83.89   83.89       0
"""  # noqa: E501 - nccl-tests column widths
CONSTRUCTED_FOOTER = """\
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 68.74
#
"""


def test_single_node_five_collectives_parse() -> None:
    log = parse_nccl_log(recording(SINGLE), SINGLE)
    assert [r.collective for r in log.runs] == [
        "all_reduce",
        "all_gather",
        "reduce_scatter",
        "alltoall",
        "sendrecv",
    ]
    assert not log.partial
    for run in log.runs:
        assert run.tests_version == "2.17.8"
        assert run.concluded
        assert len(run.rows) == 10
        assert run.rows[0].size_bytes == 33554432
        assert run.rows[-1].size_bytes == 17179869184
        assert run.n_ranks == 8
        assert run.hosts == ["cnode3-002"]
        assert run.reduced_max_bytes == 26549638485
        assert run.out_of_bounds == 0 and run.out_of_bounds_ok
        assert [r.size_bytes for r in run.rows] == run.expected_sizes()
    allreduce = log.runs[0]
    p = allreduce.params
    assert (p.n_thread, p.n_gpus, p.min_bytes, p.max_bytes) == (1, 1, 33554432, 68719476736)
    assert (p.step_factor, p.warmup_iters, p.iters, p.agg_iters) == (2, 5, 20, 1)
    assert (p.validation, p.graph) == (1, 0)
    assert allreduce.binary == "all_reduce_perf"
    assert allreduce.avg_busbw_gbps == pytest.approx(437.957)
    last = allreduce.rows[-1]
    assert last.out_of_place.busbw_gbps == pytest.approx(482.27)
    assert last.in_place is not None and last.in_place.busbw_gbps == pytest.approx(482.12)
    assert last.out_of_place.time_us == pytest.approx(62340.7)
    assert (last.count, last.dtype, last.redop, last.root) == (2147483648, "double", "sum", -1)
    dev = allreduce.devices[3]
    assert (dev.rank, dev.group, dev.pid, dev.device) == (3, 0, 4180129, 3)
    assert dev.busid == "0000:61:00" and dev.model == "NVIDIA H100 80GB HBM3"
    # alltoall and sendrecv cannot check in-place results: nccl-tests prints N/A.
    for run in log.runs[3:]:
        assert all(r.in_place is not None and r.in_place.wrong is None for r in run.rows)
        assert all(r.out_of_place.wrong == 0 for r in run.rows)


def test_every_recording_parses() -> None:
    expected_rows = {
        "h100-2node-alltoall-sendrecv-cluster00-pair-ok.log": [10, 10],
        "h100-2node-alltoall-sendrecv-cluster00-pair-degraded.log": [10, 10],
        FAILED: [0, 0],
        EFA: [32],
        PARTIAL: [5],
        "h100-together-1node-8gpu-allreduce-nvls-label-ringlevel.log": [31],
        "h200-dgx-2node-openshift-single-iface-socket-allreduce.log": [32],
        "h200-gke-dranet-allreduce-2x1gpu-roce.log": [24],
        SINGLE: [10] * 5,
    }
    assert sorted(expected_rows) == sorted(p.name for p in DATA.glob("*.log"))
    for name, rows in expected_rows.items():
        log = parse_nccl_log(recording(name), name)
        assert [len(r.rows) for r in log.runs] == rows, name


def test_failed_pair_has_no_table_and_keeps_the_error_lines() -> None:
    log = parse_nccl_log(recording(FAILED), FAILED)
    assert [r.collective for r in log.runs] == ["alltoall", "sendrecv"]
    alltoall = log.runs[0]
    assert not alltoall.has_table
    assert alltoall.hosts == ["cnode2-008", "cnode2-009"]
    assert len(alltoall.errors) == 12
    assert "remote process exited" in alltoall.errors[0].text
    assert alltoall.errors[0].line == 22  # line 23 of the file, whose line 1 was stripped


def test_efa_log_with_prefixes_and_info_lines_equals_the_clean_table() -> None:
    raw = recording(EFA)
    # Strip what a person would strip by hand: Open MPI tags and NCCL INFO lines.
    clean_lines = []
    for line in raw.splitlines():
        line = re.sub(r"\[\d+,\d+\]<stdout>:", "", line)
        if "NCCL INFO" in line or line.startswith("Warning: Permanently added"):
            continue
        clean_lines.append(line)
    clean = "\n".join(clean_lines)
    assert "NCCL INFO" not in clean and "<stdout>" not in clean
    noisy_log = parse_nccl_log(raw, EFA)
    clean_log = parse_nccl_log(clean, "clean")
    assert noisy_log.info_count == 2881
    assert len(noisy_log.runs) == len(clean_log.runs) == 1
    noisy, tidy = noisy_log.runs[0], clean_log.runs[0]
    assert len(noisy.rows) == len(tidy.rows) == 32
    for a, b in zip(noisy.rows, tidy.rows, strict=True):
        assert (a.size_bytes, a.count, a.dtype, a.redop, a.root) == (
            b.size_bytes,
            b.count,
            b.dtype,
            b.redop,
            b.root,
        )
        assert a.out_of_place == b.out_of_place and a.in_place == b.in_place
    assert noisy.devices == tidy.devices
    assert noisy.params == tidy.params
    assert noisy.rows[-1].out_of_place.busbw_gbps == pytest.approx(487.90)
    assert noisy.hosts == ["test-nccl-worker-0", "test-nccl-worker-1"]
    assert noisy.devices[0].busid == "0x53"
    assert noisy.collective == "all_reduce" and noisy.collective_inferred
    assert noisy.nccl_version == "2.22.3+cuda12.2"
    assert any("Using network AWS Libfabric" in li.text for li in noisy.info)


def test_partial_coreweave_excerpt_is_marked_partial() -> None:
    log = parse_nccl_log(recording(PARTIAL), PARTIAL)
    assert log.partial
    assert any("excerpt" in n for n in log.notes)
    run = log.runs[0]
    assert any("partial" in n for n in run.notes)
    assert run.devices == [] and run.n_ranks is None
    assert run.rows[0].size_bytes == 536870912
    assert run.params.warmup_iters == 50 and run.params.agg_iters is None
    assert run.avg_busbw_gbps == pytest.approx(373.187)
    # busbw/algbw of all_reduce is 2(n-1)/n: the excerpt's rows imply 96 ranks.
    assert run.ranks_from_ratio() == 96


def test_socket_log_keeps_nccl_version_and_ignores_ssh_warning() -> None:
    name = "h200-dgx-2node-openshift-single-iface-socket-allreduce.log"
    run = parse_nccl_log(recording(name), name).runs[0]
    assert run.nccl_version == "2.27.3+cuda12.9"
    assert run.params.n_gpus == 8
    assert len(run.hosts) == 2 and run.n_ranks == 16
    assert run.devices[0].model == "NVIDIA H200"


def test_strip_launcher_prefixes() -> None:
    assert strip_launcher_prefixes("  0: # nThread 1") == ["# nThread 1"]
    assert strip_launcher_prefixes("[1,0]<stdout>: 8 2 float sum -1[1,0]<stdout>: 85.70") == [
        " 8 2 float sum -1 85.70"
    ]
    # constructed: another rank's output spliced into a row of rank 0.
    assert strip_launcher_prefixes("[1,0]<stdout>:a[1,3]<stdout>:b[1,0]<stdout>:c") == ["ac", "b"]


def test_constructed_srun_labels_and_interleaved_info_lines() -> None:
    # constructed: srun --label prefixes and NCCL INFO lines between rows.
    rows = CONSTRUCTED_ROWS.splitlines()
    body = (
        CONSTRUCTED_HEADER
        + rows[0]
        + "\nnode-a:1001:1050 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM\n"
        + rows[1]
        + "\nnode-a:1002:1051 [1] NCCL INFO comm 0x1 rank 1 nranks 2 - Init COMPLETE\n"
        + rows[2]
        + "\n"
        + CONSTRUCTED_FOOTER
    )
    labelled = "\n".join(f"{0:>3}: {line}" for line in body.splitlines())
    plain = parse_nccl_log(CONSTRUCTED_HEADER + CONSTRUCTED_ROWS + CONSTRUCTED_FOOTER)
    noisy = parse_nccl_log(labelled)
    assert [r.out_of_place for r in noisy.runs[0].rows] == [
        r.out_of_place for r in plain.runs[0].rows
    ]
    assert noisy.runs[0].info_count == 2


def test_constructed_wrong_values_and_warn_lines() -> None:
    # constructed: a row with #wrong > 0 and an NCCL WARN line.
    constructed_wrong_row = (
        "     2097152        524288     float     sum      -1    30.00   69.91   69.91"
        "      12    30.00   69.91   69.91       3\n"
    )
    rows = CONSTRUCTED_ROWS.splitlines(keepends=True)
    text = (
        CONSTRUCTED_HEADER
        + rows[0]
        + "node-a:1001:1050 [0] NCCL WARN NET/IB : Got completion with error 12\n"
        + constructed_wrong_row
        + rows[2]
        + "# Out of bounds values : 15 FAILED\n# Avg bus bandwidth    : 68.74\n"
    )
    run = parse_nccl_log(text).runs[0]
    assert run.rows[1].wrong == 15
    assert run.out_of_bounds == 15 and run.out_of_bounds_ok is False
    assert len(run.warnings) == 1 and "completion with error" in run.warnings[0].text


def test_constructed_na_cells_in_place() -> None:
    # constructed: validation off, every #wrong cell N/A, in-place time N/A.
    row = (
        "     1048576        262144     float     sum      -1    20.00   52.43   52.43     N/A"
        "      N/A     N/A     N/A     N/A\n"
    )
    run = parse_nccl_log(CONSTRUCTED_HEADER + row).runs[0]
    assert run.rows[0].out_of_place.wrong is None
    assert run.rows[0].in_place is not None and run.rows[0].in_place.busbw_gbps is None
    assert run.rows[0].busbw_gbps == pytest.approx(52.43)


def test_malformed_row_raises_parse_error_with_line_number() -> None:
    # constructed: a row cut short in the middle of the table.
    text = CONSTRUCTED_HEADER + "     1048576        262144     float     sum      -1    20.00\n"
    with pytest.raises(NcclParseError) as info:
        parse_nccl_log(text, "cut.log")
    assert info.value.line == 10
    assert "cut.log:10" in str(info.value)
    assert isinstance(info.value, UserError)


def test_no_nccl_output_raises() -> None:
    with pytest.raises(NcclParseError, match="no nccl-tests output"):
        parse_nccl_log("hello\nworld\n")
    with pytest.raises(NcclParseError):
        parse_nccl_log("")


_BASE = recording("h200-gke-dranet-allreduce-2x1gpu-roce.log")


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = _BASE
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "truncate", "dup_line"]))
        pos = draw(st.integers(0, max(0, len(text) - 1)))
        if op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 40)) :]
        elif op == "insert":
            text = text[:pos] + draw(st.text(max_size=20)) + text[pos:]
        elif op == "replace":
            text = text[:pos] + draw(st.sampled_from("0123456789 #N/A.\n-x:")) + text[pos + 1 :]
        elif op == "truncate":
            text = text[:pos]
        else:
            lines = text.splitlines()
            if lines:
                i = draw(st.integers(0, len(lines) - 1))
                lines.insert(i, lines[i])
            text = "\n".join(lines)
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_parser_never_crashes_on_mutated_input(text: str) -> None:
    try:
        log = parse_nccl_log(text, "mutated")
    except NcclParseError as err:
        assert err.problems and "mutated" in err.problems[0].path
        return
    for run in log.runs:
        for row in run.rows:
            assert row.size_bytes >= 0


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_parser_never_crashes_on_arbitrary_text(text: str) -> None:
    try:
        log = parse_nccl_log(text)
    except NcclParseError as err:
        assert err.problems
        return
    assert isinstance(log.runs, list)
