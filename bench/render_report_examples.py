"""Render a healthy and a faulty example report (HTML, JSON, JUnit, Prometheus).

    .venv/bin/python bench/render_report_examples.py [OUT_DIR]

The nccl-tests runs are the recordings in tests/data/nccl-tests/ (real H100/H200
output, provenance on line 1 of each file). The burn-in rows are CONSTRUCTED for
illustration (no burn-in recording exists in the repository): the report title
says so. Writes OUT_DIR/healthy/ and OUT_DIR/faulty/ (default: /tmp/gpufleet-report-examples).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from gpufleet.verify.judge import JudgeOptions, judge_logs
from gpufleet.verify.nccl import parse_nccl_log
from gpufleet.verify.report import Report, write_report
from gpufleet.verify.thresholds import load_thresholds

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "nccl-tests"

HEALTHY = [
    ("h100-1node-8gpu-nvls-5collectives-cluster01.log", "auto"),
    ("h100-aws-p5-efa-2node-allreduce-mpirun-prefix-info.log", "auto"),
    ("h100-2node-alltoall-sendrecv-cluster00-pair-ok.log", "auto"),
]
FAULTY = [
    ("h100-2node-alltoall-sendrecv-cluster00-pair-ok.log", "auto"),
    ("h100-2node-alltoall-sendrecv-cluster00-pair-degraded.log", "auto"),
    ("h100-2node-alltoall-sendrecv-cluster00-pair-failed.log", "auto"),
    ("h100-together-1node-8gpu-allreduce-nvls-label-ringlevel.log", "auto"),
    ("h200-dgx-2node-openshift-single-iface-socket-allreduce.log", "auto"),
    ("h200-gke-dranet-allreduce-2x1gpu-roce.log", "auto"),
]


def _read(name: str) -> str:
    # Line 1 is the provenance line of the recording.
    return (DATA / name).read_text(encoding="utf-8").split("\n", 1)[1]


def constructed_burnin(nodes: list[str], slow: tuple[str, int] | None) -> list[dict[str, object]]:
    """CONSTRUCTED burn-in rows (illustration only): near the H100 SXM figures of the pack."""
    rows: list[dict[str, object]] = []
    for n, node in enumerate(nodes):
        for gpu in range(8):
            tflops = 780.0 + ((n * 8 + gpu) * 7) % 19
            hbm = 2920.0 + ((n * 8 + gpu) * 13) % 60
            status = "pass"
            if slow == (node, gpu):
                tflops, hbm, status = 702.0, 2650.0, "fail"
            rows.append(
                {"node": node, "gpu": gpu, "tflops": tflops, "hbm_gbps": hbm, "status": status}
            )
    return rows


def build(
    files: list[tuple[str, str]], title: str, burnin: list[dict[str, object]], peers: bool
) -> Report:
    thresholds = load_thresholds()
    logs = [parse_nccl_log(_read(name), name) for name, _ in files]
    judgements = judge_logs(logs, thresholds, JudgeOptions(), peers=peers)
    report = Report.from_judgements(judgements, title=title)
    report.burnin = burnin
    return report


FLOORS = {"tflops": {"warn": 750.0, "fail": 710.0}, "hbm_gbps": {"warn": 2800.0, "fail": 2700.0}}


def main(out: Path) -> None:
    started = time.perf_counter()
    healthy = build(
        HEALTHY,
        "Example report (healthy): recorded nccl-tests logs; burn-in rows constructed",
        constructed_burnin(["cnode3-002", "cnode2-001", "cnode2-002"], None),
        peers=False,
    )
    faulty = build(
        FAULTY,
        "Example report (faulty): recorded nccl-tests logs; burn-in rows constructed",
        constructed_burnin(["cnode2-001", "cnode2-003", "cnode2-015"], ("cnode2-015", 5)),
        peers=True,
    )
    faulty.isolation_summary = (
        "Constructed example text: pair cnode2-003+cnode2-015 fails alltoall (5.1 GB/s vs a\n"
        "sweep median of 23.6 GB/s); pair cnode2-008+cnode2-009 aborted (remote process exited).\n"
        "Next: test cnode2-003, cnode2-015, cnode2-008 and cnode2-009 against cnode2-001."
    )
    for name, report in (("healthy", healthy), ("faulty", faulty)):
        files = write_report(report, out / name, burnin_floors=FLOORS)
        print(f"{name}: {report.status.value} -> {files['html']}")
    print(f"rendered both in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/gpufleet-report-examples"))
