"""nccl-tests logs as clusters write them: launcher prefixes (alone and stacked) and
several runs in one file (concatenated, or interleaved by two launches).

Inputs are the recordings of tests/data/nccl-tests (line 1 = provenance, stripped),
transformed the way launchers and shared log files transform them: every prefix,
concatenation and interleaving below is constructed from those recordings, and the
parse of the result is compared with the parse of the clean recordings.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from functools import cache
from itertools import combinations_with_replacement
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufleet.verify.judge import JudgeOptions, judge_log, judge_logs, pair_matrix
from gpufleet.verify.nccl import NcclLog, NcclRun, parse_nccl_log
from gpufleet.verify.thresholds import load_thresholds
from gpufleet.verify.verdict import Status

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl-tests"
NAMES = sorted(p.name for p in DATA.glob("*.log"))
EFA = "h100-aws-p5-efa-2node-allreduce-mpirun-prefix-info.log"
OK = "h100-2node-alltoall-sendrecv-cluster00-pair-ok.log"
DEGRADED = "h100-2node-alltoall-sendrecv-cluster00-pair-degraded.log"
FAILED = "h100-2node-alltoall-sendrecv-cluster00-pair-failed.log"
SINGLE = "h100-1node-8gpu-nvls-5collectives-cluster01.log"
GKE = "h200-gke-dranet-allreduce-2x1gpu-roce.log"
THRESHOLDS = load_thresholds()


@cache
def recording(name: str) -> tuple[str, ...]:
    """The recorded lines without the provenance line."""
    text = (DATA / name).read_text(encoding="utf-8")
    assert text.startswith("# source:")
    return tuple(text.split("\n", 1)[1].splitlines())


def header_facts(run: NcclRun) -> str:
    return repr(
        (
            run.binary,
            run.collective,
            run.tests_version,
            run.params,
            run.devices,
            run.concluded,
            run.columns,
            run.reduced_max_bytes,
        )
    )


def row_facts(run: NcclRun) -> list[tuple[object, ...]]:
    return [
        (r.size_bytes, r.count, r.dtype, r.redop, r.root, r.out_of_place, r.in_place)
        for r in run.rows
    ]


def run_facts(run: NcclRun) -> str:
    """What a run is, without line numbers (they move when lines are mixed)."""
    networks = {i.text for i in run.info if "Using network" in i.text or "NET/" in i.text}
    return repr(
        (
            header_facts(run),
            row_facts(run),
            run.out_of_bounds,
            run.out_of_bounds_ok,
            run.avg_busbw_gbps,
            run.nccl_version,
            sorted({w.text for w in run.warnings}),
            sorted({e.text for e in run.errors}),
            sorted(networks),
        )
    )


@cache
def clean_facts(name: str) -> tuple[str, ...]:
    return tuple(run_facts(r) for r in parse_nccl_log("\n".join(recording(name)), name).runs)


# ---------------------------------------------------------------- prefixes

# Shapes of prefixes (constructed after the formats of the tools named).
TIMESTAMPS: dict[str, Callable[[int], str]] = {
    "rfc3339-kubectl": lambda i: f"2026-12-02T00:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}Z ",
    "iso-offset": lambda i: f"2026-12-02T00:15:{i % 60:02d}+01:00 ",
    "python-logging": lambda i: f"[2026-12-02 00:15:{i % 60:02d},{i % 1000:03d}] ",
    "syslog": lambda i: f"Dec  2 00:15:{i % 60:02d} ",
    "time-of-day": lambda i: f"[00:15:{i % 60:02d}.{i % 1000:03d}] ",
    "epoch": lambda i: f"{1764634507 + i}.{i % 1000:03d} ",
    "dmesg": lambda i: f"[{100 + i:6d}.{i:06d}] ",
}
LAUNCHES: dict[str, Callable[[int], str]] = {
    "host-pid": lambda k: f"[node-{k}:{4200 + k}] ",
    "skypilot-group": lambda k: f"(head, rank=0, pid={4200 + k}) ",
    "ray-worker": lambda k: f"(RayWorker pid={4200 + k}, ip=10.0.0.{k}) ",
    "kubectl-prefix": lambda k: f"[pod/nccl-launcher-{k}/mpi] ",
}
TASKS: dict[str, str] = {
    "srun-label": "  0: ",
    "prepend-rank": "[0] ",
    "ompi-tag": "[1,0]<stdout>:",
}


def prefixed(
    lines: tuple[str, ...], stamp: str | None, launch: str | None, task: str | None, key: int = 0
) -> list[str]:
    """Prefix every line, outermost first: timestamp, launch, task tag."""
    out = []
    for i, line in enumerate(lines):
        head = TIMESTAMPS[stamp](i) if stamp else ""
        head += LAUNCHES[launch](key) if launch else ""
        head += TASKS[task] if task else ""
        out.append(head + line)
    return out


STACKS = [
    ("rfc3339-kubectl", None, None),
    ("syslog", None, None),
    ("dmesg", None, None),
    (None, "host-pid", None),
    (None, "skypilot-group", None),
    (None, None, "srun-label"),
    (None, None, "prepend-rank"),
    (None, "skypilot-group", "ompi-tag"),  # the issue's `(name, rank=0, pid=N) [1,0]<stdout>:`
    ("python-logging", "ray-worker", "srun-label"),
    ("epoch", "kubectl-prefix", "prepend-rank"),
    ("time-of-day", "host-pid", "ompi-tag"),
    ("iso-offset", None, "srun-label"),
]


# The EFA recording carries Open MPI tags already: a second layer of them is no real shape.
PREFIX_CASES = [
    pytest.param(name, stack, id=f"{name[:24]}-{'+'.join(x for x in stack if x)}")
    for name in NAMES
    for stack in STACKS
    if not (stack[2] == "ompi-tag" and name == EFA)
]


@pytest.mark.parametrize(("name", "stack"), PREFIX_CASES)
def test_prefixes_alone_and_stacked_parse_like_the_clean_log(
    name: str, stack: tuple[str | None, str | None, str | None]
) -> None:
    text = "\n".join(prefixed(recording(name), *stack))
    log = parse_nccl_log(text, name)
    assert tuple(run_facts(r) for r in log.runs) == clean_facts(name)


def test_prefix_keys_name_the_launch() -> None:
    lines = prefixed(recording(GKE), "syslog", "skypilot-group", "ompi-tag", key=7)
    (run,) = parse_nccl_log("\n".join(lines)).runs
    assert run.launch == "head, rank=0, pid=4207"


# ---------------------------------------------------------------- several runs per file


def merge(sources: list[list[list[str]]], rng: random.Random) -> list[str]:
    """Interleave chunks of lines of several sources at random, each source in order."""
    positions = [0] * len(sources)
    out: list[str] = []
    while any(p < len(s) for p, s in zip(positions, sources, strict=True)):
        live = [i for i, s in enumerate(sources) if positions[i] < len(s)]
        i = rng.choice(live)
        out.extend(sources[i][positions[i]])
        positions[i] += 1
    return out


_TAG = re.compile(r"\[\d+,\d+\]<std\w+>:")
_HEADER_START = re.compile(r"^#\s*(?:nccl-tests version|Collective test starting|nThread)")
_HEADER_END = re.compile(r"^#\s*size\s+count")
_ROW = re.compile(r"^\s*\d+\s+\d+\s+[A-Za-z]")
_SUMMARY = re.compile(r"^#\s*(?:Out of bounds|Avg bus|Collective test concluded)|^#?\s*$")


def write_bursts(lines: list[str]) -> list[list[str]]:
    """The lines a process writes at once: a test's header (version line to column
    header, printed by rank 0 before any communication) and the last row with the
    summary after it; every other line alone."""
    plain = [_TAG.sub("", line).strip() for line in lines]
    chunks: list[list[str]] = []
    i = 0
    while i < len(lines):
        j = i
        if _HEADER_START.match(plain[i]):
            while j + 1 < len(lines) and not _HEADER_END.match(plain[j]):
                j += 1
        elif _ROW.match(plain[i]) and not any(_ROW.match(p) for p in plain[i + 1 : i + 2]):
            while j + 1 < len(lines) and _SUMMARY.match(plain[j + 1]):
                j += 1
        chunks.append(lines[i : j + 1])
        i = j + 1
    return chunks


def test_concatenated_recordings_give_each_run_once_in_order() -> None:
    for first, second in combinations_with_replacement(NAMES, 2):
        text = "\n".join(recording(first) + recording(second))
        log = parse_nccl_log(text)
        assert tuple(run_facts(r) for r in log.runs) == clean_facts(first) + clean_facts(second), (
            first,
            second,
        )
        assert not any(r.ambiguous_sizes for r in log.runs)


def test_a_run_killed_mid_table_then_rerun_into_the_same_file() -> None:
    # constructed from the healthy pair recording: its alltoall cut after the 256 MiB row
    # (as a killed job leaves it), then the whole recording appended by the rerun.
    lines = recording(OK)
    cut = next(i for i, line in enumerate(lines) if line.strip().startswith("268435456"))
    log = parse_nccl_log("\n".join(lines[: cut + 1] + lines), "rerun.log")
    assert [len(r.rows) for r in log.runs] == [4, 10, 10]
    assert tuple(run_facts(r) for r in log.runs[1:]) == clean_facts(OK)
    assert not any(r.ambiguous_sizes for r in log.runs)
    killed, *rest = judge_log(log, THRESHOLDS, JudgeOptions())
    assert killed.verdict.status is Status.FAIL
    assert "ended early" in " ".join(killed.verdict.reasons)
    assert [j.verdict.status for j in rest] == [Status.PASS, Status.PASS]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    ("first", "second"),
    [(OK, DEGRADED), (OK, FAILED), (SINGLE, GKE), (EFA, GKE), (DEGRADED, DEGRADED)],
)
def test_two_launches_with_a_launch_prefix_interleave_line_by_line(
    first: str, second: str, seed: int
) -> None:
    rng = random.Random(seed)
    a = [[line] for line in prefixed(recording(first), None, "host-pid", None, key=1)]
    b = [[line] for line in prefixed(recording(second), None, "skypilot-group", None, key=2)]
    log = parse_nccl_log("\n".join(merge([a, b], rng)), "shared.log")
    assert sorted(run_facts(r) for r in log.runs) == sorted(
        clean_facts(first) + clean_facts(second)
    )
    mixed = judge_log(log, THRESHOLDS, JudgeOptions())
    clean = judge_logs(
        [parse_nccl_log("\n".join(recording(n)), n) for n in (first, second)],
        THRESHOLDS,
        JudgeOptions(),
    )
    assert Counter(j.verdict.status for j in mixed) == Counter(j.verdict.status for j in clean)


def alternate_rows(first: str, second: str) -> str:
    """Two recordings written at once without prefixes: the header bursts of each, then
    their lines one by one in turn."""
    a, b = write_bursts(list(recording(first))), write_bursts(list(recording(second)))
    out: list[str] = []
    for i in range(max(len(a), len(b))):
        for source in (a, b):
            if i < len(source):
                out.extend(source[i])
    return "\n".join(out)


def test_two_pairs_interleaved_without_prefix_stay_two_runs_each() -> None:
    log = parse_nccl_log(alternate_rows(OK, DEGRADED), "sweep.log")
    assert len(log.runs) == 4
    clean = [parse_nccl_log("\n".join(recording(n))).runs for n in (OK, DEGRADED)]
    assert sorted(header_facts(r) for r in log.runs) == sorted(
        header_facts(r) for runs in clean for r in runs
    )
    assert sorted(map(repr, (f for r in log.runs for f in row_facts(r)))) == sorted(
        map(repr, (f for runs in clean for r in runs for f in row_facts(r)))
    )
    for run in log.runs:
        assert [r.size_bytes for r in run.rows] == [33554432 << i for i in range(10)]
        assert len(run.hosts) == 2
    judgements = judge_log(log, THRESHOLDS, JudgeOptions())
    assert not any("printed no size table" in " ".join(j.verdict.reasons) for j in judgements)
    # The alltoall rows of the two pairs are the same sizes, type and op: which row is
    # whose cannot be known, and the verdicts say so instead of guessing.
    alltoall = [j for j in judgements if j.run.collective == "alltoall"]
    for j in alltoall:
        assert j.run.ambiguous_sizes
        assert j.verdict.status is not Status.PASS
        assert "interleaved with nothing telling them apart" in " ".join(j.verdict.reasons)
    _, statuses, _ = pair_matrix(judgements)
    assert set(statuses) == {("cnode2-001", "cnode2-002"), ("cnode2-003", "cnode2-015")}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (SINGLE, GKE),
        (OK, GKE),
        (FAILED, EFA),
        (SINGLE, OK),
        (EFA, SINGLE),
        # Found by the property test: a 2-rank all_reduce waiting for its 32 MiB float
        # row and a sendrecv table that starts at 32 MiB both take the next row.
        (DEGRADED, GKE),
        (GKE, DEGRADED),
        (GKE, OK),
    ],
)
def test_interleaved_runs_that_differ_in_shape_are_separated_exactly(
    first: str, second: str
) -> None:
    log = parse_nccl_log(alternate_rows(first, second), "shared.log")
    assert sorted(run_facts(r) for r in log.runs) == sorted(
        clean_facts(first) + clean_facts(second)
    )
    assert not any(r.ambiguous_sizes for r in log.runs)


# ---------------------------------------------------------------- property


@st.composite
def shared_logs(draw: st.DrawFn) -> tuple[str, list[str], str]:
    """A log file as several launches leave it: 1-3 recordings, each with its own
    prefix stack, concatenated or interleaved."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3))
    mode = draw(st.sampled_from(["concatenated", "interleaved-with-launch", "interleaved"]))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    sources: list[list[list[str]]] = []
    for k, name in enumerate(names):
        stamp = draw(st.sampled_from([None, *TIMESTAMPS]))
        launch = draw(st.sampled_from(sorted(LAUNCHES)))
        if mode == "concatenated":
            launch = draw(st.sampled_from([None, launch]))
        elif mode == "interleaved":
            launch = None
        tasks = [None, "srun-label", "prepend-rank"] + ([] if name == EFA else ["ompi-tag"])
        task = draw(st.sampled_from(tasks))
        lines = prefixed(recording(name), stamp, launch, task, key=k + 1)
        if mode == "interleaved-with-launch":
            sources.append([[line] for line in lines])
        else:
            bursts = write_bursts(list(recording(name)))
            sizes = [len(b) for b in bursts]
            starts = [sum(sizes[:i]) for i in range(len(sizes))]
            sources.append([lines[s : s + n] for s, n in zip(starts, sizes, strict=True)])
    if mode == "concatenated":
        text = [line for source in sources for chunk in source for line in chunk]
    else:
        text = merge(sources, rng)
    return mode, names, "\n".join(text)


@settings(
    max_examples=40,
    deadline=None,
    # The same examples on every run: CI never goes red on a draw nobody can replay.
    # To explore new draws locally, set derandomize=False (the cases above were found so).
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(shared_logs())
def test_property_mixed_and_prefixed_logs_parse_like_the_clean_ones(
    case: tuple[str, list[str], str],
) -> None:
    mode, names, text = case
    log: NcclLog = parse_nccl_log(text, "shared.log")
    expected = [facts for name in names for facts in clean_facts(name)]
    got = [run_facts(r) for r in log.runs]
    if mode == "concatenated":
        assert got == expected
        return
    if mode == "interleaved-with-launch":
        assert sorted(got) == sorted(expected)
        return
    # Without a launch prefix, rows of runs with the same sizes, type, op and rank count
    # cannot be told apart: every run and every row is there, and where a run's rows
    # differ from the clean run's, the run says which sizes are ambiguous.
    clean_runs = [r for name in names for r in parse_nccl_log("\n".join(recording(name))).runs]
    assert sorted(header_facts(r) for r in log.runs) == sorted(header_facts(r) for r in clean_runs)
    assert Counter(repr(f) for r in log.runs for f in row_facts(r)) == Counter(
        repr(f) for r in clean_runs for f in row_facts(r)
    )
    unmatched = Counter(expected)
    for run in log.runs:
        facts = run_facts(run)
        if unmatched[facts] > 0:
            unmatched[facts] -= 1
        else:
            assert run.ambiguous_sizes, (names, run.start_line)
