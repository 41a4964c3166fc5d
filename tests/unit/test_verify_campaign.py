"""The verification campaign's decisions from verdicts: which nodes a failure drains, and the
one-line verdict. The verdicts here are constructed; the texts follow the judges' wording."""

from __future__ import annotations

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
