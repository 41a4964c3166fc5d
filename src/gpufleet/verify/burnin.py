"""GPU burn-in: BF16 GEMM at full load with correctness checks, HBM copy bandwidth,
NVML samples, and a plain-PyTorch reference measured on the same GPU in the same run.

Run on a GPU node (one process per node; it starts one worker process per visible GPU):

    python -m gpufleet.verify.burnin --duration 600 --json /var/tmp/burnin-$(hostname).json

Why not gpu_burn: it exits 0 even when it reports a GPU FAULTY, so a pipeline that trusts
its exit code passes broken GPUs. This burn-in checks its own results (every check is
counted in the JSON), exits 1 when any check failed, and leaves the fleet comparison to
`gpufleet verify burnin-judge`.

Design:
- One worker process per GPU (spawned, not forked). A GPU that hangs, faults or kills its
  CUDA context loses only its own result; the others still report. Each process has its
  own CUDA context and default stream, so cuBLAS results are bitwise reproducible
  within the process (cuBLAS documents this for one toolkit version, GPU architecture
  and stream), and no Python GIL is shared between GPUs. On CPU (tests, laptops) the
  same worker runs inline: there is one device, and spawning torch costs seconds.
- Each worker runs four timed phases: the burn GEMM loop (with periodic checks), a plain
  `torch.matmul` loop, the burn copy loop (with periodic checks), a plain `Tensor.copy_`
  loop. Each plain reference runs right after its burn phase, so both see the same
  thermal and power state; `efficiency` is burn / plain (acceptance target >= 0.90).
- Correctness: the GEMM input is seeded (identical on every GPU); at start the worker
  computes an FP32 reference of the same product (TF32 off) and the first BF16 result.
  Every check compares each result buffer written by the burn loop with both: more than
  `tolerance` relative error against FP32 (max |err| / max |ref|), or any element that
  differs bitwise from the first BF16 result, fails the check. The copy check compares the
  destination with the source element by element.
- A sampler thread in each worker reads NVML every `--sample-interval` seconds:
  temperature, SM and memory clocks, power, clock event (throttle) reasons decoded to
  names. Without NVML (CPU, no driver) the samples say "nvml unavailable" and why.

HBM bandwidth convention: a copy of B bytes reads B and writes B; GB/s = 2 * B / seconds /
1e9, as CUDA's bandwidthTest reports device-to-device copies.

torch and pynvml are imported inside functions: the judge and the CLI import this module
for its constants on machines without either.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from typing import Any

from gpufleet.errors import Problem, UserError

SCHEMA = "gpufleet.burnin/1"

HBM_CONVENTION = (
    "read+write: GB/s = 2 * buffer bytes / seconds / 1e9 (CUDA bandwidthTest device-to-device)"
)

# NVML clock event reasons (nvml.h `nvmlClocksEventReason*`, formerly
# `nvmlClocksThrottleReason*`; the same bits in both APIs).
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}

# Defaults per device kind: full-size work on a GPU, tiny work on CPU (same code path).
DEFAULT_SIZE = {"cuda": 8192, "cpu": 128}
DEFAULT_HBM_MIB = {"cuda": 2048, "cpu": 4}
# Results the GEMM loop rotates through; every check inspects all of them.
RESULT_BUFFERS = 8
# Relative error (max |bf16 - fp32| / max |fp32|) above which a GEMM check fails. BF16
# rounding of the output alone gives about 2^-9 to 2^-8; 0.03 leaves room for split-K
# reductions in reduced precision while any real corruption (a flipped exponent or
# sign bit, a stuck word) is far above it. Small flips are caught by the bitwise check.
DEFAULT_TOLERANCE = 0.03
MAX_FAILURES_KEPT = 20


def decode_clock_event_reasons(mask: int) -> list[str]:
    """Names of the bits set in an NVML clock event (throttle) reason mask."""
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    if unknown:
        names.append(f"unknown_0x{unknown:x}")
    return names


@dataclass(frozen=True)
class FaultInjection:
    """Deliberate corruption of one result, to prove that the checks catch it.

    Before the burn loop's check number `check` (1-based) of `phase` ("gemm" or "hbm"),
    element `element`
    of the first result buffer (GEMM) or of the copy destination (HBM) is overwritten:
    the GEMM element gets `delta` times the largest reference magnitude added, the copy
    byte is inverted. Used by the unit tests and by `--inject-fault` (an operator's
    end-to-end check that a failing GPU really fails the pipeline).
    """

    phase: str = "gemm"
    check: int = 1
    element: int = 0
    delta: float = 0.5


@dataclass(frozen=True)
class BurnConfig:
    duration_s: float = 600.0
    size: int = DEFAULT_SIZE["cuda"]
    hbm_bytes: int = DEFAULT_HBM_MIB["cuda"] * 2**20
    hbm_fraction: float = 0.2
    reference_s: float = 10.0
    check_interval_s: float = 5.0
    sample_interval_s: float = 1.0
    tolerance: float = DEFAULT_TOLERANCE
    bitwise: bool = True
    seed: int = 1234
    fault: FaultInjection | None = None

    @property
    def gemm_s(self) -> float:
        return self.duration_s * (1.0 - self.hbm_fraction)

    @property
    def hbm_s(self) -> float:
        return self.duration_s * self.hbm_fraction


# --------------------------------------------------------------------------- samples


@dataclass
class Sample:
    t: float
    phase: str
    temperature_c: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    power_w: float | None = None
    reasons: list[str] = field(default_factory=list)


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": min(values),
        "max": max(values),
        "mean": round(statistics.fmean(values), 2),
    }


def summarize_samples(samples: list[Sample], interval_s: float) -> dict[str, Any]:
    """Min/max/mean of each sampled quantity and how often each clock event reason was seen."""
    seen: dict[str, int] = {}
    for s in samples:
        for name in s.reasons:
            seen[name] = seen.get(name, 0) + 1
    fields = ("temperature_c", "sm_clock_mhz", "mem_clock_mhz", "power_w")
    summary: dict[str, Any] = {"nvml": "available", "count": len(samples), "interval_s": interval_s}
    for name in fields:
        values = [v for s in samples if (v := getattr(s, name)) is not None]
        summary[name] = _stats(values)
    summary["throttle_reasons_seen"] = dict(sorted(seen.items()))
    # Reasons seen while the GPU was under load (the idle reasons during setup say nothing).
    loaded: dict[str, int] = {}
    for s in samples:
        if s.phase in ("gemm", "gemm_reference", "hbm", "hbm_reference"):
            for name in s.reasons:
                loaded[name] = loaded.get(name, 0) + 1
    summary["throttle_reasons_under_load"] = dict(sorted(loaded.items()))
    summary["samples_under_load"] = sum(
        1 for s in samples if s.phase in ("gemm", "gemm_reference", "hbm", "hbm_reference")
    )
    return summary


def nvml_unavailable(reason: str) -> dict[str, Any]:
    return {"nvml": "unavailable", "reason": reason}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlSampler(threading.Thread):
    """Reads one GPU's NVML counters every `interval_s` seconds until stopped."""

    def __init__(self, nvml: Any, handle: Any, interval_s: float) -> None:
        super().__init__(name="nvml-sampler", daemon=True)
        self._nvml = nvml
        self._handle = handle
        self.interval_s = interval_s
        self.phase = "setup"
        self.samples: list[Sample] = []
        self._stop_event = threading.Event()

    def _read(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (self._nvml.NVMLError, AttributeError):  # unsupported, or a binding too old
            return None

    def sample(self) -> Sample:
        nv, h = self._nvml, self._handle
        mask = self._read(lambda: nv.nvmlDeviceGetCurrentClocksEventReasons(h))
        if mask is None:
            mask = self._read(lambda: nv.nvmlDeviceGetCurrentClocksThrottleReasons(h))
        power_mw = self._read(lambda: nv.nvmlDeviceGetPowerUsage(h))
        return Sample(
            t=time.time(),
            phase=self.phase,
            temperature_c=self._read(
                lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
            ),
            sm_clock_mhz=self._read(lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
            mem_clock_mhz=self._read(lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)),
            power_w=None if power_mw is None else power_mw / 1000.0,
            reasons=[] if mask is None else decode_clock_event_reasons(int(mask)),
        )

    def run(self) -> None:
        while True:
            self.samples.append(self.sample())
            if self._stop_event.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5 * self.interval_s + 5)
        self.samples.append(self.sample())


# --------------------------------------------------------------------------- identity


def _import_nvml() -> tuple[Any | None, str]:
    try:
        import pynvml
    except ImportError:
        return None, "nvml unavailable: the nvidia-ml-py package (module pynvml) is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as err:
        return None, f"nvml unavailable: nvmlInit failed: {err}"
    return pynvml, ""


def _nvml_handle_for(nvml: Any, props: Any) -> tuple[Any | None, str]:
    """The NVML handle of a CUDA device, by UUID, else by PCI address."""
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        text = str(uuid)
        text = text if text.startswith("GPU-") else f"GPU-{text}"
        try:
            return nvml.nvmlDeviceGetHandleByUUID(text), ""
        except nvml.NVMLError:
            pass
    bus = getattr(props, "pci_bus_id", None)
    if bus is not None:
        address = (
            f"{getattr(props, 'pci_domain_id', 0):08x}:{bus:02x}:"
            f"{getattr(props, 'pci_device_id', 0):02x}.0"
        )
        try:
            return nvml.nvmlDeviceGetHandleByPciBusId_v2(address), ""
        except (nvml.NVMLError, AttributeError):
            pass
    return None, "nvml unavailable: could not match the CUDA device to an NVML device"


def _nvml_identity(nvml: Any, handle: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, fn in (
        ("name", nvml.nvmlDeviceGetName),
        ("uuid", nvml.nvmlDeviceGetUUID),
        ("serial", nvml.nvmlDeviceGetSerial),
    ):
        try:
            out[key] = _text(fn(handle))
        except nvml.NVMLError:
            out[key] = None
    try:
        out["pci_bus_id"] = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
    except nvml.NVMLError:
        out["pci_bus_id"] = None
    return out


# --------------------------------------------------------------------------- timed work


def _sig(x: float, digits: int = 6) -> float:
    """`x` to `digits` significant digits: TFLOPS of a tiny CPU run stay readable too."""
    return float(f"{x:.{digits}g}")


def _sync(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_loop(
    torch: Any, device: Any, step: Callable[[], object], seconds: float
) -> tuple[int, float]:
    """Run `step` in batches until `seconds` pass; sync only between batches."""
    batch, iterations = 1, 0
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        for _ in range(batch):
            step()
        _sync(torch, device)
        iterations += batch
        now = time.perf_counter()
        if now - start >= seconds:
            return iterations, now - start
        # Grow batches to about 1/10 of the phase (at most 0.25 s) so syncs cost little.
        per_step = max((now - t0) / batch, 1e-7)
        target = min(0.25, seconds / 10)
        batch = max(1, min(batch * 4, int(target / per_step)))


@dataclass
class CheckLog:
    run: int = 0
    failed: int = 0
    max_rel_error: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def record(self, phase: str, ok: bool, detail: dict[str, Any]) -> None:
        self.run += 1
        if not ok:
            self.failed += 1
            if len(self.failures) < MAX_FAILURES_KEPT:
                self.failures.append({"phase": phase, "check": self.run, **detail})


class GemmBurn:
    """The BF16 GEMM under load and its checks against the FP32 and first BF16 results."""

    def __init__(self, torch: Any, device: Any, cfg: BurnConfig) -> None:
        self.torch, self.device, self.cfg = torch, device, cfg
        n = cfg.size
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        # Uniform in [-1, 1), rounded to BF16 on the host: the same inputs on every GPU.
        a = (torch.rand(n, n, generator=gen) * 2 - 1).to(torch.bfloat16)
        b = (torch.rand(n, n, generator=gen) * 2 - 1).to(torch.bfloat16)
        self.a, self.b = a.to(device), b.to(device)
        self.flops = 2.0 * n**3
        self.buffers = [
            torch.empty((n, n), dtype=torch.bfloat16, device=device) for _ in range(RESULT_BUFFERS)
        ]
        if device.type == "cuda":
            tf32 = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = False
            try:
                self.ref32 = self.a.float() @ self.b.float()
            finally:
                torch.backends.cuda.matmul.allow_tf32 = tf32
        else:
            self.ref32 = self.a.float() @ self.b.float()
        self.ref_scale = float(self.ref32.abs().max())
        self.first = torch.matmul(self.a, self.b)
        self.iterations = 0
        self.written = 0
        self.checks = 0

    def step(self) -> None:
        out = self.buffers[self.iterations % RESULT_BUFFERS]
        self.torch.matmul(self.a, self.b, out=out)
        self.iterations += 1
        self.written = min(self.written + 1, RESULT_BUFFERS)

    def check_one(self, result: Any) -> tuple[float, int]:
        """Relative error against FP32 and the count of elements differing from the first result."""
        err = float((result.float() - self.ref32).abs().max()) / self.ref_scale
        if not math.isfinite(err):  # NaN or Inf in the result: corrupt beyond measure
            err = math.inf
        mismatched = int((result != self.first).sum()) if self.cfg.bitwise else 0
        return err, mismatched

    def check(self, log: CheckLog, elapsed: float) -> None:
        self.checks += 1
        fault = self.cfg.fault
        if fault and fault.phase == "gemm" and fault.check == self.checks:
            flat = self.buffers[0].view(-1)
            flat[fault.element] += fault.delta * self.ref_scale
            self.written = max(self.written, 1)
        worst_err, worst_mismatch, first_bad = 0.0, 0, -1
        for i in range(self.written):
            err, mismatched = self.check_one(self.buffers[i])
            if first_bad < 0 and (err > self.cfg.tolerance or mismatched):
                first_bad = i
            worst_err = max(worst_err, err)
            worst_mismatch = max(worst_mismatch, mismatched)
        log.max_rel_error = max(log.max_rel_error, worst_err)
        log.record(
            "gemm",
            first_bad < 0,
            {
                "elapsed_s": round(elapsed, 3),
                "max_rel_error": worst_err,
                "tolerance": self.cfg.tolerance,
                "mismatched_elements": worst_mismatch,
                "buffer": first_bad,
            },
        )


class CopyBurn:
    """Device-to-device copies of a seeded buffer, checked element by element."""

    def __init__(self, torch: Any, device: Any, cfg: BurnConfig) -> None:
        self.torch, self.device, self.cfg = torch, device, cfg
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
        # Seed a 1 MiB block on the host and tile it on the device: large buffers stay cheap.
        block = min(cfg.hbm_bytes, 2**20)
        pattern = torch.randint(0, 256, (block,), dtype=torch.uint8, generator=gen).to(device)
        reps = max(1, cfg.hbm_bytes // block)
        self.src = pattern.repeat(reps)
        self.dst = torch.empty_like(self.src)
        self.bytes = self.src.numel()
        self.iterations = 0
        self.checks = 0

    def step(self) -> None:
        self.dst.copy_(self.src)
        self.iterations += 1

    def check(self, log: CheckLog, elapsed: float) -> None:
        self.checks += 1
        fault = self.cfg.fault
        if fault and fault.phase == "hbm" and fault.check == self.checks:
            flat = self.dst.view(-1)
            flat[fault.element] = 255 - flat[fault.element]
        ok = bool(self.torch.equal(self.dst, self.src))
        mismatched = 0 if ok else int((self.dst != self.src).sum())
        log.record("hbm", ok, {"elapsed_s": round(elapsed, 3), "mismatched_bytes": mismatched})


def _burn_loop(
    torch: Any,
    device: Any,
    step: Callable[[], None],
    check: Callable[[CheckLog, float], None],
    log: CheckLog,
    seconds: float,
    check_interval: float,
) -> tuple[int, float]:
    """The loaded loop: batches of `step`, a check every `check_interval` and at the end.

    The time spent in checks counts against the throughput: the figure is what the GPU
    delivered under the burn-in as run, checks included.
    """
    batch, iterations = 1, 0
    start = time.perf_counter()
    next_check = start + check_interval
    while True:
        t0 = time.perf_counter()
        for _ in range(batch):
            step()
        _sync(torch, device)
        iterations += batch
        now = time.perf_counter()
        done = now - start >= seconds
        if done or now >= next_check:
            check(log, now - start)
            _sync(torch, device)
            next_check = time.perf_counter() + check_interval
        if done:
            return iterations, time.perf_counter() - start
        per_step = max((now - t0) / batch, 1e-7)
        target = min(0.25, check_interval / 4, seconds / 10)
        batch = max(1, min(batch * 4, int(target / per_step)))


def _warmup(torch: Any, device: Any, step: Callable[[], None], count: int = 3) -> None:
    for _ in range(count):
        step()
    _sync(torch, device)


class _Phases:
    """Wall-clock start and end of each phase of a device's burn-in; the sampler tags
    its samples with the current phase."""

    def __init__(self) -> None:
        self.times: dict[str, dict[str, float]] = {}
        self.sampler: NvmlSampler | None = None

    def __call__(self, name: str) -> None:
        now = time.time()
        for value in self.times.values():
            value.setdefault("end", now)
        self.times[name] = {"start": now}
        if self.sampler is not None:
            self.sampler.phase = name

    def close(self) -> dict[str, dict[str, float]]:
        for value in self.times.values():
            value.setdefault("end", time.time())
        return self.times


def _open_device(
    torch: Any, device: Any, cfg: BurnConfig, result: dict[str, Any]
) -> tuple[NvmlSampler | None, str]:
    """Select the device, name it, and start NVML sampling where NVML sees it."""
    if device.type != "cuda":
        result["name"] = platform.processor() or platform.machine() or "cpu"
        return None, "nvml unavailable: device is cpu"
    torch.cuda.set_device(device)
    props = torch.cuda.get_device_properties(device)
    result["name"] = props.name
    nvml, reason = _import_nvml()
    if nvml is None:
        return None, reason
    handle, reason = _nvml_handle_for(nvml, props)
    if handle is None:
        return None, reason
    result.update(_nvml_identity(nvml, handle))
    sampler = NvmlSampler(nvml, handle, cfg.sample_interval_s)
    sampler.start()
    return sampler, reason


@dataclass
class _Measured:
    """Iterations and seconds of the checked burns and of the plain reference loops."""

    gemm: tuple[int, float]
    gemm_reference: tuple[int, float]
    hbm: tuple[int, float]
    hbm_reference: tuple[int, float]
    hbm_bytes: int


def _run_burns(
    torch: Any, device: Any, cfg: BurnConfig, phase: _Phases, log: CheckLog
) -> _Measured:
    """GEMM then HBM copy, each checked while it runs and timed against a plain loop."""
    phase("setup")
    gemm = GemmBurn(torch, device, cfg)
    # The first BF16 result must itself agree with FP32, or every later check would
    # compare against a corrupt reference.
    start_err, _ = gemm.check_one(gemm.first)
    log.max_rel_error = start_err
    log.record(
        "gemm",
        start_err <= cfg.tolerance,
        {
            "elapsed_s": 0.0,
            "max_rel_error": start_err,
            "tolerance": cfg.tolerance,
            "mismatched_elements": 0,
            "buffer": -1,
            "note": "first result against FP32",
        },
    )
    _warmup(torch, device, gemm.step)
    phase("gemm")
    burned = _burn_loop(torch, device, gemm.step, gemm.check, log, cfg.gemm_s, cfg.check_interval_s)
    phase("gemm_reference")
    a, b = gemm.a, gemm.b
    reference = _timed_loop(torch, device, lambda: torch.matmul(a, b), cfg.reference_s)
    del gemm
    phase("setup_hbm")
    copy = CopyBurn(torch, device, cfg)
    _warmup(torch, device, copy.step)
    phase("hbm")
    copied = _burn_loop(torch, device, copy.step, copy.check, log, cfg.hbm_s, cfg.check_interval_s)
    phase("hbm_reference")
    src, dst = copy.src, copy.dst
    copy_reference = _timed_loop(torch, device, lambda: dst.copy_(src), cfg.reference_s)
    phase("done")
    return _Measured(burned, reference, copied, copy_reference, copy.bytes)


def _results(cfg: BurnConfig, m: _Measured, log: CheckLog) -> dict[str, Any]:
    """Throughput, reference, efficiency and correctness sections of a device result."""
    flops = 2.0 * cfg.size**3
    moved = 2.0 * m.hbm_bytes
    gemm_tflops = flops * m.gemm[0] / m.gemm[1] / 1e12
    ref_tflops = flops * m.gemm_reference[0] / m.gemm_reference[1] / 1e12
    hbm_gbps = moved * m.hbm[0] / m.hbm[1] / 1e9
    ref_gbps = moved * m.hbm_reference[0] / m.hbm_reference[1] / 1e9
    return {
        "gemm": {
            "size": cfg.size,
            "dtype": "bfloat16",
            "iterations": m.gemm[0],
            "seconds": round(m.gemm[1], 3),
            "tflops": _sig(gemm_tflops),
        },
        "hbm": {
            "bytes": m.hbm_bytes,
            "iterations": m.hbm[0],
            "seconds": round(m.hbm[1], 3),
            "gbps": _sig(hbm_gbps),
            "convention": HBM_CONVENTION,
        },
        "reference": {
            "gemm_tflops": _sig(ref_tflops),
            "gemm_iterations": m.gemm_reference[0],
            "gemm_seconds": round(m.gemm_reference[1], 3),
            "hbm_gbps": _sig(ref_gbps),
            "hbm_iterations": m.hbm_reference[0],
            "hbm_seconds": round(m.hbm_reference[1], 3),
            "how": "plain torch.matmul(a, b) loop and plain dst.copy_(src) loop, no checks",
        },
        "efficiency": {
            "gemm": _sig(gemm_tflops / ref_tflops),
            "hbm": _sig(hbm_gbps / ref_gbps),
        },
        "correctness": {
            "checks_run": log.run,
            "checks_failed": log.failed,
            "max_rel_error": log.max_rel_error,
            "tolerance": cfg.tolerance,
            "bitwise": cfg.bitwise,
            "failures": log.failures,
        },
    }


def burn_device(cfg: BurnConfig, device_name: str) -> dict[str, Any]:
    """Burn one device and return its result (never raises: errors go into the result)."""
    import torch

    device = torch.device(device_name)
    result: dict[str, Any] = {
        "index": device.index if device.type == "cuda" else None,
        "device": device_name,
        "name": None,
        "uuid": None,
        "serial": None,
        "pci_bus_id": None,
        "error": None,
    }
    phase = _Phases()
    samples_reason = "nvml unavailable: device is cpu"
    try:
        phase.sampler, samples_reason = _open_device(torch, device, cfg, result)
        log = CheckLog()
        measured = _run_burns(torch, device, cfg, phase, log)
        result.update(_results(cfg, measured, log))
    except Exception as err:  # any failure of this GPU belongs in its result
        result["error"] = f"{type(err).__name__}: {err}"
    finally:
        if phase.sampler is not None:
            phase.sampler.stop()
            result["samples"] = summarize_samples(phase.sampler.samples, cfg.sample_interval_s)
        else:
            result["samples"] = nvml_unavailable(samples_reason)
        result["phases"] = phase.close()
    return result


# --------------------------------------------------------------------------- node level


def _worker_main(cfg: BurnConfig, device_name: str, conn: Connection) -> None:
    conn.send(burn_device(cfg, device_name))
    conn.close()


def _run_processes(cfg: BurnConfig, devices: list[str], timeout_s: float) -> list[dict[str, Any]]:
    """One spawned process per device; a crashed or hung worker becomes an error result."""
    ctx = multiprocessing.get_context("spawn")
    procs: dict[str, tuple[Any, Connection]] = {}
    for name in devices:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker_main, args=(cfg, name, child), name=f"burnin-{name}")
        proc.start()
        child.close()
        procs[name] = (proc, parent)
    results: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        pending = dict(procs)
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            waitables = [conn for _, conn in pending.values()]
            waitables += [proc.sentinel for proc, _ in pending.values()]
            ready = wait(waitables, timeout=remaining)
            for name, (proc, conn) in list(pending.items()):
                if conn in ready or proc.sentinel in ready:
                    try:
                        results[name] = conn.recv() if conn.poll() else {}
                    except EOFError:
                        results[name] = {}
                    if not results[name]:
                        proc.join(5)
                        results[name] = _error_result(
                            name,
                            f"worker exited with code {proc.exitcode} without a result "
                            "(a crash: look for Xid errors in dmesg)",
                        )
                    del pending[name]
        for name in pending:
            results[name] = _error_result(
                name, f"worker did not finish within {timeout_s:.0f} s (hung GPU?); killed"
            )
    finally:
        for proc, conn in procs.values():
            if proc.is_alive():
                proc.terminate()
            proc.join(10)
            conn.close()
    return [results[name] for name in devices]


def _error_result(device_name: str, error: str) -> dict[str, Any]:
    index = int(device_name.split(":")[1]) if ":" in device_name else None
    return {
        "index": index,
        "device": device_name,
        "name": None,
        "uuid": None,
        "serial": None,
        "pci_bus_id": None,
        "error": error,
        "samples": nvml_unavailable("nvml unavailable: the worker did not report"),
    }


def resolve_devices(kind: str) -> tuple[str, list[str]]:
    """("cuda", ["cuda:0", ...]) or ("cpu", ["cpu"]) for --device cpu|cuda|auto."""
    import torch

    if kind not in ("cpu", "cuda", "auto"):
        raise UserError([Problem("--device", f"unknown device {kind!r}", "use cpu, cuda or auto")])
    if kind == "cpu":
        return "cpu", ["cpu"]
    available = torch.cuda.is_available()
    if kind == "cuda" and not available:
        raise UserError(
            [
                Problem(
                    "--device",
                    "cuda requested but torch sees no GPU",
                    "check nvidia-smi, CUDA_VISIBLE_DEVICES and the torch build",
                )
            ]
        )
    if not available:
        return "cpu", ["cpu"]
    return "cuda", [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def _host_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "driver_version": None,
    }
    nvml, reason = _import_nvml()
    if nvml is None:
        info["nvml"] = {"available": False, "reason": reason}
    else:
        try:
            info["driver_version"] = _text(nvml.nvmlSystemGetDriverVersion())
        finally:
            nvml.nvmlShutdown()
        info["nvml"] = {"available": True, "reason": None}
    return info


def run_burnin(cfg: BurnConfig, device: str = "auto", workers: str = "auto") -> dict[str, Any]:
    """Burn every visible device of `device` kind and return the node's JSON document."""
    kind, devices = resolve_devices(device)
    if workers == "auto":
        workers = "process" if kind == "cuda" else "inline"
    if workers not in ("process", "inline"):
        raise UserError(
            [Problem("--workers", f"unknown mode {workers!r}", "use process or inline")]
        )
    started = datetime.now(UTC)
    info = _host_info()
    if kind == "cpu":
        info["nvml"] = {"available": False, "reason": "nvml unavailable: device is cpu"}
    if workers == "inline":
        gpus = [burn_device(cfg, name) for name in devices]
    else:
        # Setup, two reference loops and the checks on top of the burn time; generous,
        # since a hung GPU is the only reason to reach it.
        timeout = cfg.duration_s + 2 * cfg.reference_s + 300.0 + 0.5 * cfg.duration_s
        gpus = _run_processes(cfg, devices, timeout)
    config = asdict(cfg)
    config.update(
        device_kind=kind, workers=workers, dtype="bfloat16", gemm_s=cfg.gemm_s, hbm_s=cfg.hbm_s
    )
    return {
        "schema": SCHEMA,
        **info,
        "device_kind": kind,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config,
        "gpus": gpus,
    }


def gpu_ok(gpu: dict[str, Any]) -> bool:
    """True when the worker finished and every correctness check passed."""
    corr = gpu.get("correctness") or {}
    return not gpu.get("error") and corr.get("checks_run", 0) > 0 and corr.get("checks_failed") == 0


def summary_lines(doc: dict[str, Any]) -> list[str]:
    lines = []
    for gpu in doc["gpus"]:
        label = f"{doc['host']} {gpu['device']} ({gpu.get('name') or '?'})"
        if gpu.get("error"):
            lines.append(f"{label}: ERROR {gpu['error']}")
            continue
        corr, eff = gpu["correctness"], gpu["efficiency"]
        state = "OK" if gpu_ok(gpu) else "FAULTY"
        lines.append(
            f"{label}: {state} gemm {gpu['gemm']['tflops']:.3f} TFLOPS "
            f"({eff['gemm']:.0%} of plain matmul), hbm {gpu['hbm']['gbps']:.1f} GB/s "
            f"({eff['hbm']:.0%} of plain copy), checks {corr['checks_run']} run "
            f"{corr['checks_failed']} failed, max rel error {corr['max_rel_error']:.2e}"
        )
    return lines


def build_config(args: argparse.Namespace, kind: str) -> BurnConfig:
    if args.duration <= 0:
        raise UserError([Problem("--duration", "must be > 0 seconds", "e.g. --duration 600")])
    size = args.size or DEFAULT_SIZE[kind]
    if size < 8:
        raise UserError([Problem("--size", f"{size} is too small", "use at least 8")])
    hbm_mib = args.hbm_mib or DEFAULT_HBM_MIB[kind]
    reference = args.reference_seconds
    if reference is None:
        reference = min(10.0, max(0.2, args.duration * 0.05))
    fault = FaultInjection(phase=args.inject_fault) if args.inject_fault else None
    return BurnConfig(
        duration_s=float(args.duration),
        size=size,
        hbm_bytes=int(hbm_mib * 2**20),
        reference_s=float(reference),
        check_interval_s=float(args.check_interval),
        sample_interval_s=float(args.sample_interval),
        tolerance=float(args.tolerance),
        bitwise=not args.no_bitwise,
        fault=fault,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m gpufleet.verify.burnin",
        description="BF16 GEMM and HBM copy burn-in with correctness checks, NVML samples "
        "and a plain-PyTorch reference, on every visible GPU. Exit 1 when a check failed.",
    )
    p.add_argument("--duration", type=float, default=600.0, help="burn seconds (GEMM + copy)")
    p.add_argument(
        "--size", type=int, default=0, help="square matrix size (default 8192 on GPU, 128 on CPU)"
    )
    p.add_argument(
        "--hbm-mib", type=float, default=0, help="copy buffer MiB (default 2048 on GPU, 4 on CPU)"
    )
    p.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    p.add_argument(
        "--workers",
        default="auto",
        choices=("auto", "process", "inline"),
        help="process: one spawned process per GPU, all at once (default on GPU); "
        "inline: devices one after another in this process (default on CPU)",
    )
    p.add_argument(
        "--json",
        dest="json_out",
        metavar="OUT",
        help="write the result document to this file, to OUT/<host>.json when OUT is a "
        "folder, or to stdout for '-'",
    )
    p.add_argument(
        "--reference-seconds",
        type=float,
        default=None,
        help="seconds of each plain reference loop (default 5%% of duration, 0.2-10)",
    )
    p.add_argument("--check-interval", type=float, default=5.0, help="seconds between checks")
    p.add_argument("--sample-interval", type=float, default=1.0, help="seconds between samples")
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="max relative GEMM error against FP32",
    )
    p.add_argument(
        "--no-bitwise",
        action="store_true",
        help="do not require results to match the first result bit for bit",
    )
    p.add_argument(
        "--hbm-fraction", type=float, default=0.2, help="share of --duration spent on the copy loop"
    )
    p.add_argument(
        "--inject-fault",
        choices=("gemm", "hbm"),
        default=None,
        help="corrupt one result before the first check (proves the check fires)",
    )
    args = p.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import torch  # noqa: F401  (a clear message when torch is missing)
    except ImportError as err:
        print(f"error: torch cannot be imported ({err}): pip install torch", file=sys.stderr)
        return 2
    try:
        kind, _ = resolve_devices(args.device)
        cfg = build_config(args, kind)
        if not 0.0 < args.hbm_fraction < 1.0:
            raise UserError([Problem("--hbm-fraction", "must be between 0 and 1", "e.g. 0.2")])
        cfg = replace(cfg, hbm_fraction=args.hbm_fraction)
        doc = run_burnin(cfg, device=kind, workers=args.workers)
    except UserError as err:
        print(err.render(), file=sys.stderr)
        return err.exit_code
    text = json.dumps(json_safe(doc), indent=2)
    if args.json_out == "-":
        print(text)
    elif args.json_out:
        with open(json_path(args.json_out, doc["host"]), "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    for line in summary_lines(doc):
        print(line, file=sys.stderr if args.json_out == "-" else sys.stdout)
    return 0 if all(gpu_ok(g) for g in doc["gpus"]) else 1


def json_path(out: str, host: str) -> str:
    """`out`, or `out/<host>.json` when `out` is a folder (one file per node under srun)."""
    if out.endswith("/") or os.path.isdir(out):
        return os.path.join(out, f"{host}.json")
    return out


def json_safe(value: Any) -> Any:
    """The document with non-finite floats as strings ("inf", "nan"): strict JSON has none."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


if __name__ == "__main__":
    # Run through the package module, not __main__, so the objects that spawned workers
    # unpickle (BurnConfig, _worker_main) resolve to the same names in every process.
    from gpufleet.verify import burnin as _module

    sys.exit(_module.main())
