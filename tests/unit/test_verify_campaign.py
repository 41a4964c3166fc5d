"""The verification campaign's decisions from verdicts: which nodes a failure drains, and the
one-line verdict. The verdicts here are constructed; the texts follow the judges' wording."""

from __future__ import annotations

from pathlib import Path

from gpufleet.verify.campaign import REASON_PREFIX, drain_reason, owned_failures, verdict_line
from gpufleet.verify.verdict import Status, Verdict

NODES = ["gpu1", "gpu2", "gpu10"]
SLOW = "BF16 GEMM (mean of 2 runs) 0.00846 TFLOPS is 73.1% below the fleet median 0.0314 TFLOPS"


def _gpu(node: str, gpu: int, status: Status, *reasons: str) -> Verdict:
    return Verdict(f"{node} GPU {gpu}", "burnin", status, list(reasons), {"node": node, "gpu": gpu})


def test_a_failed_gpu_fails_its_node_named_with_the_gpu():
    verdicts = [
        _gpu("gpu1", 0, Status.FAIL, SLOW, "no NVML samples"),
        _gpu("gpu1", 1, Status.PASS, "BF16 GEMM 0.03 TFLOPS"),
        _gpu("gpu2", 0, Status.WARN, "HBM copy 9 GB/s is 12% below the fleet median"),
    ]
    assert owned_failures(verdicts, NODES) == {"gpu1": [f"gpu1 GPU 0: {SLOW}"]}


def test_a_reason_that_names_its_node_is_kept_and_each_reason_said_once():
    error = Verdict("gpu10", "burnin", Status.FAIL, ["gpu10: the burn-in job ended FAILED"],
                    {"scope": "node", "node": "gpu10"})  # fmt: skip
    twice = [_gpu("gpu1", 0, Status.FAIL, SLOW), _gpu("gpu1", 0, Status.FAIL, SLOW)]
    failures = owned_failures([error, *twice], NODES)
    # gpu10's reason starts with "gpu10:", gpu1's does not start with "gpu1" followed by ":"
    assert failures == {"gpu10": ["gpu10: the burn-in job ended FAILED"],
                        "gpu1": [f"gpu1 GPU 0: {SLOW}"]}  # fmt: skip


def test_a_failure_of_a_node_outside_the_site_is_nobodys():
    stray = _gpu("gpu99", 0, Status.FAIL, SLOW)
    assert owned_failures([stray], NODES) == {}


def test_the_line_names_the_drained_nodes_with_their_reasons():
    drained = {"gpu1": drain_reason([f"gpu1 GPU 0: {SLOW}"])}
    line = verdict_line([_gpu("gpu1", 0, Status.FAIL, SLOW)], NODES, drained, [])
    assert line.startswith("FAIL: gpu1 drained (gpu1 GPU 0: BF16 GEMM (mean of 2 runs)")
    assert REASON_PREFIX not in line


def test_fail_never_comes_with_all_passed():
    """A failure no node owns (here a run over two nodes) fails the line with its reason."""
    run = Verdict("all_reduce_perf on gpu1,gpu2", "nccl", Status.FAIL,
                  ["the run ended before its last size"])  # fmt: skip
    line = verdict_line([run, _gpu("gpu1", 0, Status.PASS)], NODES, {}, [])
    assert line == "FAIL: the run ended before its last size; nothing drained"


def test_pass_and_warn_lines_count_the_nodes_tested():
    passing = [_gpu(n, 0, Status.PASS) for n in NODES]
    assert verdict_line(passing, NODES, {}, []) == "PASS: 3 of 3 GPU nodes passed, nothing drained"
    busy = Verdict("gpu2", "slurm", Status.WARN, ["gpu2: not tested: Slurm has it DOWN"])
    assert verdict_line([*passing, busy], NODES, {}, ["gpu2"]) == (
        "WARN: 2 of 3 GPU nodes passed, nothing drained; not tested: gpu2"
    )


# Nodes measured again before a drain: the burn-in's threshold pack on constructed CPU
# documents (no absolute floors for that model), as the lab's three CPU "GPUs" give them.
def _cpu_fleet(hbm: dict[str, float], checks_failed: dict[str, int] | None = None) -> list:
    from test_verify_burnin_judge import doc, gpu

    return [
        doc(
            node,
            [gpu(0, 0.0300, rate, name="cpu", checks_failed=(checks_failed or {}).get(node, 0))],
        )
        for node, rate in hbm.items()
    ]


def _judged(docs: list) -> list[Verdict]:
    from gpufleet.verify.burnin_judge import judge_burnin

    rules = {"fleet_warn_pct": -35, "fleet_fail_pct": -45}
    return list(judge_burnin(docs, rules, sources=[d["host"] for d in docs]).verdicts)


def test_a_node_failed_by_the_pack_on_one_run_is_measured_again_and_cleared_by_its_mean():
    from gpufleet.verify.campaign import failed_on_one_run

    first = _cpu_fleet({"gpu1": 1.8, "gpu2": 3.7, "gpu3": 3.6})  # gpu1 51% below: one run
    verdicts = _judged(first)
    assert [v.status for v in verdicts if v.metrics["node"] == "gpu1"] == [Status.FAIL]
    runs = {"gpu1": 1, "gpu2": 1, "gpu3": 1}
    assert failed_on_one_run(verdicts, runs, {}, ["gpu1", "gpu2", "gpu3"]) == ["gpu1"]

    again = _cpu_fleet({"gpu1": 3.9})  # measured alone, not beside two others
    after = _judged([*first, *again])
    gpu1 = [v for v in after if v.metrics["node"] == "gpu1"]
    assert [v.status for v in gpu1] == [Status.PASS]
    assert owned_failures(after, ["gpu1", "gpu2", "gpu3"]) == {}


def test_measuring_again_clears_throughput_only_never_a_failed_check():
    from gpufleet.verify.campaign import failed_on_one_run

    first = _cpu_fleet({"gpu1": 3.7, "gpu2": 3.7, "gpu3": 3.6}, checks_failed={"gpu2": 1})
    verdicts = _judged(first)
    assert failed_on_one_run(verdicts, {"gpu2": 1}, {}, ["gpu1", "gpu2", "gpu3"]) == ["gpu2"]
    after = _judged([*first, *_cpu_fleet({"gpu2": 3.7})])
    assert list(owned_failures(after, ["gpu1", "gpu2", "gpu3"])) == ["gpu2"]


def test_nodes_measured_twice_without_a_result_or_outside_the_site_are_not_measured_again():
    from gpufleet.verify.campaign import failed_on_one_run

    slow = _judged(_cpu_fleet({"gpu1": 1.0, "gpu2": 3.7, "gpu3": 3.6, "gpu9": 0.5}))
    nodes = ["gpu1", "gpu2", "gpu3"]
    assert failed_on_one_run(slow, {"gpu1": 2}, {}, nodes) == []
    assert failed_on_one_run(slow, {"gpu1": 1}, {"gpu1": "burn-in gave no result"}, nodes) == []
    assert failed_on_one_run(slow, {"gpu1": 1, "gpu9": 1}, {}, nodes) == ["gpu1"]


# A pass that still holds (--last, site.yml's use): constructed configs and records.
def _config(**extra) -> dict:
    return {"site": "lab", "nodes": ["gpu1", "gpu2"], "rails": 0, "profile": "lab-cpu",
            "launch": {"nccl_tests_bin": "/opt/nccl-tests", "python": "/usr/bin/python3"},
            "node_state": {"gpu1": "boot-a\n6.1.0\nlocks-a", "gpu2": "boot-b\n6.1.0\nlocks-b"},
            **extra}  # fmt: skip


def _passed(tmp_path, data: dict, hours_ago: float = 1.0, verdict: str = "pass") -> dict:
    from datetime import UTC, datetime, timedelta

    from gpufleet.verify.campaign import fingerprint

    folder = tmp_path / "20261204T100000Z"
    folder.mkdir(exist_ok=True)
    (folder / "summary.json").write_text("{}")
    finished = datetime.now(UTC) - timedelta(hours=hours_ago)
    return {"fingerprint": fingerprint(data), "verdict": verdict, "folder": str(folder),
            "line": "PASS: 2 of 2 GPU nodes passed, nothing drained",
            "finished_at": finished.strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip


def _why(data: dict, record: dict | None, no_record: str = "no verification on record"):
    from datetime import UTC, datetime

    from gpufleet.verify.campaign import config_from, fingerprint, why_measure

    return why_measure(config_from(data), record, no_record, fingerprint(data), datetime.now(UTC))


def test_a_recent_pass_of_the_same_nodes_and_settings_holds(tmp_path):
    data = _config()
    assert _why(data, _passed(tmp_path, data)) is None
    # The passive findings are judged on every run, not part of what a pass vouches for...
    assert _why({**data, "passive": {"gpu1": []}}, _passed(tmp_path, data)) is None
    # ...and a problem they find makes the run measure (and drain).
    found = {**data, "passive": {"gpu2": ["Xid 79 on GPU 3"]}}
    assert _why(found, _passed(tmp_path, data)) == "passive checks found problems on gpu2"


def test_any_change_a_pass_vouched_for_makes_the_run_measure(tmp_path):
    data = _config()
    record = _passed(tmp_path, data)
    rebooted = _config(node_state={**data["node_state"], "gpu2": "boot-c\n6.1.0\nlocks-b"})
    relocked = _config(node_state={**data["node_state"], "gpu1": "boot-a\n6.1.0\nlocks-z"})
    changes = [
        rebooted,
        relocked,
        _config(nodes=["gpu1", "gpu2", "gpu3"]),
        _config(launch={**data["launch"], "burnin_seconds": 900}),
        _config(compute_fail_fraction=0.9),
    ]
    for changed in changes:
        assert _why(changed, record).startswith("changed since the pass of "), changed


def test_an_old_failed_missing_or_unreadable_record_makes_the_run_measure(tmp_path):
    from gpufleet.verify.campaign import read_record

    data = _config()
    old = _passed(tmp_path, data, hours_ago=200)
    assert _why(data, old).endswith("h old (reverify_after_hours: 168)")
    longer = {**data, "reverify_after_hours": 500}
    assert _why(longer, _passed(tmp_path, longer, hours_ago=200)) is None
    always = {**data, "reverify_after_hours": 0}
    assert (
        _why(always, _passed(tmp_path, always)) == "reverify_after_hours is 0: every run measures"
    )
    failed = _passed(tmp_path, data, verdict="fail")
    assert _why(data, failed).startswith("the last verification (")
    gone = _passed(tmp_path, data)
    (Path(gone["folder"]) / "summary.json").unlink()
    assert _why(data, gone).startswith("the pass's report is gone")
    assert read_record(tmp_path / "none.json") == (None, "no verification on record")
    (tmp_path / "bad.json").write_text('{"verdict": "pass"}')
    record, why = read_record(tmp_path / "bad.json")
    assert record is None and why.startswith(f"the record {tmp_path / 'bad.json'} is unreadable")


def test_main_names_a_pass_that_holds_and_force_measures(tmp_path, capsys):
    import json

    from gpufleet.verify.campaign import main

    data = _config()
    config, last, out = tmp_path / "config.json", tmp_path / "last.json", tmp_path / "run2"
    config.write_text(json.dumps(data))
    record = _passed(tmp_path, data)
    last.write_text(json.dumps(record))
    argv = ["--config", str(config), "--out", str(out), "--last", str(last)]
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"unchanged since {record['finished_at']}: {record['line']}"
    assert printed[-1] == f"folder: {record['folder']}" and not out.exists()
    # Forced, it measures: the record is dropped first (no Slurm here: the run cannot start).
    assert main([*argv, "--force"]) == 2
    assert "measuring: asked to measure (--force)" in capsys.readouterr().out
    assert not last.exists() and (out / "progress.log").is_file()
