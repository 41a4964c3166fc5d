"""`gpufleet verify nccl|report|baseline`: exit codes, JSON output, files written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gpufleet.cli import build_app, main

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl-tests"
OK = str(DATA / "h100-2node-alltoall-sendrecv-cluster00-pair-ok.log")
DEGRADED = str(DATA / "h100-2node-alltoall-sendrecv-cluster00-pair-degraded.log")
SINGLE = str(DATA / "h100-1node-8gpu-nvls-5collectives-cluster01.log")

runner = CliRunner()


def run(*args: str):
    return runner.invoke(build_app(), list(args))


def test_nccl_json_pass_exits_zero() -> None:
    result = run("verify", "nccl", SINGLE, "--json")
    assert result.exit_code == 0, result.output
    verdicts = json.loads(result.output)
    assert [v["status"] for v in verdicts] == ["pass"] * 5


def test_nccl_fail_exits_one_with_reason_in_table() -> None:
    result = run("verify", "nccl", OK, DEGRADED, "--peers")
    assert result.exit_code == 1
    assert "FAIL" in result.output and "cnode2-003" in result.output


def test_unreadable_input_exits_two(tmp_path: Path) -> None:
    bad = tmp_path / "bad.log"
    bad.write_text("this is not nccl-tests output\n")
    assert main(["verify", "nccl", str(bad)]) == 2
    assert main(["verify", "nccl", str(tmp_path / "missing.log")]) == 2
    assert main(["verify", "nccl", OK, "--kind", "sideways"]) == 2


def test_main_exit_code_one_on_failure() -> None:
    assert main(["verify", "nccl", DEGRADED, "--json"]) == 1


def test_baseline_then_judge_with_it(tmp_path: Path) -> None:
    site = tmp_path / "site-thresholds.yaml"
    result = run("verify", "baseline", OK, "--out", str(site), "--margin", "0.2")
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(site.read_text())
    fail = document["packs"][0]["busbw"]["fail_below"]["value"]
    assert fail == pytest.approx(23.62 * 0.8, abs=0.01)
    ok = run("verify", "nccl", OK, "--thresholds", str(site), "--json")
    assert ok.exit_code == 0, ok.output
    bad = run("verify", "nccl", DEGRADED, "--thresholds", str(site), "--json")
    assert bad.exit_code == 1
    assert "site baseline" in json.loads(bad.output)[0]["reasons"][0]


def test_report_writes_files_and_takes_other_inputs(tmp_path: Path) -> None:
    burnin = tmp_path / "burnin.json"
    # constructed: burn-in rows as the burn-in job would hand them over.
    burnin.write_text(
        json.dumps(
            [{"node": "n1", "gpu": 0, "tflops": 790.0, "hbm_gbps": 2950.0, "status": "pass"}]
        )
    )
    verdicts = tmp_path / "verdicts.json"
    verdicts.write_text(
        json.dumps([{"subject": "n1 GPU 0", "kind": "burnin", "status": "warn", "reasons": ["x"]}])
    )
    out = tmp_path / "report"
    result = run(
        "verify", "report", "--out", str(out), OK, "--burnin", str(burnin),
        "--verdicts", str(verdicts),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "gpufleet_verify.prom",
        "junit.xml",
        "report.html",
        "report.json",
    ]
    data = json.loads((out / "report.json").read_text())
    assert data["status"] == "warn"
    assert data["burnin"][0]["node"] == "n1"
    failing = run("verify", "report", "--out", str(tmp_path / "r2"), DEGRADED)
    assert failing.exit_code == 1
