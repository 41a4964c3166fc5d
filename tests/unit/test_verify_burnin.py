"""The burn-in itself, run for real on CPU with tiny sizes (the same code path as on a GPU:
no fake results). NVML is absent here, so the samples must say so; the sampler thread
is driven by a constructed NVML stand-in."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pynvml
import pytest
import torch

from gpufleet.errors import UserError
from gpufleet.verify import burnin
from gpufleet.verify.burnin import (
    CLOCK_EVENT_REASONS,
    SCHEMA,
    BurnConfig,
    FaultInjection,
    NvmlSampler,
    Sample,
    decode_clock_event_reasons,
    gpu_ok,
    json_safe,
    run_burnin,
    summarize_samples,
)

TINY = BurnConfig(
    duration_s=0.5,
    size=48,
    hbm_bytes=2**20,
    reference_s=0.1,
    check_interval_s=0.15,
    sample_interval_s=0.1,
)


@pytest.fixture(scope="module")
def clean_doc() -> dict[str, Any]:
    return run_burnin(TINY, device="cpu")


def test_cpu_run_document_structure(clean_doc: dict[str, Any]) -> None:
    doc = clean_doc
    assert doc["schema"] == SCHEMA
    assert doc["host"]
    assert doc["device_kind"] == "cpu"
    assert doc["nvml"] == {"available": False, "reason": "nvml unavailable: device is cpu"}
    assert doc["config"]["size"] == 48 and doc["config"]["duration_s"] == 0.5
    assert doc["config"]["workers"] == "inline"
    (gpu,) = doc["gpus"]
    assert gpu["error"] is None
    assert gpu["device"] == "cpu"
    for key in ("name", "uuid", "serial", "pci_bus_id"):
        assert key in gpu
    assert gpu["gemm"]["size"] == 48 and gpu["gemm"]["dtype"] == "bfloat16"
    assert gpu["gemm"]["iterations"] > 0 and gpu["gemm"]["tflops"] > 0
    assert gpu["hbm"]["bytes"] == 2**20 and gpu["hbm"]["gbps"] > 0
    assert "read+write" in gpu["hbm"]["convention"]
    ref = gpu["reference"]
    assert ref["gemm_tflops"] > 0 and ref["hbm_gbps"] > 0
    assert ref["gemm_iterations"] > 0 and ref["hbm_iterations"] > 0
    assert gpu["efficiency"]["gemm"] == pytest.approx(
        gpu["gemm"]["tflops"] / ref["gemm_tflops"], rel=0.01
    )
    # Start check (first result vs FP32) + GEMM loop checks + copy loop checks.
    corr = gpu["correctness"]
    assert corr["checks_run"] >= 3
    assert corr["checks_failed"] == 0 and corr["failures"] == []
    assert 0 < corr["max_rel_error"] < corr["tolerance"]
    assert gpu["samples"] == {"nvml": "unavailable", "reason": "nvml unavailable: device is cpu"}
    assert list(gpu["phases"]) == [
        "setup",
        "gemm",
        "gemm_reference",
        "setup_hbm",
        "hbm",
        "hbm_reference",
        "done",
    ]
    assert gpu_ok(gpu)
    json.dumps(json_safe(doc), allow_nan=False)


def test_gemm_throughput_counts_the_real_work(clean_doc: dict[str, Any]) -> None:
    gemm = clean_doc["gpus"][0]["gemm"]
    expected = 2 * 48**3 * gemm["iterations"] / gemm["seconds"] / 1e12
    assert gemm["tflops"] == pytest.approx(expected, rel=0.02, abs=1e-4)
    hbm = clean_doc["gpus"][0]["hbm"]
    assert hbm["gbps"] == pytest.approx(2 * 2**20 * hbm["iterations"] / hbm["seconds"] / 1e9, 0.02)


def test_corrupted_gemm_result_fails_the_check() -> None:
    cfg = replace(TINY, fault=FaultInjection(phase="gemm", delta=0.5))
    (gpu,) = run_burnin(cfg, device="cpu")["gpus"]
    corr = gpu["correctness"]
    assert corr["checks_failed"] == 1
    (failure,) = corr["failures"]
    assert failure["phase"] == "gemm" and failure["buffer"] == 0
    assert failure["max_rel_error"] > 0.4
    assert failure["mismatched_elements"] == 1
    assert not gpu_ok(gpu)


def test_small_corruption_caught_by_bitwise_check_only() -> None:
    # 1% of the largest magnitude: inside the FP32 tolerance (3%), so only the bitwise
    # comparison with the first result can see it; with it off the fault goes unseen.
    small = FaultInjection(phase="gemm", delta=0.01)
    strict = run_burnin(replace(TINY, fault=small), device="cpu")
    (failure,) = strict["gpus"][0]["correctness"]["failures"]
    assert failure["mismatched_elements"] == 1
    assert failure["max_rel_error"] < TINY.tolerance
    lax = replace(TINY, fault=small, bitwise=False)
    assert run_burnin(lax, device="cpu")["gpus"][0]["correctness"]["checks_failed"] == 0


def test_nan_result_fails_even_without_bitwise_check() -> None:
    nan = FaultInjection(phase="gemm", delta=math.nan)
    cfg = replace(TINY, fault=nan, bitwise=False)
    doc = run_burnin(cfg, device="cpu")
    corr = doc["gpus"][0]["correctness"]
    assert corr["checks_failed"] == 1
    assert corr["failures"][0]["max_rel_error"] == math.inf
    text = json.dumps(json_safe(doc), allow_nan=False)
    assert '"max_rel_error": "inf"' in text


def test_corrupted_copy_fails_the_check() -> None:
    cfg = replace(TINY, fault=FaultInjection(phase="hbm", element=12345))
    (gpu,) = run_burnin(cfg, device="cpu")["gpus"]
    (failure,) = gpu["correctness"]["failures"]
    assert failure["phase"] == "hbm" and failure["mismatched_bytes"] == 1


def test_module_entry_point_writes_json_and_exit_code(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    args = ["--device", "cpu", "--duration", "0.3", "--size", "32", "--hbm-mib", "1"]
    assert burnin.main([*args, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["gpus"][0]["correctness"]["checks_failed"] == 0
    # gpu_burn exits 0 with a FAULTY GPU; this burn-in does not.
    assert burnin.main([*args, "--json", str(out), "--inject-fault", "hbm"]) == 1
    assert json.loads(out.read_text())["gpus"][0]["correctness"]["checks_failed"] == 1


def test_json_folder_gets_one_file_per_host(tmp_path: Path) -> None:
    assert burnin.json_path(str(tmp_path), "node-07") == str(tmp_path / "node-07.json")
    assert burnin.json_path("out/", "node-07") == "out/node-07.json"
    assert burnin.json_path(str(tmp_path / "x.json"), "node-07") == str(tmp_path / "x.json")


def test_bad_arguments_are_user_errors() -> None:
    assert burnin.main(["--device", "cpu", "--duration", "0"]) == 2
    assert burnin.main(["--device", "cpu", "--duration", "1", "--hbm-fraction", "1.5"]) == 2


def test_cuda_request_matches_this_machine() -> None:
    if torch.cuda.is_available():
        kind, devices = burnin.resolve_devices("cuda")
        assert kind == "cuda" and len(devices) == torch.cuda.device_count()
    else:
        with pytest.raises(UserError, match="no GPU"):
            burnin.resolve_devices("cuda")
        assert burnin.resolve_devices("auto") == ("cpu", ["cpu"])


def test_spawned_worker_process_returns_the_same_document_shape() -> None:
    doc = run_burnin(TINY, device="cpu", workers="process")
    (gpu,) = doc["gpus"]
    assert doc["config"]["workers"] == "process"
    assert gpu["error"] is None and gpu["correctness"]["checks_run"] >= 3


# --------------------------------------------------------------------------- NVML parts

PYNVML_NAMES = {
    "gpu_idle": "GpuIdle",
    "applications_clocks_setting": "ApplicationsClocksSetting",
    "sw_power_cap": "SwPowerCap",
    "hw_slowdown": "HwSlowdown",
    "sync_boost": "SyncBoost",
    "sw_thermal_slowdown": "SwThermalSlowdown",
    "hw_thermal_slowdown": "HwThermalSlowdown",
    "hw_power_brake_slowdown": "HwPowerBrakeSlowdown",
    "display_clock_setting": "DisplayClockSetting",
}


def test_clock_event_bits_match_nvml_bindings() -> None:
    for bit, name in CLOCK_EVENT_REASONS.items():
        assert getattr(pynvml, f"nvmlClocksEventReason{PYNVML_NAMES[name]}") == bit
        assert getattr(pynvml, f"nvmlClocksThrottleReason{PYNVML_NAMES[name]}") == bit


def test_decode_clock_event_reasons() -> None:
    assert decode_clock_event_reasons(0) == []
    assert decode_clock_event_reasons(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert decode_clock_event_reasons(0x88 | 0x400) == [
        "hw_slowdown",
        "hw_power_brake_slowdown",
        "unknown_0x400",
    ]


def test_summarize_samples() -> None:
    # constructed: five samples as a sampler would record them
    samples = [
        Sample(0.0, "setup", 30, 345, 2619, 70.0, ["gpu_idle"]),
        Sample(1.0, "gemm", 61, 1980, 2619, 690.5, ["sw_power_cap"]),
        Sample(2.0, "gemm", 70, 1755, 2619, 699.0, ["sw_power_cap", "sw_thermal_slowdown"]),
        Sample(3.0, "hbm", 66, 1980, 2619, 400.0, []),
        Sample(4.0, "done", 60, None, None, None, []),
    ]
    s = summarize_samples(samples, 1.0)
    assert s["nvml"] == "available" and s["count"] == 5
    assert s["temperature_c"] == {"min": 30, "max": 70, "mean": 57.4}
    assert s["sm_clock_mhz"] == {"min": 345, "max": 1980, "mean": 1515.0}
    assert s["power_w"]["max"] == 699.0
    assert s["throttle_reasons_seen"] == {
        "gpu_idle": 1,
        "sw_power_cap": 2,
        "sw_thermal_slowdown": 1,
    }
    assert s["throttle_reasons_under_load"] == {"sw_power_cap": 2, "sw_thermal_slowdown": 1}
    assert s["samples_under_load"] == 3


class ConstructedNvml:
    """constructed: a stand-in for pynvml exposing only what the sampler calls; the
    newer clock-event call is unsupported (as on old drivers), so the sampler must fall
    back to the throttle-reasons call; power is unsupported too."""

    NVMLError = pynvml.NVMLError
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: object) -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: object) -> int:
        return 0x4 | 0x40

    def nvmlDeviceGetPowerUsage(self, h: object) -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetTemperature(self, h: object, sensor: int) -> int:
        return 81

    def nvmlDeviceGetClockInfo(self, h: object, clock: int) -> int:
        return 1755 if clock == pynvml.NVML_CLOCK_SM else 2619


def test_sampler_thread_reads_decodes_and_survives_unsupported_calls() -> None:
    sampler = NvmlSampler(ConstructedNvml(), handle=object(), interval_s=0.01)
    sampler.start()
    sampler.phase = "gemm"
    deadline = time.monotonic() + 10
    while len(sampler.samples) < 3 and time.monotonic() < deadline:
        sampler.join(0.01)
    sampler.stop()
    assert not sampler.is_alive()
    last = sampler.samples[-1]
    assert last.phase == "gemm"
    assert (last.temperature_c, last.sm_clock_mhz, last.mem_clock_mhz) == (81, 1755, 2619)
    assert last.power_w is None
    assert last.reasons == ["sw_power_cap", "hw_thermal_slowdown"]
