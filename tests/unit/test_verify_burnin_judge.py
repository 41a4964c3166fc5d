"""The burn-in judge on constructed fleets, floors and throttle samples; the gpu_burn
parser on a real recording and on constructed FAULTY / DIED / cut-off outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from gpufleet.errors import UserError
from gpufleet.verify.burnin import SCHEMA
from gpufleet.verify.burnin_cli import load_floors, register_burnin
from gpufleet.verify.burnin_judge import (
    DEFAULT_RULES,
    H100_SXM_FLOORS,
    fleet_stats,
    floors_from_pack,
    judge_burnin,
    judge_gpu_burn,
    parse_gpu_burn,
)
from gpufleet.verify.verdict import Status

DATA = Path(__file__).resolve().parents[1] / "data" / "hardware"
RECORDING = DATA / "gpu_burn-landontclipp-h100-kata-1gpu.txt"
PACK = Path(__file__).resolve().parents[2] / "src/gpufleet/verify/thresholds/burnin-h100-sxm.yaml"
H100 = "NVIDIA H100 80GB HBM3"


def gpu(
    index: int,
    tflops: float = 780.0,
    hbm: float = 2950.0,
    *,
    name: str = H100,
    checks_failed: int = 0,
    seen: dict[str, int] | None = None,
    efficiency: float = 0.99,
    error: str | None = None,
    samples: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """constructed: one GPU entry shaped like the burn-in's output."""
    return {
        "index": index,
        "device": f"cuda:{index}",
        "name": name,
        "uuid": f"GPU-constructed-{index}",
        "serial": f"16523220{index:05d}",
        "error": error,
        "gemm": {
            "size": 8192,
            "dtype": "bfloat16",
            "iterations": 1,
            "seconds": 1.0,
            "tflops": tflops,
        },
        "hbm": {"bytes": 2**31, "iterations": 1, "seconds": 1.0, "gbps": hbm},
        "efficiency": {"gemm": efficiency, "hbm": 0.99},
        "correctness": {
            "checks_run": 120,
            "checks_failed": checks_failed,
            "max_rel_error": 0.5 if checks_failed else 0.003,
            "tolerance": 0.03,
            "failures": [
                {"phase": "gemm", "check": 7, "max_rel_error": 0.5, "mismatched_elements": 1}
            ]
            if checks_failed
            else [],
        },
        "samples": samples
        if samples is not None
        else {
            "nvml": "available",
            "count": 600,
            "temperature_c": {"min": 31, "max": 74, "mean": 66.0},
            "sm_clock_mhz": {"min": 1755, "max": 1980, "mean": 1900.0},
            "throttle_reasons_seen": {"sw_power_cap": 400, **(seen or {})},
        },
    }


def doc(host: str, gpus: list[dict[str, Any]]) -> dict[str, Any]:
    """constructed: a node's burn-in document."""
    return {"schema": SCHEMA, "host": host, "gpus": gpus}


def healthy_fleet(nodes: int = 2) -> list[dict[str, Any]]:
    # constructed: 8 GPUs per node spread +-0.5% around 780 TFLOPS / 2950 GB/s
    return [
        doc(f"node-{n:02d}", [gpu(i, 780 + (i - 4) * 0.5, 2950 + (i - 4) * 2) for i in range(8)])
        for n in range(nodes)
    ]


def by_subject(docs: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {v.subject: v for v in judge_burnin(docs, **kw).verdicts}


def test_healthy_fleet_passes_with_rows_for_the_report() -> None:
    judgement = judge_burnin(healthy_fleet())
    assert {v.status for v in judgement.verdicts} == {Status.PASS}
    assert len(judgement.rows) == 16
    assert judgement.rows[0] == {
        "node": "node-00",
        "gpu": 0,
        "tflops": 778.0,
        "hbm_gbps": 2942.0,
        "status": "pass",
    }
    assert judgement.fleet[f"{H100} tflops"]["n"] == 16
    assert judgement.status is Status.PASS


def test_fleet_warn_and_fail_by_deviation_from_median() -> None:
    docs = healthy_fleet()
    docs[0]["gpus"][3] = gpu(3, tflops=780 * 0.95)  # 5% below: warn
    docs[1]["gpus"][5] = gpu(5, hbm=2950 * 0.92)  # 8% below: fail
    v = by_subject(docs)
    warn, fail = v["node-00 GPU 3"], v["node-01 GPU 5"]
    assert warn.status is Status.WARN
    assert "5.0% below the fleet median" in warn.reasons[0]
    assert "robust z" in warn.reasons[0] and "outlier" in warn.reasons[0]
    assert fail.status is Status.FAIL
    assert "HBM copy" in fail.reasons[0] and "fail below -7.0%" in fail.reasons[0]
    others = [x for s, x in v.items() if s not in ("node-00 GPU 3", "node-01 GPU 5")]
    assert all(x.status is Status.PASS for x in others)


# A node measured again (the verification phase retests a node whose GEMM was low) gives a
# second document of the same host: one verdict per GPU, throughput on the mean of the runs.
def test_a_gpu_measured_again_is_judged_on_the_mean_of_its_runs() -> None:
    docs = healthy_fleet()
    docs[0]["gpus"][3] = gpu(3, tflops=780 * 0.95)  # 5% below alone: a warn
    again = doc("node-00", [gpu(i, 780 + (i - 4) * 0.5, 2950 + (i - 4) * 2) for i in range(8)])
    judgement = judge_burnin([*docs, again])
    v = {x.subject: x for x in judgement.verdicts}
    assert len(v) == len(judgement.rows) == 16  # one verdict and one row per GPU
    assert judgement.fleet[f"{H100} tflops"]["n"] == 16  # each GPU counted once, not per run
    cleared = v["node-00 GPU 3"]
    assert cleared.status is Status.PASS, cleared.reasons
    assert cleared.metrics["runs"] == 2
    assert cleared.metrics["tflops"] == pytest.approx((780 * 0.95 + 779.5) / 2)
    assert "runs" not in v["node-01 GPU 3"].metrics


def test_a_gpu_still_slow_when_measured_again_says_the_mean() -> None:
    docs = healthy_fleet()
    docs[0]["gpus"][3] = gpu(3, tflops=780 * 0.90)
    again = doc("node-00", [gpu(i, 780 * (0.92 if i == 3 else 1.0)) for i in range(8)])
    slow = by_subject([*docs, again])["node-00 GPU 3"]
    assert slow.status is Status.FAIL
    # (702 + 717.6) / 2 against the median 779.8 of the 16 GPUs' means
    assert slow.reasons[0].startswith("BF16 GEMM (mean of 2 runs) 709.8 TFLOPS is 9.0% below")


def test_a_run_that_ended_in_an_error_is_not_counted_in_the_mean() -> None:
    docs = healthy_fleet()
    docs[0]["gpus"][3] = gpu(3, tflops=780 * 0.5)
    again = doc("node-00", [gpu(i, error="CUDA error" if i == 3 else None) for i in range(8)])
    slow = by_subject([*docs, again])["node-00 GPU 3"]
    assert slow.status is Status.FAIL
    throughput = [r for r in slow.reasons if r.startswith("BF16 GEMM")]
    assert throughput and throughput[0].startswith("BF16 GEMM 390.0 TFLOPS is"), slow.reasons
    assert any("CUDA error" in r for r in slow.reasons), slow.reasons


def test_every_run_of_a_gpu_measured_again_counts_for_its_other_checks() -> None:
    docs = healthy_fleet()
    again = doc("node-00", [gpu(i, checks_failed=2 if i == 6 else 0) for i in range(8)])
    again["gpus"][1] = gpu(1, seen={"hw_thermal_slowdown": 9})
    v = by_subject([*docs, again])
    assert v["node-00 GPU 6"].status is Status.FAIL
    assert v["node-00 GPU 6"].reasons[0].startswith("2 of 120 correctness checks failed")
    assert v["node-00 GPU 6"].metrics["checks_failed"] == 0  # the metrics are the first run's
    assert v["node-00 GPU 1"].status is Status.FAIL
    thermal = [r for r in v["node-00 GPU 1"].reasons if r.startswith("HW thermal slowdown")]
    assert len(thermal) == 1 and thermal[0].endswith("in 9 of 600 samples")
    assert v["node-00 GPU 0"].status is Status.PASS
    # The same finding in both runs is said once.
    assert len([r for r in v["node-00 GPU 0"].reasons if "SW power cap" in r]) <= 1


def test_robust_z_and_deviation_figures() -> None:
    # constructed: median 100, MAD 1 -> z of 90 is 0.6745 * -10 / 1
    values = [100, 101, 99, 100, 102, 98, 90]
    stats = fleet_stats(values)
    assert (stats.median, stats.mad) == (100, 1)
    assert stats.robust_z(90) == pytest.approx(-6.745)
    docs = [doc("n1", [gpu(i, tflops=t, name="constructed GPU") for i, t in enumerate(values)])]
    verdict = by_subject(docs, floors={})["n1 GPU 6"]
    assert verdict.status is Status.FAIL
    fleet = verdict.metrics["fleet_tflops"]
    assert fleet["deviation_pct"] == -10.0
    assert fleet["robust_z"] == pytest.approx(-6.745)
    assert "robust z -6.7" in verdict.reasons[0]


def test_identical_fleet_states_that_z_is_undefined() -> None:
    docs = [doc("n1", [gpu(i, 700.0) for i in range(3)] + [gpu(3, 600.0)])]
    verdict = by_subject(docs, floors={})["n1 GPU 3"]
    assert verdict.status is Status.FAIL
    assert "robust z undefined (MAD 0)" in verdict.reasons[0]


def test_no_fleet_comparison_below_min_fleet_size() -> None:
    docs = [doc("n1", [gpu(0, 800.0), gpu(1, 755.0)])]  # 5.6% apart, above the floors
    v = by_subject(docs)
    assert v["n1 GPU 1"].status is Status.PASS
    assert "fleet_tflops" not in v["n1 GPU 1"].metrics


def test_models_are_compared_within_their_own_model() -> None:
    # constructed: 4 H100 at 780 and 4 of another model at 700: nobody is slow for its kind
    docs = [
        doc("n1", [gpu(i, 780.0) for i in range(4)]),
        doc("n2", [gpu(i, 700.0, name="constructed other GPU") for i in range(4)]),
    ]
    v = by_subject(docs)
    assert all(x.status is Status.PASS for x in v.values())
    assert v["n2 GPU 0"].reasons[-1].startswith("note: no absolute floors")


def test_default_h100_floors() -> None:
    # constructed: a uniform fleet, fine against itself, but slow in absolute terms
    docs = [doc("n1", [gpu(i, 600.0, 2750.0) for i in range(8)])]
    v = by_subject(docs)["n1 GPU 0"]
    assert v.status is Status.FAIL
    assert "BF16 GEMM 600.0 TFLOPS is below the floor 607 TFLOPS" in v.reasons
    assert "HBM copy 2750.0 GB/s is below the warn floor 2800 GB/s" in v.reasons


def test_floors_given_as_a_parameter_apply_to_every_model() -> None:
    docs = [doc("n1", [gpu(0, 0.002, 0.5, name="x86_64")])]
    floors = {"gemm_tflops_floor": 0.001, "hbm_gbps_floor": 1.0}
    v = by_subject(docs, floors=floors)["n1 GPU 0"]
    assert v.status is Status.FAIL
    assert v.reasons == ["HBM copy 0.5 GB/s is below the floor 1 GB/s"]


def test_unknown_floor_key_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"floors\.gemm_tflop_floor: unknown floor"):
        judge_burnin(healthy_fleet(), floors={"gemm_tflop_floor": 700})


def test_constants_agree_with_the_threshold_pack() -> None:
    flat = floors_from_pack(yaml.safe_load(PACK.read_text()))
    assert {k: flat[k] for k in H100_SXM_FLOORS} == H100_SXM_FLOORS
    assert flat["fleet_warn_pct"] == DEFAULT_RULES["fleet_warn_pct"]
    assert flat["fleet_fail_pct"] == DEFAULT_RULES["fleet_fail_pct"]


def test_correctness_failure_and_worker_error_fail() -> None:
    docs = healthy_fleet(1)
    docs[0]["gpus"][2] = gpu(2, checks_failed=3)
    docs[0]["gpus"][4] = gpu(4, error="RuntimeError: CUDA error: unspecified launch failure")
    v = by_subject(docs)
    bad = v["node-00 GPU 2"]
    assert bad.status is Status.FAIL
    assert bad.reasons[0].startswith("3 of 120 correctness checks failed (GEMM: max relative")
    assert "replace it" in bad.reasons[0]
    dead = v["node-00 GPU 4"]
    assert dead.status is Status.FAIL
    assert "did not complete on this GPU: RuntimeError" in dead.reasons[0]
    assert dead.metrics["tflops"] is None
    assert v["node-00 GPU 0"].status is Status.PASS


def test_no_check_run_is_a_failure() -> None:
    docs = healthy_fleet(1)
    docs[0]["gpus"][1]["correctness"]["checks_run"] = 0
    assert "no correctness check ran" in by_subject(docs)["node-00 GPU 1"].reasons[0]


@pytest.mark.parametrize(
    ("reason", "status", "words"),
    [
        ("hw_thermal_slowdown", Status.FAIL, "HW thermal slowdown"),
        ("hw_power_brake_slowdown", Status.FAIL, "HW power brake slowdown"),
        ("hw_slowdown", Status.FAIL, "HW slowdown"),
        ("sw_thermal_slowdown", Status.WARN, "SW thermal slowdown"),
    ],
)
def test_slowdown_throttle_reasons(reason: str, status: Status, words: str) -> None:
    docs = healthy_fleet(1)
    docs[0]["gpus"][6] = gpu(6, seen={reason: 12})
    v = by_subject(docs)["node-00 GPU 6"]
    assert v.status is status
    assert any(r.startswith(words) and r.endswith("in 12 of 600 samples") for r in v.reasons)


def test_power_cap_alone_is_normal_under_load() -> None:
    v = by_subject(healthy_fleet(1))["node-00 GPU 0"]
    assert v.status is Status.PASS
    assert v.metrics["throttle_reasons_seen"] == {"sw_power_cap": 400}


def test_missing_nvml_samples_warn_with_the_reason() -> None:
    docs = healthy_fleet(1)
    unavailable = {"nvml": "unavailable", "reason": "nvml unavailable: nvmlInit failed"}
    docs[0]["gpus"][0] = gpu(0, samples=unavailable)
    v = by_subject(docs)["node-00 GPU 0"]
    assert v.status is Status.WARN
    assert "nvml unavailable: nvmlInit failed" in v.reasons[0]


def test_weak_burnin_load_warns() -> None:
    docs = healthy_fleet(1)
    docs[0]["gpus"][0] = gpu(0, efficiency=0.82)
    v = by_subject(docs)["node-00 GPU 0"]
    assert v.status is Status.WARN
    assert "only 82% of a plain torch.matmul loop" in v.reasons[0]


def test_temperature_limit_from_floors() -> None:
    floors = {**H100_SXM_FLOORS, "max_gpu_temp_c": 70}
    v = by_subject(healthy_fleet(1), floors=floors)["node-00 GPU 0"]
    assert v.status is Status.WARN
    assert "temperature reached 74 C, above the limit 70 C" in v.reasons


def test_malformed_documents_name_the_problem() -> None:
    with pytest.raises(UserError) as err:
        judge_burnin(
            [{"schema": "other"}, doc("", [gpu(0)]), doc("n3", [])], sources=["a", "b", "c"]
        )
    text = str(err.value)
    assert "a.schema: 'other' is not 'gpufleet.burnin/1'" in text
    assert "b.host: missing host name" in text
    assert "c.gpus: no GPU results" in text


# --------------------------------------------------------------------------- gpu_burn


def recording() -> str:
    return RECORDING.read_text().split("\n", 1)[1]  # line 1 is the provenance line


def test_gpu_burn_recording_one_gpu_ok() -> None:
    run = parse_gpu_burn(recording())
    assert run.completed and run.tested == 1
    assert run.precision == "FLOATS" and run.burn_seconds == 120
    (g,) = run.gpus
    assert (g.index, g.status, g.gflops, g.processed, g.errors, g.temp_c) == (
        0,
        "OK",
        51402.0,
        5600,
        0,
        56,
    )
    assert g.name == H100 and g.uuid == "GPU-c6b0ca29-53c0-326e-8aaa-cfa1653e18d1"
    (v,) = judge_gpu_burn(run, "kata-vm").verdicts
    assert v.status is Status.PASS and v.reasons == ["gpu_burn: OK, 51402 Gflop/s (FLOATS)"]


# constructed: a 4-GPU gpu_burn run in the format gpu_burn-drv.cpp prints (progress line
# with " - " separators, "(WARNING!)" and "(DIED!)" notes, the final "Tested N GPUs"
# block); GPU 1 had errors and is FAULTY, GPU 2 died, GPU 3 is 12% slow. Not a recording.
CONSTRUCTED_GPU_BURN_FAULTY = (
    "Burning for 60 seconds.\n"
    "50.0%  proc'd: 2800 (51000 Gflop/s) - 2790 (50900 Gflop/s) - -1 (0 Gflop/s) - "
    "2400 (44900 Gflop/s)   errors: 0 - 5  (WARNING!) - 0  (DIED!) - 0   "
    "temps: 60 C - 61 C - -- - 59 C \r"
    "100.0%  proc'd: 5600 (51000 Gflop/s) - 5590 (51100 Gflop/s) - -1 (0 Gflop/s) - "
    "4800 (44900 Gflop/s)   errors: 0 - 2  (WARNING!) - 0  (DIED!) - 0   "
    "temps: 61 C - 62 C - -- - 60 C \n"
    "Killing processes with SIGTERM (soft kill)\n"
    "done\n"
    "\n"
    "Tested 4 GPUs:\n"
    "\tGPU 0: OK\n"
    "\tGPU 1: FAULTY\n"
    "\tGPU 2: OK\n"
    "\tGPU 3: OK\n"
)


def test_gpu_burn_constructed_faulty_died_and_slow() -> None:
    run = parse_gpu_burn(CONSTRUCTED_GPU_BURN_FAULTY)
    assert [g.status for g in run.gpus] == ["OK", "FAULTY", "OK", "OK"]
    assert [g.gflops for g in run.gpus] == [51000.0, 51100.0, 0.0, 44900.0]
    assert [g.errors for g in run.gpus] == [0, 2, 0, 0]
    assert [g.died for g in run.gpus] == [False, False, True, False]
    assert [g.temp_c for g in run.gpus] == [61, 62, None, 60]
    judgement = judge_gpu_burn(run, "node-07")
    status = {v.subject: v.status for v in judgement.verdicts}
    assert status == {
        "node-07 GPU 0": Status.PASS,
        "node-07 GPU 1": Status.FAIL,
        "node-07 GPU 2": Status.FAIL,
        "node-07 GPU 3": Status.FAIL,
    }
    reasons = {v.subject: " | ".join(v.reasons) for v in judgement.verdicts}
    assert "FAULTY" in reasons["node-07 GPU 1"] and "exited 0" in reasons["node-07 GPU 1"]
    assert "DIED" in reasons["node-07 GPU 2"]
    assert "12.0% below the fleet median" in reasons["node-07 GPU 3"]
    assert [r["status"] for r in judgement.rows] == ["pass", "fail", "fail", "fail"]
    assert judgement.rows[0]["gpu_burn_gflops"] == 51000.0


def test_gpu_burn_cut_off_before_summary_fails() -> None:
    # constructed: the same run cut off before "Tested N GPUs" (killed by a timeout)
    cut = CONSTRUCTED_GPU_BURN_FAULTY.split("Killing")[0]
    run = parse_gpu_burn(cut)
    assert not run.completed and len(run.gpus) == 4
    verdicts = judge_gpu_burn(run, "node-07").verdicts
    assert all(v.status is Status.FAIL for v in verdicts)
    assert "did not finish" in verdicts[0].reasons[-1]


def test_gpu_burn_empty_output_fails() -> None:
    (v,) = judge_gpu_burn(parse_gpu_burn("==========\n== CUDA ==\n"), "node-09").verdicts
    assert v.status is Status.FAIL and "no GPU results" in v.reasons[0]


# --------------------------------------------------------------------------- CLI


def cli() -> typer.Typer:
    app = typer.Typer()
    register_burnin(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps typer's command-group form
        pass

    return app


def write_docs(tmp_path: Path, docs: list[dict[str, Any]]) -> list[str]:
    paths = []
    for d in docs:
        path = tmp_path / f"{d['host']}.json"
        path.write_text(json.dumps(d))
        paths.append(str(path))
    return paths


def test_cli_json_output_and_exit_code(tmp_path: Path) -> None:
    docs = healthy_fleet()
    docs[1]["gpus"][0] = gpu(0, checks_failed=1)
    result = CliRunner().invoke(cli(), ["burnin-judge", *write_docs(tmp_path, docs), "--json"])
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["status"] == "fail"
    assert len(out["rows"]) == 16 and len(out["verdicts"]) == 16
    assert out["rows"][8] == {
        "node": "node-01",
        "gpu": 0,
        "tflops": 780.0,
        "hbm_gbps": 2950.0,
        "status": "fail",
    }


def test_cli_table_with_gpu_burn_recording(tmp_path: Path) -> None:
    paths = write_docs(tmp_path, healthy_fleet(1))
    result = CliRunner().invoke(cli(), ["burnin-judge", *paths, str(RECORDING)])
    assert result.exit_code == 0, result.output
    assert "gpu_burn" in result.output and "overall: PASS" in result.output


def test_cli_floors_from_flat_file_and_pack_name(tmp_path: Path) -> None:
    flat = tmp_path / "floors.yaml"
    flat.write_text("gemm_tflops_floor: 790\nhbm_gbps_floor: 100\n")
    assert load_floors(str(flat)) == {"gemm_tflops_floor": 790.0, "hbm_gbps_floor": 100.0}
    assert (
        load_floors("burnin-h100-sxm")["gemm_tflops_floor"] == H100_SXM_FLOORS["gemm_tflops_floor"]
    )
    paths = write_docs(tmp_path, healthy_fleet(1))
    result = CliRunner().invoke(cli(), ["burnin-judge", *paths, "--floors", str(flat), "--json"])
    assert result.exit_code == 1
    assert {r["status"] for r in json.loads(result.stdout)["rows"]} == {"fail"}


def test_cli_unreadable_input_is_a_user_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    result = CliRunner().invoke(cli(), ["burnin-judge", str(junk)])
    assert isinstance(result.exception, UserError)
    assert "neither burn-in JSON" in str(result.exception)


# ------------------------------------------- burn-in documents recorded on a real H100

BURNIN_DATA = Path(__file__).resolve().parents[1] / "data" / "burnin"


def recorded_burnin(name: str) -> dict[str, Any]:
    return json.loads((BURNIN_DATA / name).read_text())


def test_recorded_h100_burnin_passes_the_default_floors() -> None:
    """120 s of GEMM on a real H100 at its power cap: 674 TFLOPS, a healthy GPU."""
    d = recorded_burnin("gpufleet-lent-h100-vm-150s.json")
    (g,) = d["gpus"]
    assert g["efficiency"]["gemm"] >= 0.90 and g["efficiency"]["hbm"] >= 0.90
    assert g["correctness"] == {**g["correctness"], "checks_run": 30, "checks_failed": 0}
    (v,) = judge_burnin([d]).verdicts
    assert v.status is Status.PASS, v.reasons
    assert v.metrics["throttle_reasons_under_load"] == {"sw_power_cap": 128}


def test_recorded_h100_burnin_with_injected_fault_fails() -> None:
    d = recorded_burnin("gpufleet-lent-h100-vm-20s-inject-gemm.json")
    (v,) = judge_burnin([d]).verdicts
    assert v.status is Status.FAIL
    assert v.reasons[0].startswith("1 of 6 correctness checks failed (GEMM: max relative error")


def test_missing_nvml_warns_unless_the_site_says_none_is_expected():
    """A GPU run without NVML samples warns (nothing checked its clocks); a CPU run (the lab's,
    `require_nvml: 0`) keeps the sentence as a plain finding, not a warning."""
    from gpufleet.verify.burnin_judge import judge_samples

    samples = {"nvml": "unavailable", "reason": "nvml unavailable: device is cpu"}
    statuses, reasons, _ = judge_samples(samples, None)
    assert statuses == [Status.WARN] and "were not checked" in reasons[0]
    statuses, reasons, _ = judge_samples(samples, None, {**DEFAULT_RULES, "require_nvml": 0})
    assert statuses == [Status.PASS] and "device is cpu" in reasons[0]
