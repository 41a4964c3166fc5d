"""Sizes that nccl-tests rounds down: all_gather, reduce_scatter and alltoall.

No recording in tests/data has a rank count that does not divide the sizes (8 and
16 ranks with power-of-two sizes never round), so the tables here are constructed
with nccl-tests' own arithmetic (NVIDIA/nccl-tests src/all_gather.cu: per-rank count
`(count/(ALIGN*nranks))*ALIGN` with ALIGN 4; src/alltoall.cu and
src/reduce_scatter.cu: `(count/nranks) & -(16/eltSize)`; common.cu prints
`max(sendBytes, expectedBytes)`), which gives the 17179868160 the issue quotes for
16 GiB of doubles over 80 ranks.
"""

from __future__ import annotations

import pytest

from gpufleet.verify.judge import JudgeOptions, RunJudgement, judge_log
from gpufleet.verify.nccl import TYPE_SIZES, parse_nccl_log
from gpufleet.verify.thresholds import build_thresholds, load_thresholds
from gpufleet.verify.verdict import Status

THRESHOLDS = load_thresholds()
GIB = 1 << 30


def printed_size(collective: str, requested: int, dtype: str, ranks: int) -> tuple[int, int]:
    """(size, count) as nccl-tests prints them for a requested size."""
    width = TYPE_SIZES[dtype]
    count = requested // width
    if collective == "all_gather":
        per_rank = (count // (4 * ranks)) * 4
    else:  # alltoall, reduce_scatter
        per_rank = (count // ranks) & -(16 // width)
    return per_rank * ranks * width, per_rank


def constructed_log(
    collective: str, ranks: int, dtype: str, min_bytes: int, max_bytes: int, stop: int | None = None
) -> str:
    """constructed: a multi-node run of `collective` on `ranks` ranks (8 per node), its rows
    sized as nccl-tests rounds them; `stop` cuts the table after that requested size."""
    redop = "sum" if collective == "reduce_scatter" else "none"
    factor = (ranks - 1) / ranks
    lines = [
        f"# nThread 1 nGpus 1 minBytes {min_bytes} maxBytes {max_bytes} step: 2(factor) "
        "warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0",
        "#",
        "# Using devices",
    ]
    lines += [
        f"#  Rank {r:3d} Group  0 Pid {5000 + r} on node-{r // 8:02d} device {r % 8:2d} "
        "[0000:1b:00] NVIDIA H100 80GB HBM3"
        for r in range(ranks)
    ]
    lines += [
        "#",
        "#       size         count      type   redop    root     time   algbw   busbw  #wrong"
        "     time   algbw   busbw  #wrong",
    ]
    requested = min_bytes
    while requested <= (stop or max_bytes):
        size, count = printed_size(collective, requested, dtype, ranks)
        algbw = 370.0
        time_us = size / (algbw * 1e3)
        busbw = algbw * factor
        wrong = "N/A" if collective == "alltoall" else "0"
        lines.append(
            f"{size:12d} {count:13d} {dtype:>9} {redop:>7}      -1 {time_us:8.1f} {algbw:7.2f} "
            f"{busbw:7.2f}       0 {time_us:8.1f} {algbw:7.2f} {busbw:7.2f} {wrong:>7}"
        )
        requested *= 2
    if stop is None:
        lines += ["# Out of bounds values : 0 OK", "# Avg bus bandwidth    : 346.0", "#"]
    return "\n".join(lines) + "\n"


def judge_text(text: str, **options: object) -> RunJudgement:
    (j,) = judge_log(parse_nccl_log(text, "constructed.log"), THRESHOLDS, JudgeOptions(**options))
    return j


CASES = [
    (collective, ranks, dtype)
    for collective in ("all_gather", "reduce_scatter", "alltoall")
    for ranks, dtype in (
        (80, "double"),
        (24, "float"),
        (40, "bfloat16"),
        (96, "float"),
        (56, "int8"),
    )
]


def test_the_issue_figure_comes_out_of_the_constructed_arithmetic() -> None:
    assert printed_size("all_gather", 16 * GIB, "double", 80) == (17179868160, 26843544)


@pytest.mark.parametrize(("collective", "ranks", "dtype"), CASES)
def test_rounded_sizes_are_not_a_table_that_stops_early(
    collective: str, ranks: int, dtype: str
) -> None:
    text = constructed_log(collective, ranks, dtype, GIB, 16 * GIB)
    j = judge_text(text, expected_max_bytes=16 * GIB, expected_ranks=ranks)
    reasons = " ".join(j.verdict.reasons)
    assert j.verdict.status is Status.PASS, j.verdict.reasons
    for wrong in ("stops", "ended early", "missing", "expected sizes up to"):
        assert wrong not in reasons
    run = j.run
    assert run.rows[-1].size_bytes < 16 * GIB  # really rounded
    assert run.missing_sizes() == []
    assert run.size_reached(16 * GIB) is run.rows[-1]


@pytest.mark.parametrize(("collective", "ranks", "dtype"), CASES[::3])
def test_a_rounded_table_that_really_stops_early_still_fails(
    collective: str, ranks: int, dtype: str
) -> None:
    # constructed: the same run killed after the 4 GiB row.
    text = constructed_log(collective, ranks, dtype, GIB, 16 * GIB, stop=4 * GIB)
    j = judge_text(text, expected_max_bytes=16 * GIB)
    assert j.verdict.status is Status.FAIL
    assert "ended early" in " ".join(j.verdict.reasons)


def test_rounded_largest_size_is_at_the_size_the_floors_are_defined_at() -> None:
    # constructed: a site pack whose all_gather floors are defined at 4 GiB, and a run whose
    # largest requested size is 4 GiB, printed as 4294967040 at 80 ranks.
    site = {
        "packs": [
            {
                "name": "site-allgather-multinode",
                "test": "nccl",
                "collectives": ["all_gather"],
                "kind": "multinode",
                "platforms": ["any"],
                "fabrics": ["any"],
                "busbw": {
                    "measure_at_bytes": 4 * GIB,
                    "fail_below": {"value": 300, "source": "constructed site floor"},
                },
            }
        ]
    }
    text = constructed_log("all_gather", 80, "float", GIB, 4 * GIB)
    run = parse_nccl_log(text).runs[0]
    assert run.rows[-1].size_bytes == 4294967040
    (j,) = judge_log(
        parse_nccl_log(text, "c.log"), build_thresholds(site, "s.yaml"), JudgeOptions()
    )
    assert j.verdict.status is Status.PASS, j.verdict.reasons
    assert "below the 4 GiB" not in " ".join(j.verdict.reasons)
    assert j.verdict.metrics["busbw_gbps"] == pytest.approx(370.0 * 79 / 80, abs=0.01)
