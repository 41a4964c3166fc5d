"""Profiles and fabrics, the bandwidth every run reports, and how distances are worded.

Recordings come from tests/data/nccl-tests (line 1 = provenance). Runs named
CONSTRUCTED_* are built here: no recording has a GPUDirect-TCPX/TCPXO run, a plain
TCP cluster, or a run a fraction of a percent under a floor.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gpufleet.cli import build_app, main
from gpufleet.errors import UserError
from gpufleet.verify.judge import JudgeOptions, RunJudgement, judge_log
from gpufleet.verify.nccl import parse_nccl_log
from gpufleet.verify.report import Report, render_json, render_prometheus
from gpufleet.verify.thresholds import PROFILE_FABRICS, check_profile, load_thresholds
from gpufleet.verify.verdict import Status

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl-tests"
NAMES = sorted(p.name for p in DATA.glob("*.log"))
EFA = "h100-aws-p5-efa-2node-allreduce-mpirun-prefix-info.log"
SOCKET = "h200-dgx-2node-openshift-single-iface-socket-allreduce.log"
THRESHOLDS = load_thresholds()
runner = CliRunner()


def log_of(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8").split("\n", 1)[1]


def judge_text(text: str, name: str = "constructed.log", **options: object) -> RunJudgement:
    (j,) = judge_log(parse_nccl_log(text, name), THRESHOLDS, JudgeOptions(**options))
    return j


CONSTRUCTED_HEADER = (
    "# nThread 1 nGpus 1 minBytes 4294967296 maxBytes 17179869184 step: 2(factor) warmup "
    "iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0\n#\n# Using devices\n"
    + "".join(
        f"#  Rank {r:2d} Group  0 Pid {2000 + r} on node-{r // 8} device {r % 8:2d} "
        "[0000:1b:00] NVIDIA H100 80GB HBM3\n"
        for r in range(16)
    )
)
COLUMNS = (
    "#       size         count      type   redop    root     time   algbw   busbw  #wrong"
    "     time   algbw   busbw  #wrong\n"
)


def constructed_run(busbw: float, info: str = "") -> str:
    """constructed: a 2-node, 16-rank all_reduce whose rows all read `busbw`."""
    rows = "".join(
        f"{size:12d} {size // 4:13d}     float     sum      -1   1000.0 {busbw * 8 / 15:7.2f} "
        f"{busbw:7.2f}       0   1000.0 {busbw * 8 / 15:7.2f} {busbw:7.2f}       0\n"
        for size in (4294967296, 8589934592, 17179869184)
    )
    return CONSTRUCTED_HEADER + info + "#\n" + COLUMNS + rows


def origin(line: str) -> str:
    return f"node-0:2000:2000 [0] NCCL INFO {line}\n"


# ---------------------------------------------------------------- profiles


@pytest.mark.parametrize(
    "profile",
    ["foo", "hgx-h100-8gpu-ibb", "hgx-h100-ib", "h100", "hgx-h100-8gpu-infiniband", "", "ib"],
)
def test_unknown_profiles_are_a_clear_error_with_exit_two(
    profile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "nccl", str(DATA / EFA), "--profile", profile]) == 2
    err = capsys.readouterr().err
    assert f"--profile: unknown profile {profile!r}" in err
    assert "hgx-h100-8gpu" in err and "roce" in err
    assert err.count("\n") == 1  # one line, no traceback


def test_close_misspellings_are_named() -> None:
    with pytest.raises(UserError, match="did you mean hgx-h100-8gpu-ib"):
        check_profile("hgx-h100-8gpu-ibb", THRESHOLDS)


@pytest.mark.parametrize("fabric", PROFILE_FABRICS)
@pytest.mark.parametrize("platform", ["hgx-h100-8gpu", "dgx-h100", "hgx-h200-8gpu", "dgx-h200"])
def test_every_platform_and_fabric_is_a_profile(platform: str, fabric: str) -> None:
    assert check_profile(f"{platform}-{fabric}", THRESHOLDS) == (platform, fabric)


def test_a_site_pack_brings_its_platform(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "packs:\n"
        "  - name: site-p5\n    test: nccl\n    collectives: [all_reduce]\n    kind: 2node\n"
        "    platforms: [p5-48xlarge]\n    fabrics: [efa]\n"
        "    busbw:\n      fail_below: {value: 400, source: constructed site acceptance}\n"
    )
    result = runner.invoke(
        build_app(),
        ["verify", "nccl", str(DATA / EFA), "--profile", "p5-48xlarge-efa",
         "--thresholds", str(site), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (verdict,) = json.loads(result.output)
    assert verdict["metrics"]["pack"] == "site-p5"
    assert "meets the floor of 400 GB/s" in verdict["reasons"][0]


# ---------------------------------------------------------------- fabrics


def test_efa_recording_is_never_judged_against_the_infiniband_floor() -> None:
    for profile in ("hgx-h100-8gpu-ib", "hgx-h100-8gpu-efa"):
        j = judge_text(log_of(EFA), EFA, profile=profile)
        assert j.fabric == "efa" and j.pack is None
        assert j.verdict.status is Status.PASS
        first = j.verdict.reasons[0]
        assert first.startswith("no thresholds for the EFA fabric")
        assert "487.9 GB/s at 16 GiB" in first
        assert "InfiniBand floor" not in " ".join(j.verdict.reasons)


@pytest.mark.parametrize(
    ("info", "fabric", "word"),
    [
        (origin("Using network AWS Libfabric"), "efa", "EFA"),
        (origin("NET/OFI Selected Provider is efa"), "efa", "EFA"),
        (origin("Using network GPUDirectTCPX_v7"), "tcpx", "GPUDirect-TCPX/TCPXO"),
        (origin("Using network FasTrak"), "tcpx", "GPUDirect-TCPX/TCPXO"),
    ],
)
def test_slow_runs_on_fabrics_without_packs_say_so_instead_of_failing_the_ib_floor(
    info: str, fabric: str, word: str
) -> None:
    # constructed: 2 nodes at 100 GB/s busbw, far under the 2-node IB floor of 350 GB/s,
    # with the INFO line NCCL prints for the fabric it used.
    j = judge_text(constructed_run(100.0, info))
    assert j.fabric == fabric
    assert j.pack is None
    assert j.verdict.status is Status.PASS
    assert j.verdict.reasons[0].startswith(f"no thresholds for the {word} fabric")
    assert j.verdict.metrics["thresholds"] == f"none for {fabric}"
    assert j.verdict.metrics["busbw_gbps"] == 100.0


def test_a_tcp_cluster_is_not_a_socket_fallback_and_has_no_floor() -> None:
    info = origin("NET/Socket : Using [0]eth0:10.0.0.1<0>") + origin("Using network Socket")
    j = judge_text(constructed_run(20.0, info), profile="hgx-h100-8gpu-socket")
    assert j.fabric == "socket" and j.pack is None
    assert j.verdict.status is Status.PASS
    assert j.verdict.reasons[0].startswith("no thresholds for the TCP socket fabric")
    assert "fell back" not in " ".join(j.verdict.reasons)


def test_a_socket_fallback_on_an_rdma_site_still_fails_against_its_floor() -> None:
    info = origin("Using network Socket")
    for profile, word in (("hgx-h100-8gpu-ib", "InfiniBand"), ("hgx-h100-8gpu-roce", "RoCE")):
        j = judge_text(constructed_run(92.0, info), profile=profile)
        assert j.verdict.status is Status.FAIL
        reasons = " ".join(j.verdict.reasons)
        assert f"fell back to TCP sockets (NET/Socket) instead of {word}" in reasons
        assert f"2-node {word} floor" in reasons


def test_one_nic_floor_is_for_400g_ib_and_roce_nics_only() -> None:
    # constructed: one rank per node over EFA at 10 GB/s.
    header = (
        CONSTRUCTED_HEADER.split("#  Rank  2")[0]
        .replace("on node-0 device  1", "on node-1 device  0")
        .replace(
            "minBytes 4294967296 maxBytes 17179869184", "minBytes 1073741824 maxBytes 2147483648"
        )
    )
    rows = "".join(
        f"{size:12d} {size // 4:13d}     float     sum      -1   1000.0   10.00   10.00       0"
        "   1000.0   10.00   10.00       0\n"
        for size in (1073741824, 2147483648)
    )
    text = header + origin("Using network AWS Libfabric") + "#\n" + COLUMNS + rows
    j = judge_text(text)
    assert j.kind == "nic" and j.pack is None
    assert j.verdict.reasons[0].startswith("no thresholds for the EFA fabric")


# ---------------------------------------------------------------- bandwidth reported


@pytest.mark.parametrize("name", NAMES)
def test_every_run_reports_busbw_and_algbw_at_its_largest_size(name: str) -> None:
    judgements = judge_log(parse_nccl_log(log_of(name), name), THRESHOLDS, JudgeOptions())
    report = Report.from_judgements(judgements)
    data = json.loads(render_json(report))
    prom = render_prometheus(report)
    for j, verdict in zip(judgements, data["verdicts"], strict=True):
        if not j.run.has_table:
            continue
        largest = max(j.run.rows, key=lambda r: r.size_bytes)
        m = verdict["metrics"]
        assert m["size_bytes"] == largest.size_bytes
        assert m["busbw_gbps"] == largest.busbw_gbps
        assert m["algbw_gbps"] == largest.algbw_gbps
        for metric, value in (("busbw", largest.busbw_gbps), ("algbw", largest.algbw_gbps)):
            pattern = (
                rf'^gpufleet_nccl_{metric}_gbps\{{subject="{re.escape(verdict["name"])}",'
                rf'.*size_bytes="{largest.size_bytes}"\}} {value:g}$'
            )
            assert re.search(pattern, prom, re.M), (name, metric)


# ---------------------------------------------------------------- wording

FLOOR = 350.0  # the 2-node ring InfiniBand fail floor
WARN = 370.0


@pytest.mark.parametrize(
    ("busbw", "expected"),
    [
        (349.98, "at the 2-node InfiniBand floor of 350 GB/s"),
        (348.6, "0.4% below the 2-node InfiniBand floor of 350 GB/s"),
        (308.0, "12% below the 2-node InfiniBand floor of 350 GB/s"),
        (369.99, "at the 2-node InfiniBand warning level of 370 GB/s"),
        (368.3, "0.5% below the 2-node InfiniBand warning level of 370 GB/s"),
    ],
)
def test_distances_below_a_limit_are_never_zero_percent(busbw: float, expected: str) -> None:
    j = judge_text(constructed_run(busbw), kind="2node-ring")
    assert expected in " ".join(j.verdict.reasons)


@settings(max_examples=150, deadline=None)
@given(st.floats(min_value=300.0, max_value=369.999, allow_nan=False))
def test_no_reason_says_zero_percent_below(busbw: float) -> None:
    j = judge_text(constructed_run(round(busbw, 2)), kind="2node-ring")
    text = " ".join(j.verdict.reasons)
    assert not re.search(r"(?<![\d.])0% below", text), text
    for pct in re.findall(r"([\d.]+)% below", text):
        assert float(pct) >= 0.05
