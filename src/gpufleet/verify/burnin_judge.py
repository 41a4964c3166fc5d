"""Judge burn-in results per GPU: against the fleet, against absolute floors, and on
correctness and throttling. Also reads gpu_burn output, which exits 0 even when it
reports a GPU FAULTY.

Input: the JSON documents written by `python -m gpufleet.verify.burnin` (one per node and
run). A node measured again (the verification phase retests a node whose GEMM result was
low) gives another document of the same host: each of its GPUs is judged on the mean
throughput of its runs, as the phase judges the node, and on every run's other checks.
Output: one `Verdict` per GPU, and rows {node, gpu, tflops, hbm_gbps, status} for the
report. Everything here is pure: no torch, no files.

Fleet rule: per GPU model, the median of every GPU's BF16 GEMM TFLOPS (and HBM copy GB/s);
a GPU more than 3.5% below the median warns, more than 7% below fails (the figures Azure's
node health checks use against a fleet baseline). The MAD-based robust z
(0.6745 * (x - median) / MAD, Iglewicz and Hoaglin) is stated next to it, so a reader sees
whether the GPU is also a statistical outlier of this particular fleet.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gpufleet.errors import Problem, UserError
from gpufleet.verify.burnin import SCHEMA
from gpufleet.verify.verdict import Status, Verdict, worst

# Floors for H100 SXM (name reported by NVML/torch: "NVIDIA H100 80GB HBM3"). Sources:
# NVIDIA H100 datasheet (peak 989 TFLOPS dense BF16, 3.35 TB/s HBM3); HBM copy about
# 2.9-3.0 TB/s (shared/reference/README.md); sustained BF16 GEMM 674 TFLOPS, measured by
# gpufleet with this burn-in on a lent H100 (120 s at the 700 W power cap; the short-run
# figure of about 790 TFLOPS is not held under sustained load). The floors are 674 TFLOPS
# less about 5% (warn) and 10% (fail), and 2.9 TB/s less about 3.5% / 7% for HBM;
# the same numbers as src/gpufleet/verify/thresholds/burnin-h100-sxm.yaml (a test keeps
# them in step).
H100_SXM_FLOORS: dict[str, float] = {
    "gemm_tflops_warn": 640.0,
    "gemm_tflops_floor": 607.0,
    "hbm_gbps_warn": 2800.0,
    "hbm_gbps_floor": 2700.0,
}
DEFAULT_FLOORS_BY_MODEL: dict[str, dict[str, float]] = {
    "NVIDIA H100 80GB HBM3": H100_SXM_FLOORS,
}

# Rules that are not floors of one GPU model; any of them may be set in a floors dict.
DEFAULT_RULES: dict[str, float] = {
    "fleet_warn_pct": -3.5,  # Azure/azurehpc-health-checks: warn 3.5% below fleet baseline
    "fleet_fail_pct": -7.0,  # ... replace 7% below
    "min_fleet_size": 3,  # fewer GPUs of one model: no fleet comparison
    "min_load_efficiency": 0.90,  # burn-in load vs plain torch.matmul / copy_ (acceptance)
    # 1: a GPU without NVML samples warns (its temperatures and clocks were not checked);
    # 0: a note only (a CPU run, e.g. the lab's, has no NVML to read)
    "require_nvml": 1.0,
}
FLOOR_KEYS = frozenset(
    {
        "gemm_tflops_floor",
        "gemm_tflops_warn",
        "hbm_gbps_floor",
        "hbm_gbps_warn",
        "max_gpu_temp_c",
        *DEFAULT_RULES,
    }
)

# Clock event reasons of the slowdown kind: the GPU cut its clocks because of heat or a
# power fault, not because it hit its configured power cap (sw_power_cap is normal under
# a full GEMM load and is only reported).
SLOWDOWN_REASONS: dict[str, tuple[Status, str]] = {
    "hw_slowdown": (
        Status.FAIL,
        "HW slowdown (the hardware halved its clocks: overheating or an external power "
        "brake; check cooling, PSUs and the BMC event log)",
    ),
    "hw_thermal_slowdown": (
        Status.FAIL,
        "HW thermal slowdown (the GPU overheated: check airflow, fans and heatsink seating)",
    ),
    "hw_power_brake_slowdown": (
        Status.FAIL,
        "HW power brake slowdown (the board's external power-brake signal was asserted: "
        "check PSUs and the BMC power logs)",
    ),
    "sw_thermal_slowdown": (
        Status.WARN,
        "SW thermal slowdown (the driver lowered clocks to stay under its temperature "
        "target: check airflow and inlet temperature)",
    ),
}

ROBUST_Z_OUTLIER = 3.5  # |z| above this is an outlier (Iglewicz and Hoaglin)


# --------------------------------------------------------------------------- fleet maths


@dataclass(frozen=True)
class FleetStats:
    n: int
    median: float
    mad: float

    def deviation_pct(self, x: float) -> float:
        return (x - self.median) / self.median * 100.0 if self.median else 0.0

    def robust_z(self, x: float) -> float | None:
        """0.6745 * (x - median) / MAD; None when the MAD is 0 (z undefined)."""
        return 0.6745 * (x - self.median) / self.mad if self.mad > 0 else None


def fleet_stats(values: Sequence[float]) -> FleetStats:
    med = statistics.median(values)
    mad = statistics.median(abs(v - med) for v in values)
    return FleetStats(n=len(values), median=med, mad=mad)


def floors_from_pack(pack: Mapping[str, Any]) -> dict[str, float]:
    """Flat floors from a threshold pack shaped like thresholds/burnin-h100-sxm.yaml."""

    def value(section: str, key: str) -> float | None:
        entry = (pack.get(section) or {}).get(key)
        if isinstance(entry, Mapping):
            entry = entry.get("value")
        return None if entry is None else float(entry)

    out: dict[str, float] = {}
    for target, section, key in (
        ("gemm_tflops_floor", "gemm_tflops", "fail_below"),
        ("gemm_tflops_warn", "gemm_tflops", "warn_below"),
        ("hbm_gbps_floor", "hbm_gbps", "fail_below"),
        ("hbm_gbps_warn", "hbm_gbps", "warn_below"),
        ("fleet_warn_pct", "fleet_deviation", "warn_below_pct"),
        ("fleet_fail_pct", "fleet_deviation", "fail_below_pct"),
    ):
        found = value(section, key)
        if found is not None:
            out[target] = found
    return out


def check_floors(floors: Mapping[str, Any], where: str = "floors") -> dict[str, float]:
    """Validate a flat floors dict: known keys, numbers. One problem per bad key."""
    problems: list[Problem] = []
    out: dict[str, float] = {}
    for key, raw in floors.items():
        if key not in FLOOR_KEYS:
            problems.append(
                Problem(f"{where}.{key}", "unknown floor", "use " + ", ".join(sorted(FLOOR_KEYS)))
            )
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            problems.append(Problem(f"{where}.{key}", f"{raw!r} is not a number", "e.g. 710"))
            continue
        out[key] = float(raw)
    if problems:
        raise UserError(problems, title="invalid burn-in floors")
    return out


# --------------------------------------------------------------------------- input


def _run_metric(data: Mapping[str, Any], section: str, key: str) -> float | None:
    """One run's figure; none for a run that ended in an error."""
    if data.get("error"):
        return None
    value = (data.get(section) or {}).get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class GpuRecord:
    """One GPU; `more` holds the data of its later runs when its node was measured again
    (the verification phase measures a node again when its GEMM result was low)."""

    node: str
    gpu: int
    model: str
    data: Mapping[str, Any]
    more: tuple[Mapping[str, Any], ...] = ()

    @property
    def runs(self) -> tuple[Mapping[str, Any], ...]:
        return (self.data, *self.more)

    def measured(self, section: str, key: str) -> list[float]:
        """The figure of each run that has one (a run that ended in an error may have none)."""
        return [v for d in self.runs if (v := _run_metric(d, section, key)) is not None]

    def metric(self, section: str, key: str) -> float | None:
        """The mean of the runs' figures (a single run's figure when measured once)."""
        values = self.measured(section, key)
        return statistics.mean(values) if values else None

    @property
    def tflops(self) -> float | None:
        return self.metric("gemm", "tflops")

    @property
    def hbm_gbps(self) -> float | None:
        return self.metric("hbm", "gbps")


def merge_runs(records: Sequence[GpuRecord]) -> list[GpuRecord]:
    """One record per GPU: a GPU that appears again (another document of the same host) gets
    the later data as further runs, in the order of the documents."""
    merged: dict[tuple[str, int], GpuRecord] = {}
    for rec in records:
        key = (rec.node, rec.gpu)
        first = merged.get(key)
        merged[key] = rec if first is None else replace(first, more=(*first.more, rec.data))
    return list(merged.values())


def gpu_records(
    docs: Sequence[Mapping[str, Any]], sources: Sequence[str] | None = None
) -> list[GpuRecord]:
    """Every GPU of every document, with problems (path and fix) for malformed ones."""
    problems: list[Problem] = []
    records: list[GpuRecord] = []
    for d, doc in enumerate(docs):
        where = sources[d] if sources else f"document[{d}]"
        if not isinstance(doc, Mapping):
            problems.append(Problem(where, "not a JSON object", "pass burn-in JSON documents"))
            continue
        if doc.get("schema") != SCHEMA:
            problems.append(
                Problem(
                    f"{where}.schema",
                    f"{doc.get('schema')!r} is not {SCHEMA!r}",
                    "pass the --json output of python -m gpufleet.verify.burnin",
                )
            )
            continue
        host = doc.get("host")
        gpus = doc.get("gpus")
        if not isinstance(host, str) or not host:
            problems.append(Problem(f"{where}.host", "missing host name", "rerun the burn-in"))
            continue
        if not isinstance(gpus, list) or not gpus:
            problems.append(Problem(f"{where}.gpus", "no GPU results", "rerun the burn-in"))
            continue
        for i, gpu in enumerate(gpus):
            if not isinstance(gpu, Mapping):
                problems.append(Problem(f"{where}.gpus[{i}]", "not an object", "rerun the burn-in"))
                continue
            index = gpu.get("index")
            records.append(
                GpuRecord(
                    node=host,
                    gpu=index if isinstance(index, int) else i,
                    model=str(gpu.get("name") or "unknown"),
                    data=gpu,
                )
            )
    if problems:
        raise UserError(problems, title="unusable burn-in results")
    return records


# --------------------------------------------------------------------------- judge


@dataclass
class BurninJudgement:
    verdicts: list[Verdict]
    rows: list[dict[str, Any]]
    fleet: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        return worst([v.status for v in self.verdicts])

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "rows": self.rows,
            "fleet": self.fleet,
        }


def _num(value: float) -> str:
    """One decimal for GPU-sized figures; three significant digits below 1 (a CPU run's)."""
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.3g}"


def _fleet_reason(
    label: str, unit: str, x: float, stats: FleetStats, model: str, rules: Mapping[str, float]
) -> tuple[Status, str, dict[str, Any]]:
    dev = stats.deviation_pct(x)
    z = stats.robust_z(x)
    z_text = "robust z undefined (MAD 0)" if z is None else f"robust z {z:+.1f}"
    if z is not None and abs(z) > ROBUST_Z_OUTLIER:
        z_text += f", an outlier (|z| > {ROBUST_Z_OUTLIER})"
    status = Status.PASS
    if dev < rules["fleet_fail_pct"]:
        status = Status.FAIL
    elif dev < rules["fleet_warn_pct"]:
        status = Status.WARN
    limit = rules["fleet_fail_pct"] if status is Status.FAIL else rules["fleet_warn_pct"]
    text = (
        f"{label} {_num(x)} {unit} is {abs(dev):.1f}% {'below' if dev < 0 else 'above'} the fleet "
        f"median {_num(stats.median)} {unit} of {stats.n} {model + ' ' if model else ''}GPUs "
        f"({z_text}"
        + (f"; {status.value} below {limit:+.1f}%)" if status is not Status.PASS else ")")
    )
    metrics = {
        "median": stats.median,
        "mad": stats.mad,
        "deviation_pct": round(dev, 2),
        "robust_z": z,
    }
    return status, text, metrics


Finding = tuple[Status, str]


def _completion_findings(data: Mapping[str, Any], metrics: dict[str, Any]) -> list[Finding]:
    """The burn-in ran to its end and its correctness checks ran and passed."""
    found: list[Finding] = []
    if data.get("error"):
        found.append((Status.FAIL, f"the burn-in did not complete on this GPU: {data['error']}"))
    corr = data.get("correctness") or {}
    run, failed = corr.get("checks_run", 0), corr.get("checks_failed", 0)
    metrics.update(checks_run=run, checks_failed=failed, max_rel_error=corr.get("max_rel_error"))
    if not data.get("error"):
        if not run:
            found.append(
                (Status.FAIL, "no correctness check ran: the results of this GPU are unverified")
            )
        elif failed:
            found.append((Status.FAIL, _correctness_text(run, failed, corr)))
    return found


def _throughput_findings(
    rec: GpuRecord,
    fleets: Mapping[tuple[str, str], FleetStats],
    floors: Mapping[str, float] | None,
    rules: Mapping[str, float],
    metrics: dict[str, Any],
) -> list[Finding]:
    """GEMM and HBM throughput against the fleet of the same model and the floors."""
    found: list[Finding] = []

    def runs(section: str, key: str) -> str:  # the runs that measured it, not all the runs
        n = len(rec.measured(section, key))
        return f" (mean of {n} runs)" if n > 1 else ""

    for key, label, unit, value in (
        ("tflops", f"BF16 GEMM{runs('gemm', 'tflops')}", "TFLOPS", rec.tflops),
        ("hbm_gbps", f"HBM copy{runs('hbm', 'gbps')}", "GB/s", rec.hbm_gbps),
    ):
        if value is None:
            continue
        stats = fleets.get((rec.model, key))
        if stats is not None:
            status, text, fleet_metrics = _fleet_reason(label, unit, value, stats, rec.model, rules)
            metrics[f"fleet_{key}"] = fleet_metrics
            if status is not Status.PASS:
                found.append((status, text))
        prefix = "gemm_tflops" if key == "tflops" else "hbm_gbps"
        if floors is None:
            continue
        fail_at, warn_at = floors.get(f"{prefix}_floor"), floors.get(f"{prefix}_warn")
        if fail_at is not None and value < fail_at:
            found.append(
                (Status.FAIL, f"{label} {value:.1f} {unit} is below the floor {fail_at:g} {unit}")
            )
        elif warn_at is not None and value < warn_at:
            found.append(
                (
                    Status.WARN,
                    f"{label} {value:.1f} {unit} is below the warn floor {warn_at:g} {unit}",
                )
            )
    return found


def _load_findings(data: Mapping[str, Any], rules: Mapping[str, float]) -> list[Finding]:
    """Did the burn-in really load the GPU? (burn-in loop vs plain torch loop.)"""
    found: list[Finding] = []
    eff = data.get("efficiency") or {}
    for key, what in (("gemm", "torch.matmul"), ("hbm", "Tensor.copy_")):
        ratio = eff.get(key)
        if isinstance(ratio, int | float) and ratio < rules["min_load_efficiency"]:
            found.append(
                (
                    Status.WARN,
                    f"the burn-in {key} load reached only {ratio:.0%} of a plain {what} loop on "
                    f"the same GPU (target >= {rules['min_load_efficiency']:.0%}): its figure "
                    "understates this GPU",
                )
            )
    return found


def _judge_gpu(
    rec: GpuRecord,
    fleets: Mapping[tuple[str, str], FleetStats],
    floors: Mapping[str, float] | None,
    rules: Mapping[str, float],
) -> Verdict:
    subject = f"{rec.node} GPU {rec.gpu}"
    data = rec.data
    metrics: dict[str, Any] = {
        "node": rec.node,
        "gpu": rec.gpu,
        "model": rec.model,
        "uuid": data.get("uuid"),
        "serial": data.get("serial"),
        "tflops": rec.tflops,
        "hbm_gbps": rec.hbm_gbps,
    }
    if rec.more:
        metrics["runs"] = len(rec.runs)
    # Throughput on the mean of the runs; every other check on every run (a later run's
    # findings count as much as the first's; the metrics are the first run's).
    found = _completion_findings(data, metrics)
    for later in rec.more:
        found += _completion_findings(later, {})
    found += _throughput_findings(rec, fleets, floors, rules, metrics)
    if floors is None and rec.tflops is not None:
        note = f"note: no absolute floors for the model {rec.model!r} (pass --floors)"
        found.append((Status.PASS, note))
    for run in rec.runs:
        found += _load_findings(run, rules)
        statuses_s, reasons_s, sample_metrics = judge_samples(run.get("samples"), floors, rules)
        found += zip(statuses_s, reasons_s, strict=True)
        if run is data:
            metrics.update(sample_metrics)
    found = list(dict.fromkeys(found))  # the same finding in two runs is said once
    statuses = [status for status, _ in found]
    reasons = [text for _, text in found]
    status = worst(statuses)
    if not [r for r in reasons if not r.startswith("note:")]:
        reasons.insert(0, "all correctness checks passed, no slowdown throttling, within the fleet")
    return Verdict(subject=subject, kind="burnin", status=status, reasons=reasons, metrics=metrics)


def _correctness_text(run: int, failed: int, corr: Mapping[str, Any]) -> str:
    failures = corr.get("failures") or []
    details = []
    gemm = [f for f in failures if f.get("phase") == "gemm"]
    hbm = [f for f in failures if f.get("phase") == "hbm"]
    if gemm:
        errs = [f.get("max_rel_error") for f in gemm]
        worst_err = max((e for e in errs if isinstance(e, int | float)), default=None)
        if worst_err is None:  # non-finite errors are written as strings ("inf")
            worst_text = next((str(e) for e in errs if e is not None), "?")
        else:
            worst_text = f"{worst_err:.3g}"
        mism = max(int(f.get("mismatched_elements") or 0) for f in gemm)
        details.append(
            f"GEMM: max relative error {worst_text} against FP32 (tolerance "
            f"{corr.get('tolerance')}), up to {mism} elements differ from the first result"
        )
    if hbm:
        mism = max(int(f.get("mismatched_bytes") or 0) for f in hbm)
        details.append(f"HBM copy: up to {mism} bytes differ from the source")
    detail = "; ".join(details) or "no details kept"
    return (
        f"{failed} of {run} correctness checks failed ({detail}): this GPU computes or stores "
        "wrong results; drain it, check `nvidia-smi -q -d ECC,ROW_REMAPPER` and Xid errors in "
        "dmesg, then replace it"
    )


def judge_samples(
    samples: Any,
    floors: Mapping[str, float] | None,
    rules: Mapping[str, float] = DEFAULT_RULES,
) -> tuple[list[Status], list[str], dict[str, Any]]:
    """Throttle reasons and temperatures from a GPU's samples summary."""
    statuses: list[Status] = []
    reasons: list[str] = []
    metrics: dict[str, Any] = {}
    if not isinstance(samples, Mapping) or samples.get("nvml") != "available":
        why = samples.get("reason") if isinstance(samples, Mapping) else None
        required = rules.get("require_nvml", DEFAULT_RULES["require_nvml"])
        statuses.append(Status.WARN if required else Status.PASS)
        reasons.append(
            f"no NVML samples ({why or 'nvml unavailable'}): temperatures, clocks and "
            "throttling were not checked"
        )
        return statuses, reasons, metrics
    # Every sample counts, setup included: a slowdown of the hardware kind is a fault
    # whenever it shows (an idle GPU has no business being power-braked either).
    seen = samples.get("throttle_reasons_seen")
    seen = seen if isinstance(seen, Mapping) else {}
    total = samples.get("count") or 0
    metrics["throttle_reasons_seen"] = dict(seen)
    under_load = samples.get("throttle_reasons_under_load")
    if isinstance(under_load, Mapping):
        metrics["throttle_reasons_under_load"] = dict(under_load)
    for name, (status, words) in SLOWDOWN_REASONS.items():
        count = seen.get(name, 0)
        if count:
            statuses.append(status)
            reasons.append(f"{words} in {count} of {total} samples")
    temp = samples.get("temperature_c") or {}
    tmax = temp.get("max") if isinstance(temp, Mapping) else None
    metrics["max_temperature_c"] = tmax
    limit = (floors or {}).get("max_gpu_temp_c")
    if limit is not None and isinstance(tmax, int | float) and tmax > limit:
        statuses.append(Status.WARN)
        reasons.append(f"temperature reached {tmax:g} C, above the limit {limit:g} C")
    sm = samples.get("sm_clock_mhz")
    if isinstance(sm, Mapping):
        metrics["sm_clock_mhz"] = dict(sm)
    return statuses, reasons, metrics


def judge_burnin(
    docs: Sequence[Mapping[str, Any]],
    floors: Mapping[str, Any] | None = None,
    sources: Sequence[str] | None = None,
) -> BurninJudgement:
    """Verdicts and report rows for every GPU of the given burn-in documents.

    `floors`: a flat dict ({gemm_tflops_floor, hbm_gbps_floor, ...}, see FLOOR_KEYS) applied
    to every GPU; None applies DEFAULT_FLOORS_BY_MODEL to the models it knows and no
    absolute floor to others.
    """
    checked = check_floors(floors) if floors is not None else None
    rules = {**DEFAULT_RULES, **{k: v for k, v in (checked or {}).items() if k in DEFAULT_RULES}}
    records = merge_runs(gpu_records(docs, sources))
    groups: dict[tuple[str, str], list[float]] = {}
    for rec in records:
        for key, value in (("tflops", rec.tflops), ("hbm_gbps", rec.hbm_gbps)):
            if value is not None:
                groups.setdefault((rec.model, key), []).append(value)
    fleets = {
        key: fleet_stats(values)
        for key, values in groups.items()
        if len(values) >= rules["min_fleet_size"]
    }
    verdicts: list[Verdict] = []
    rows: list[dict[str, Any]] = []
    for rec in records:
        model_floors = checked if checked is not None else DEFAULT_FLOORS_BY_MODEL.get(rec.model)
        verdict = _judge_gpu(rec, fleets, model_floors, rules)
        verdicts.append(verdict)
        rows.append(
            {
                "node": rec.node,
                "gpu": rec.gpu,
                "tflops": rec.tflops,
                "hbm_gbps": rec.hbm_gbps,
                "status": verdict.status.value,
            }
        )
    fleet = {
        f"{model} {key}": {"n": s.n, "median": s.median, "mad": s.mad}
        for (model, key), s in sorted(fleets.items())
    }
    return BurninJudgement(verdicts=verdicts, rows=rows, fleet=fleet)


# --------------------------------------------------------------------------- gpu_burn


@dataclass(frozen=True)
class GpuBurnGpu:
    index: int
    status: str | None  # "OK" or "FAULTY" from the final summary; None if it never printed
    gflops: float | None  # the last progress line's rate
    processed: int | None
    errors: int | None  # errors in the last progress line (gpu_burn resets them per summary)
    died: bool
    temp_c: int | None
    name: str | None = None
    uuid: str | None = None


@dataclass(frozen=True)
class GpuBurnRun:
    gpus: list[GpuBurnGpu]
    tested: int | None  # N of "Tested N GPUs:"; None when the run did not finish
    precision: str | None  # FLOATS or DOUBLES
    burn_seconds: int | None

    @property
    def completed(self) -> bool:
        return self.tested is not None


_PROGRESS = re.compile(
    r"(?P<pct>\d+(?:\.\d+)?)%\s+proc'd:(?P<procd>.*?)\s+errors:(?P<errors>.*?)"
    r"\s+temps:(?P<temps>.*?)(?:\s+power:.*)?$"
)
_PROCD = re.compile(r"(-?\d+) \((\d+(?:\.\d+)?) Gflop/s\)")
_ERRORS = re.compile(r"(\d+)\s*(\(DIED!\)|\(WARNING!\))?")
_TEMPS = re.compile(r"(\d+) C|--")
_TESTED = re.compile(r"^Tested (\d+) GPUs:")
_RESULT = re.compile(r"^\s*GPU (\d+): (OK|FAULTY)\s*$")
_NAME = re.compile(r"^GPU (\d+): (.+?) \(UUID: (GPU-[0-9a-fA-F-]+)\)\s*$")
_USING = re.compile(r"using (FLOATS|DOUBLES)")
_BURNING = re.compile(r"Burning for (\d+) seconds")


def parse_gpu_burn(text: str) -> GpuBurnRun:
    """Per-GPU OK/FAULTY, Gflop/s, errors and temperature from gpu_burn's output.

    Progress lines repaint with carriage returns; the last one counts. The final
    "Tested N GPUs:" block is authoritative for OK/FAULTY (gpu_burn marks a GPU faulty for
    good once any progress report showed errors, then exits 0 anyway).
    """
    lines = re.split(r"[\r\n]", text)
    last_progress: re.Match[str] | None = None
    tested: int | None = None
    results: dict[int, str] = {}
    names: dict[int, tuple[str, str]] = {}
    precision: str | None = None
    burn_seconds: int | None = None
    for line in lines:
        if m := _PROGRESS.search(line):
            last_progress = m
        elif m := _TESTED.match(line.strip()):
            tested = int(m.group(1))
            results = {}
        elif tested is not None and (m := _RESULT.match(line)):
            results[int(m.group(1))] = m.group(2)
        elif m := _NAME.match(line.strip()):
            names[int(m.group(1))] = (m.group(2), m.group(3))
        if m := _USING.search(line):
            precision = m.group(1)
        if burn_seconds is None and (m := _BURNING.search(line)):
            burn_seconds = int(m.group(1))
    procd: list[tuple[int, float]] = []
    errors: list[tuple[int, bool]] = []
    temps: list[int | None] = []
    if last_progress is not None:
        procd = [(int(a), float(b)) for a, b in _PROCD.findall(last_progress["procd"])]
        errors = [(int(a), b == "(DIED!)") for a, b in _ERRORS.findall(last_progress["errors"])]
        temps = [int(t) if t else None for t in _TEMPS.findall(last_progress["temps"])]
    count = max(len(procd), len(results), tested or 0)
    gpus = []
    for i in range(count):
        processed, gflops = procd[i] if i < len(procd) else (None, None)
        err, died = errors[i] if i < len(errors) else (None, False)
        name, uuid = names.get(i, (None, None))
        gpus.append(
            GpuBurnGpu(
                index=i,
                status=results.get(i),
                gflops=gflops,
                processed=processed,
                errors=err,
                died=died or processed == -1,
                temp_c=temps[i] if i < len(temps) else None,
                name=name,
                uuid=uuid,
            )
        )
    return GpuBurnRun(gpus=gpus, tested=tested, precision=precision, burn_seconds=burn_seconds)


def _gpu_burn_findings(
    run: GpuBurnRun,
    g: GpuBurnGpu,
    stats: FleetStats | None,
    rules: Mapping[str, float],
) -> list[Finding]:
    """One GPU of a gpu_burn run: FAULTY, died, errors, unfinished, and its rate."""
    found: list[Finding] = []
    if g.status == "FAULTY":
        found.append(
            (
                Status.FAIL,
                "gpu_burn reported this GPU FAULTY (its results differed from the reference "
                "result) although gpu_burn exited 0: drain it and replace it",
            )
        )
    if g.died:
        found.append(
            (Status.FAIL, "gpu_burn's worker for this GPU died (DIED!): look for Xid errors")
        )
    if g.errors:
        found.append((Status.FAIL, f"{g.errors} errors in gpu_burn's last progress report"))
    if not run.completed:
        found.append(
            (
                Status.FAIL,
                "gpu_burn did not finish (no 'Tested N GPUs' summary): it was killed or "
                "crashed, so no OK/FAULTY verdict exists",
            )
        )
    elif g.status is None:
        found.append((Status.FAIL, "gpu_burn's summary has no line for this GPU"))
    if g.gflops is not None and stats is not None and not g.died:
        precision = run.precision or "unknown precision"
        status, text, _ = _fleet_reason(
            f"gpu_burn ({precision})", "Gflop/s", g.gflops, stats, g.name or "", rules
        )
        if status is not Status.PASS:
            found.append((status, text))
    return found


def judge_gpu_burn(
    run: GpuBurnRun, node: str, rules: Mapping[str, float] | None = None
) -> BurninJudgement:
    """Verdicts from a parsed gpu_burn run: its OK/FAULTY, deaths, errors, and Gflop/s
    against the other GPUs of the same run (gpu_burn's exit code is ignored: it is 0 for
    FAULTY GPUs too)."""
    merged = {**DEFAULT_RULES, **(rules or {})}
    if not run.gpus:
        verdict = Verdict(
            subject=f"{node} gpu_burn",
            kind="burnin",
            status=Status.FAIL,
            reasons=["no GPU results in the gpu_burn output: it did not start or was cut off"],
            metrics={"node": node, "tool": "gpu_burn"},
        )
        return BurninJudgement(verdicts=[verdict], rows=[])
    rates = [g.gflops for g in run.gpus if g.gflops is not None and not g.died]
    stats = fleet_stats(rates) if len(rates) >= merged["min_fleet_size"] else None
    precision = run.precision or "unknown precision"
    verdicts: list[Verdict] = []
    rows: list[dict[str, Any]] = []
    for g in run.gpus:
        found = _gpu_burn_findings(run, g, stats, merged)
        status = worst([s for s, _ in found])
        reasons = [text for _, text in found] or [
            f"gpu_burn: OK, {g.gflops or 0:.0f} Gflop/s ({precision})"
        ]
        metrics = {
            "node": node,
            "gpu": g.index,
            "tool": "gpu_burn",
            "model": g.name,
            "uuid": g.uuid,
            "gflops": g.gflops,
            "precision": run.precision,
            "gpu_burn_status": g.status,
            "temp_c": g.temp_c,
        }
        verdicts.append(Verdict(f"{node} GPU {g.index}", "burnin", status, reasons, metrics))
        rows.append(
            {
                "node": node,
                "gpu": g.index,
                # gpu_burn's rate is FP32/FP64, not BF16: kept out of the TFLOPS column,
                # whose floors are BF16 figures.
                "tflops": None,
                "hbm_gbps": None,
                "gpu_burn_gflops": g.gflops,
                "status": status.value,
            }
        )
    return BurninJudgement(verdicts=verdicts, rows=rows)
