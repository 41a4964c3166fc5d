"""Reports that survive a bad file, Prometheus and JUnit output without repeats, file modes,
and the report template and threshold packs as package data.

Logs are recordings from tests/data/nccl-tests; the unreadable inputs and the JSON of
other checks are constructed here (named CONSTRUCTED_* or written inline).
"""

from __future__ import annotations

import json
import os
import re
import stat
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.cli import main
from gpufleet.verify import report as report_module
from gpufleet.verify.thresholds import builtin_files, load_thresholds

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl-tests"
SRC = Path(__file__).resolve().parents[2] / "src" / "gpufleet" / "verify"
OK = DATA / "h100-2node-alltoall-sendrecv-cluster00-pair-ok.log"
DEGRADED = DATA / "h100-2node-alltoall-sendrecv-cluster00-pair-degraded.log"
SINGLE = DATA / "h100-1node-8gpu-nvls-5collectives-cluster01.log"
FILES = ("gpufleet_verify.prom", "junit.xml", "report.html", "report.json")


@pytest.fixture
def strict_umask() -> Iterator[None]:
    """A umask that would keep files from other users, as on hardened nodes."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def bad_inputs(tmp: Path) -> dict[str, Path]:
    """constructed: one unreadable input of each kind the report takes."""
    not_nccl = tmp / "not-nccl.log"
    not_nccl.write_text("Warning: Permanently added 'node-1' to the list of known hosts.\n")
    cut_row = tmp / "cut-row.log"
    cut_row.write_text(
        "# nThread 1 nGpus 1 minBytes 8 maxBytes 16 step: 2(factor) warmup iters: 5 iters: 20\n"
        "#       size         count      type   redop    root     time   algbw   busbw  #wrong"
        "     time   algbw   busbw  #wrong\n"
        "           8             2     float     sum      -1    35.58\n"
    )
    verdicts = tmp / "verdicts.json"
    verdicts.write_text('[{"subject": "n1", "kind": "burnin", "status": "maybe"}]')
    burnin = tmp / "burnin.json"
    burnin.write_text("{not json")
    pairs = tmp / "pairs.json"
    pairs.write_text('{"pairs": "none"}')
    return {
        "missing": tmp / "missing.log",
        "not_nccl": not_nccl,
        "cut_row": cut_row,
        "verdicts": verdicts,
        "burnin": burnin,
        "pairs": pairs,
        "isolation": tmp / "no-such-summary.txt",
    }


def report_args(out: Path, logs: list[Path], bad: dict[str, Path]) -> list[str]:
    return [
        "verify", "report", "--out", str(out), *map(str, logs),
        "--verdicts", str(bad["verdicts"]), "--burnin", str(bad["burnin"]),
        "--pairs", str(bad["pairs"]), "--isolation", str(bad["isolation"]),
    ]  # fmt: skip


def test_unreadable_inputs_become_failed_entries_and_the_rest_is_reported(tmp_path: Path) -> None:
    bad = bad_inputs(tmp_path)
    out = tmp_path / "report"
    logs = [OK, bad["missing"], bad["not_nccl"], bad["cut_row"], SINGLE]
    assert main(report_args(out, logs, bad)) == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    data = json.loads((out / "report.json").read_text())
    inputs = {v["subject"]: v for v in data["verdicts"] if v["kind"] == "input"}
    assert set(inputs) == {str(bad[k]) for k in bad}
    assert all(v["status"] == "fail" for v in inputs.values())
    assert "No such file or directory" in inputs[str(bad["missing"])]["reasons"][0]
    assert "no nccl-tests output" in inputs[str(bad["not_nccl"])]["reasons"][0]
    assert "cut-row.log:3" in " ".join(inputs[str(bad["cut_row"])]["reasons"]) or (
        "size row has 6 columns" in inputs[str(bad["cut_row"])]["reasons"][0]
    )
    assert "not JSON" in inputs[str(bad["burnin"])]["reasons"][0]
    runs = [v for v in data["verdicts"] if v["kind"] == "nccl"]
    assert len(runs) == 2 + 5  # the readable logs are all there
    assert data["counts"]["fail"] == len(inputs)
    assert data["status"] == "fail"
    prom = (out / "gpufleet_verify.prom").read_text()
    assert f"gpufleet_verify_failed_checks {len(inputs)}" in prom


def test_all_inputs_unreadable_still_writes_a_report_of_the_failures(tmp_path: Path) -> None:
    bad = bad_inputs(tmp_path)
    out = tmp_path / "report"
    assert main(report_args(out, [bad["missing"]], bad)) == 2
    data = json.loads((out / "report.json").read_text())
    assert {v["kind"] for v in data["verdicts"]} == {"input"}


def test_nccl_command_judges_the_readable_logs_and_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = bad_inputs(tmp_path)
    assert main(["verify", "nccl", str(OK), str(bad["missing"]), "--json"]) == 2
    verdicts = json.loads(capsys.readouterr().out)
    assert [v["kind"] for v in verdicts] == ["nccl", "nccl", "input"]
    assert [v["status"] for v in verdicts] == ["pass", "pass", "fail"]
    # A log that fails its verdict and a readable input: the failure alone is exit 1.
    assert main(["verify", "nccl", str(DEGRADED), "--json"]) == 1


# ---------------------------------------------------------------- prometheus and junit

PROM_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?P<labels>\{.*\})? (?P<value>\S+)$")


def prom_series(text: str) -> list[tuple[str, str, str]]:
    series = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = PROM_SAMPLE.match(line)
        assert m, line
        series.append((m["name"], m["labels"] or "", m["value"]))
    return series


def duplicated_inputs(tmp: Path) -> list[str]:
    """constructed: verdicts of other checks repeating subjects with different statuses,
    and a log file holding the same recorded test twice (a rerun appended)."""
    verdicts = tmp / "verdicts.json"
    verdicts.write_text(
        json.dumps(
            [
                {"subject": "node-07 GPU 3", "kind": "burnin", "status": "pass", "reasons": []},
                {"subject": "node-07 GPU 3", "kind": "burnin", "status": "fail", "reasons": ["x"]},
                {"subject": "node-07 GPU 3", "kind": "burnin", "status": "fail", "reasons": ["x"]},
                {"subject": "node-07 GPU 3", "kind": "isolation", "status": "warn"},
            ]
        )
    )
    twice = tmp / "twice.log"
    body = OK.read_text().split("\n", 1)[1]
    twice.write_text(body + body)
    return [str(OK), str(twice), str(SINGLE), "--verdicts", str(verdicts)]


def test_prometheus_has_one_series_per_verdict_and_counts_agree_with_json(tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["verify", "report", "--out", str(out), *duplicated_inputs(tmp_path)]) == 1
    data = json.loads((out / "report.json").read_text())
    series = prom_series((out / "gpufleet_verify.prom").read_text())
    keys = [(name, labels) for name, labels, _ in series]
    assert len(keys) == len(set(keys)), Counter(keys).most_common(3)
    status = [(labels, value) for name, labels, value in series if name == "gpufleet_verify_status"]
    assert len(status) == len(data["verdicts"])
    by_value = Counter(value for _, value in status)
    assert by_value["0"] == data["counts"]["pass"]
    assert by_value["1"] == data["counts"]["warn"]
    assert by_value["2"] == data["counts"]["fail"]
    checks = {labels: int(v) for name, labels, v in series if name == "gpufleet_verify_checks"}
    assert checks == {f'{{status="{s}"}}': n for s, n in data["counts"].items()}
    assert len({(v["kind"], v["name"]) for v in data["verdicts"]}) == len(data["verdicts"])


def test_junit_case_names_are_unique(tmp_path: Path) -> None:
    out = tmp_path / "report"
    main(["verify", "report", "--out", str(out), *duplicated_inputs(tmp_path)])
    suite = ET.fromstring((out / "junit.xml").read_text()).find("testsuite")
    assert suite is not None
    cases = [(c.get("classname"), c.get("name")) for c in suite.findall("testcase")]
    assert len(cases) == len(set(cases)) == int(suite.get("tests", "-1"))
    names = [n for _, n in cases]
    assert "node-07 GPU 3" in names and "node-07 GPU 3 #2" in names and "node-07 GPU 3 #3" in names


# ---------------------------------------------------------------- file modes


@pytest.mark.usefixtures("strict_umask")
def test_report_files_are_readable_by_a_non_root_node_exporter(tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["verify", "report", "--out", str(out), str(OK)]) == 0
    for name in FILES:
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


@pytest.mark.usefixtures("strict_umask")
@pytest.mark.parametrize("mode", ["0640", "600", "0444"])
def test_the_operator_chooses_another_mode(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "report"
    assert main(["verify", "report", "--out", str(out), str(OK), "--mode", mode]) == 0
    for name in FILES:
        assert stat.S_IMODE((out / name).stat().st_mode) == int(mode, 8)


@pytest.mark.parametrize("mode", ["0999", "rw-r--r--", "1777", "-1"])
def test_a_bad_mode_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["verify", "report", "--out", str(out), str(OK), "--mode", mode]) == 2
    assert f"--mode: {mode!r} is not an octal file mode" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------- package data


def test_no_repository_lookups_in_verify() -> None:
    offenders = [
        f"{p.relative_to(SRC)}:{i}"
        for p in SRC.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "parents[" in line
    ]
    assert offenders == []


def test_template_and_packs_come_from_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no checkout around: nothing to find by walking up
    monkeypatch.delenv("GPUFLEET_TEMPLATES", raising=False)
    html = report_module.render_html(report_module.Report(title="no checkout here"))
    assert "<html" in html and "no checkout here" in html
    assert {f.name for f in builtin_files()} >= {"nccl-allreduce-2node-ring-ib.yaml"}
    assert "nccl-allreduce-2node-ring-ib" in load_thresholds().packs


def test_a_site_template_folder_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / report_module.TEMPLATE_NAME).write_text("site template {{ status }}")
    monkeypatch.setenv("GPUFLEET_TEMPLATES", str(tmp_path))
    text = report_module.render_html(report_module.Report())
    assert text == "site template pass"
