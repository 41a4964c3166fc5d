"""Report renderers: HTML with inline SVG, JSON, JUnit XML, Prometheus textfile."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from gpufleet.verify.judge import JudgeOptions, judge_logs
from gpufleet.verify.nccl import parse_nccl_log
from gpufleet.verify.report import (
    Report,
    ReportRun,
    render_html,
    render_json,
    render_junit,
    render_prometheus,
    svg_burnin_bars,
    svg_busbw_chart,
    svg_pair_heatmap,
    write_report,
)
from gpufleet.verify.thresholds import load_thresholds
from gpufleet.verify.verdict import Status, Verdict

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl-tests"
SWEEP = [
    "h100-2node-alltoall-sendrecv-cluster00-pair-ok.log",
    "h100-2node-alltoall-sendrecv-cluster00-pair-degraded.log",
    "h100-2node-alltoall-sendrecv-cluster00-pair-failed.log",
    "h100-together-1node-8gpu-allreduce-nvls-label-ringlevel.log",
]
# constructed: burn-in rows for the bar chart (no burn-in recording is used here).
CONSTRUCTED_BURNIN = [
    {"node": "n1", "gpu": g, "tflops": 790.0 + g, "hbm_gbps": 2950.0, "status": "pass"}
    for g in range(8)
] + [{"node": "n2", "gpu": 0, "tflops": 700.0, "hbm_gbps": 2600.0, "status": "fail"}]


def faulty_report() -> Report:
    logs = []
    for name in SWEEP:
        text = (DATA / name).read_text(encoding="utf-8").split("\n", 1)[1]
        logs.append(parse_nccl_log(text, name))
    judgements = judge_logs(logs, load_thresholds(), JudgeOptions(), peers=True)
    report = Report.from_judgements(judgements, title="test <report>")
    report.burnin = list(CONSTRUCTED_BURNIN)
    report.verdicts.append(
        Verdict('n2 GPU 0 "slow"', "burnin", Status.FAIL, ["GEMM 700 TFLOPS < 710"], {})
    )
    report.isolation_summary = "constructed: n2 is the suspect"
    report.generated_at = "2025-01-01T00:00:00Z"
    return report


def test_html_is_self_contained_and_shows_every_verdict() -> None:
    report = faulty_report()
    html = render_html(report, {"tflops": {"warn": 750.0, "fail": 710.0}})
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()
    # No external resources: the only URLs are SVG namespaces.
    urls = set(re.findall(r"https?://[^\s\"'<>]+", html))
    assert urls == {"http://www.w3.org/2000/svg"}
    assert html.count("<svg") == len(report.runs) + 3  # charts + heatmap + 2 burn-in plots
    for v in report.all_verdicts():
        assert v.subject.replace('"', "&#34;") in html
    assert "test &lt;report&gt;" in html  # escaped
    assert "NVLS" in html and "alltoall busbw GB/s" in html
    assert "constructed: n2 is the suspect" in html


def test_busbw_chart_draws_threshold_lines_and_points() -> None:
    run = ReportRun(
        verdict=Verdict("r", "nccl", Status.WARN),
        curve=[(1 << 20, 10.0), (1 << 24, 100.0), (1 << 30, 300.0)],
        fail_gbps=280.0,
        warn_gbps=320.0,
        expected_gbps=340.0,
        measure_bytes=1 << 30,
    )
    svg = svg_busbw_chart(run)
    assert svg.count("<circle") == 4  # three points + the judged one
    assert "fail 280" in svg and "warn 320" in svg and "expected 340" in svg
    assert "1MiB" in svg and "1GiB" in svg
    empty = svg_busbw_chart(ReportRun(Verdict("x", "nccl", Status.FAIL), []))
    assert "no size table" in empty


def test_pair_heatmap_marks_failed_and_untested_pairs() -> None:
    pairs = {("a", "b"): 24.0, ("a", "c"): None, ("b", "c"): 5.0}
    statuses = {("a", "b"): Status.PASS, ("a", "c"): Status.FAIL, ("b", "c"): Status.FAIL}
    svg = svg_pair_heatmap(pairs, statuses)
    assert svg.count(">failed<") == 2  # symmetric cells
    assert svg.count('stroke="#cf222e" stroke-width="3"') >= 4 + 1  # 2 pairs x 2 + legend
    assert ">24<" in svg.replace("<title>", "<")
    assert svg_pair_heatmap({}, {}) == ""


def test_pair_heatmap_renders_when_no_pair_measured_above_zero() -> None:
    # Constructed: every pair's jobs failed or measured 0 GB/s (the scale's top falls back to
    # 1); CI saw the phase end without a report on a division by the best pair's 0.
    for pairs in ({("a", "b"): 0.0, ("a", "c"): 0.0}, {("a", "b"): 0.0, ("b", "c"): None}):
        statuses = dict.fromkeys(pairs, Status.FAIL)
        svg = svg_pair_heatmap(pairs, statuses)
        zero = sum(v == 0.0 for v in pairs.values())
        assert svg.startswith("<svg") and svg.count(">0.0<") == 2 * zero, svg  # both halves


def test_burnin_bars_group_by_node_and_zoom_the_axis() -> None:
    svg = svg_burnin_bars(CONSTRUCTED_BURNIN, "tflops", "TFLOPS", {"fail": 710.0})
    assert svg.count("<rect") == 9
    assert "fleet median" in svg and "fail 710" in svg
    assert "axis starts at" in svg
    assert ">n1<" in svg and ">n2<" in svg
    assert svg_burnin_bars([], "tflops", "TFLOPS") == ""


def test_json_junit_and_prometheus() -> None:
    report = faulty_report()
    data = json.loads(render_json(report))
    assert data["status"] == "fail"
    assert len(data["verdicts"]) == len(report.all_verdicts())
    assert {"a": "cnode2-003", "b": "cnode2-015", "busbw_gbps": 5.13, "status": "fail"} in data[
        "pairs"
    ]

    root = ET.fromstring(render_junit(report))
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == len(report.all_verdicts())
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == report.counts()["fail"] == int(suite.get("failures", "-1"))
    degraded = next(c for c in failures if "cnode2-003" in (c.get("name") or ""))
    failure = degraded.find("failure")
    assert failure is not None and "78% below the median" in (failure.text or "")

    prom = render_prometheus(report)
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)+\})? -?[0-9.e+]+$')
    for line in prom.splitlines():
        assert line.startswith("# ") or sample.match(line), line
    assert 'gpufleet_verify_status{subject="n2 GPU 0 \\"slow\\"",kind="burnin"} 2' in prom
    assert re.search(r"gpufleet_nccl_busbw_gbps\{.*cnode2-003.*\} 5\.13$", prom, re.M)


def test_write_report_writes_four_files(tmp_path: Path) -> None:
    files = write_report(faulty_report(), tmp_path / "out")
    assert sorted(p.name for p in files.values()) == [
        "gpufleet_verify.prom",
        "junit.xml",
        "report.html",
        "report.json",
    ]
    for path in files.values():
        assert path.stat().st_size > 100
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind
