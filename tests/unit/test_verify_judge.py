"""Verdicts on recorded nccl-tests logs, constructed edge cases, and threshold packs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from gpufleet.errors import UserError
from gpufleet.verify.baseline import make_baseline
from gpufleet.verify.judge import (
    JudgeOptions,
    RunJudgement,
    judge_log,
    judge_logs,
    labels_from_name,
    pair_matrix,
)
from gpufleet.verify.nccl import parse_nccl_log
from gpufleet.verify.thresholds import (
    PACK_DIR,
    Figure,
    build_thresholds,
    load_thresholds,
    parse_profile,
)
from gpufleet.verify.verdict import Status

DATA = Path(__file__).resolve().parents[1] / "data" / "nccl-tests"
THRESHOLDS = load_thresholds()

SINGLE = "h100-1node-8gpu-nvls-5collectives-cluster01.log"
OK = "h100-2node-alltoall-sendrecv-cluster00-pair-ok.log"
DEGRADED = "h100-2node-alltoall-sendrecv-cluster00-pair-degraded.log"
FAILED = "h100-2node-alltoall-sendrecv-cluster00-pair-failed.log"
EFA = "h100-aws-p5-efa-2node-allreduce-mpirun-prefix-info.log"
PARTIAL = "h100-coreweave-64gpu-ib-sharp-allreduce-partial.log"
NVLS_RING = "h100-together-1node-8gpu-allreduce-nvls-label-ringlevel.log"
SOCKET = "h200-dgx-2node-openshift-single-iface-socket-allreduce.log"
GKE = "h200-gke-dranet-allreduce-2x1gpu-roce.log"


def log_of(name: str):
    text = (DATA / name).read_text(encoding="utf-8").split("\n", 1)[1]
    return parse_nccl_log(text, name)


def judge(name: str, **options) -> list[RunJudgement]:
    return judge_log(log_of(name), THRESHOLDS, JudgeOptions(**options))


def text_of(j: RunJudgement) -> str:
    return " ".join(j.verdict.reasons)


def test_single_node_five_collectives_pass() -> None:
    judgements = judge(SINGLE)
    assert [j.run.collective for j in judgements] == [
        "all_reduce",
        "all_gather",
        "reduce_scatter",
        "alltoall",
        "sendrecv",
    ]
    for j in judgements:
        assert j.verdict.status is Status.PASS, j.verdict.reasons
        assert j.kind == "1node"
        assert j.verdict.metrics["size_bytes"] == 17179869184
    allreduce = judgements[0]
    assert allreduce.pack is not None and allreduce.pack.name.startswith("nccl-allreduce-1node")
    assert "482.3 GB/s at 16 GiB meets the floor of 460 GB/s" in allreduce.verdict.reasons[0]


def test_healthy_pair_passes() -> None:
    for j in judge(OK):
        assert j.verdict.status is Status.PASS, j.verdict.reasons
        assert j.kind == "2node"


def test_degraded_pair_fails_with_a_reason_about_the_fabric() -> None:
    alltoall, sendrecv = judge(DEGRADED)
    assert alltoall.verdict.status is Status.FAIL
    reasons = text_of(alltoall)
    assert "5.1 GB/s at 16 GiB" in reasons
    assert "fabric between cnode2-003+cnode2-015" in reasons
    assert sendrecv.verdict.status is Status.PASS


def test_degraded_pair_against_its_sweep_peers() -> None:
    logs = [log_of(n) for n in (OK, DEGRADED, FAILED)]
    judgements = judge_logs(logs, THRESHOLDS, JudgeOptions(), peers=True)
    by_key = {(j.source, j.run.collective): j for j in judgements}
    bad = by_key[(DEGRADED, "alltoall")]
    assert bad.verdict.status is Status.FAIL
    assert "78% below the median 23.6 GB/s" in bad.verdict.reasons[0]
    assert "fabric path of cnode2-003+cnode2-015" in bad.verdict.reasons[0]
    assert by_key[(OK, "alltoall")].verdict.status is Status.PASS
    assert by_key[(OK, "sendrecv")].verdict.status is Status.PASS
    values, statuses, collective = pair_matrix(judgements)
    assert collective == "alltoall"
    assert statuses[("cnode2-003", "cnode2-015")] is Status.FAIL
    assert statuses[("cnode2-008", "cnode2-009")] is Status.FAIL
    assert values[("cnode2-008", "cnode2-009")] is None
    assert values[("cnode2-001", "cnode2-002")] == pytest.approx(23.62)


def test_site_baseline_from_the_healthy_pair() -> None:
    document = make_baseline(judge(OK), THRESHOLDS, "hgx-h100-8gpu-ib", margin=0.10)
    alltoall = next(p for p in document["packs"] if p["collectives"] == ["alltoall"])
    assert alltoall["busbw"]["fail_below"]["value"] == pytest.approx(23.62 * 0.9, abs=0.01)
    assert (
        "h100-2node-alltoall-sendrecv-cluster00-pair-ok.log"
        in alltoall["busbw"]["expected"]["source"]
    )
    site = build_thresholds(yaml.safe_load(yaml.safe_dump(document)), "site.yaml")
    ok = judge_log(log_of(OK), site, JudgeOptions())
    assert all(j.verdict.status is Status.PASS for j in ok)
    bad = judge_log(log_of(DEGRADED), site, JudgeOptions())[0]
    assert bad.verdict.status is Status.FAIL
    assert "below the site baseline" in bad.verdict.reasons[0]


def test_h200_pair_on_tcp_over_one_interface_fails_pointing_at_the_rails() -> None:
    (j,) = judge(SOCKET)
    assert j.verdict.status is Status.FAIL
    reasons = text_of(j)
    assert "92.3 GB/s at 16 GiB" in reasons
    assert "2-node InfiniBand floor" in reasons
    assert "algbw of 49.2 GB/s equals one NIC" in reasons
    assert "all 8 rails" in reasons


def test_nvls_labelled_run_at_ring_level_is_flagged() -> None:
    (j,) = judge(NVLS_RING)
    assert "nvls" in j.verdict.metrics["labels"]
    assert j.verdict.status is Status.FAIL
    reasons = text_of(j)
    assert "labelled NVLS" in reasons and "NVLS" in reasons
    assert "368.7 GB/s at 8 GiB" in reasons


def test_ring_run_judged_against_ring_floors() -> None:
    (j,) = judge(NVLS_RING, labels=frozenset({"ring"}))
    # Labelled ring (NCCL_ALGO=Ring): 368.7 GB/s is what a ring reaches.
    assert j.verdict.status is Status.PASS, j.verdict.reasons


def test_failed_pair_names_the_remote_process_exit() -> None:
    judgements = judge(FAILED)
    assert len(judgements) == 2
    for j in judgements:
        assert j.verdict.status is Status.FAIL
        reasons = text_of(j)
        assert "remote process exited" in reasons
        assert "cnode2-009" in reasons and "cnode2-008" in reasons


def test_efa_pair_passes() -> None:
    (j,) = judge(EFA)
    assert j.fabric == "efa" and j.kind == "2node"
    assert j.verdict.status is Status.PASS, j.verdict.reasons


def test_partial_excerpt_needs_a_kind_and_then_passes() -> None:
    (unknown,) = judge(PARTIAL)
    assert unknown.kind == "unknown"
    assert any("pass --kind" in r for r in unknown.verdict.reasons)
    (j,) = judge(PARTIAL, kind="multinode")
    assert j.pack is not None and j.pack.name == "nccl-allreduce-multinode-ib"
    assert j.verdict.status is Status.PASS
    assert any("partial" in r for r in j.verdict.reasons)


def test_one_nic_run_warns_below_what_a_400g_nic_carries() -> None:
    (j,) = judge(GKE)
    assert j.kind == "nic"
    assert j.verdict.status is Status.WARN
    assert "31.9 GB/s" in j.verdict.reasons[0]


def test_expected_ranks_and_sizes() -> None:
    j = judge(OK, expected_ranks=32)[0]
    assert j.verdict.status is Status.FAIL
    assert "16 ranks listed, the job expected 32" in text_of(j)
    (k,) = judge(NVLS_RING, expected_max_bytes=17179869184)
    assert "stops at 8 GiB" in text_of(k)


def test_labels_from_file_names() -> None:
    assert labels_from_name("all_reduce_nvls.out") == {"nvls"}
    assert labels_from_name("h100-together-1node-8gpu-allreduce-nvls-label-ringlevel.log") == {
        "nvls"
    }
    assert labels_from_name("run-ring.log") == {"ring"}


# constructed inputs ------------------------------------------------------------------

CONSTRUCTED_HEADER = (
    """\
# nThread 1 nGpus 1 minBytes 4294967296 maxBytes 17179869184 step: 2(factor) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0
#
# Using devices
"""  # noqa: E501 - the nccl-tests header is one long line
    + "".join(
        f"#  Rank {r:2d} Group  0 Pid {2000 + r} on node-{r // 8} device {r % 8:2d} "
        f"[0000:1b:00] NVIDIA H100 80GB HBM3\n"
        for r in range(16)
    )
    + """\
#
#       size         count      type   redop    root     time   algbw   busbw  #wrong     time   algbw   busbw  #wrong
"""  # noqa: E501 - nccl-tests column widths
)


def constructed_row(size: int, algbw: float, busbw: float, wrong: int = 0) -> str:
    return (
        f"{size:12d} {size // 4:13d}     float     sum      -1   1000.0 {algbw:7.2f} "
        f"{busbw:7.2f} {wrong:7d}   1000.0 {algbw:7.2f} {busbw:7.2f}       0\n"
    )


CONSTRUCTED_HEALTHY = (
    constructed_row(4294967296, 206.0, 386.0)
    + constructed_row(8589934592, 208.0, 390.0)
    + constructed_row(17179869184, 209.0, 392.0)
)


def judge_text(text: str, **options) -> RunJudgement:
    (j,) = judge_log(parse_nccl_log(text, "constructed.log"), THRESHOLDS, JudgeOptions(**options))
    return j


def test_constructed_healthy_two_node_ring_passes() -> None:
    j = judge_text(CONSTRUCTED_HEADER + CONSTRUCTED_HEALTHY, kind="2node-ring", expected_ranks=16)
    assert j.verdict.status is Status.PASS, j.verdict.reasons


def test_constructed_wrong_values_fail() -> None:
    # constructed: the 8 GiB row reports 7 wrong values.
    text = CONSTRUCTED_HEADER + CONSTRUCTED_HEALTHY.replace("390.00       0", "390.00       7", 1)
    j = judge_text(text)
    assert j.verdict.status is Status.FAIL
    assert "7 wrong values" in j.verdict.reasons[0]


def test_constructed_nccl_warn_line_warns() -> None:
    # constructed: an NCCL WARN line between rows of an otherwise healthy run.
    rows = CONSTRUCTED_HEALTHY.splitlines(keepends=True)
    text = (
        CONSTRUCTED_HEADER
        + rows[0]
        + "node-0:2000:2050 [0] NCCL WARN NET/IB : mlx5_3:1 Got async event : port error\n"
        + "".join(rows[1:])
    )
    j = judge_text(text)
    assert j.verdict.status is Status.WARN
    assert "NCCL WARN" in j.verdict.reasons[0] and "port error" in j.verdict.reasons[0]


def test_constructed_busbw_zero_from_a_build_without_mpi_fails() -> None:
    # constructed: what a nccl-tests build without MPI=1 prints when started as 16
    # processes: each process is its own single-rank job, busbw 0, #wrong 0.
    text = (
        "# nThread 1 nGpus 1 minBytes 1048576 maxBytes 4194304 step: 2(factor) warmup iters: 5 "
        "iters: 20 agg iters: 1 validation: 1 graph: 0\n#\n# Using devices\n"
        "#  Rank  0 Group  0 Pid   3000 on node-0 device  0 [0000:1b:00] NVIDIA H100 80GB HBM3\n"
        "#\n"
        "#       size         count      type   redop    root     time   algbw   busbw  #wrong"
        "     time   algbw   busbw  #wrong\n"
        "     1048576        262144     float     sum      -1     5.10  205.60    0.00       0"
        "     0.40 2621.44    0.00       0\n"
        "     2097152        524288     float     sum      -1     8.20  255.75    0.00       0"
        "     0.40 5242.88    0.00       0\n"
        "     4194304       1048576     float     sum      -1    14.90  281.50    0.00       0"
        "     0.40 10485.76   0.00       0\n"
    )
    j = judge_text(text, expected_ranks=16)
    assert j.verdict.status is Status.FAIL
    reasons = text_of(j)
    assert "busbw is 0 at every size" in reasons and "MPI=1" in reasons
    assert "1 ranks listed, the job expected 16" in reasons


def test_constructed_socket_fallback_fails_multi_node() -> None:
    # constructed: NCCL INFO lines of a run that fell back to TCP sockets.
    info = (
        "node-0:2000:2000 [0] NCCL INFO NCCL_IB_DISABLE set by environment to 1.\n"
        "node-0:2000:2000 [0] NCCL INFO NET/Socket : Using [0]eth0:10.0.0.1<0>\n"
        "node-0:2000:2000 [0] NCCL INFO Using network Socket\n"
    )
    header_end = CONSTRUCTED_HEADER.index("#\n#       size")
    text = CONSTRUCTED_HEADER[:header_end] + info + CONSTRUCTED_HEADER[header_end:]
    j = judge_text(text + CONSTRUCTED_HEALTHY)
    assert j.fabric == "socket"
    assert j.verdict.status is Status.FAIL
    assert "fell back to TCP sockets" in text_of(j)
    assert "NCCL_IB_DISABLE=1" in text_of(j)


def test_constructed_table_cut_short_fails() -> None:
    # constructed: the run died after the 4 GiB row (header asks up to 16 GiB).
    text = CONSTRUCTED_HEADER + CONSTRUCTED_HEALTHY.splitlines(keepends=True)[0]
    j = judge_text(text)
    assert j.verdict.status is Status.FAIL
    assert "ended early" in text_of(j)


def test_constructed_header_without_table_fails() -> None:
    # constructed: output that ends after the device list, without error lines.
    j = judge_text(CONSTRUCTED_HEADER)
    assert j.verdict.status is Status.FAIL
    assert "no size table" in text_of(j)


# threshold packs ---------------------------------------------------------------------


def _figures(node: object) -> list[object]:
    found: list[object] = []
    if isinstance(node, Figure):
        found.append(node)
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            found.extend(_figures(getattr(node, name)))
    elif isinstance(node, list):
        for item in node:
            found.extend(_figures(item))
    return found


def test_every_builtin_figure_has_a_source() -> None:
    names = {p.stem for p in PACK_DIR.glob("*.yaml")}
    assert {
        "nccl-allreduce-1node-hgx-h100-8gpu",
        "nccl-allreduce-2node-ring-ib",
        "nccl-allreduce-2node-ring-roce",
        "nccl-allreduce-multinode-ib",
        "nccl-allreduce-multinode-roce",
        "nic-bandwidth-400g",
        "burnin-h100-sxm",
    } <= names
    assert set(THRESHOLDS.packs) == names
    total = 0
    for pack in THRESHOLDS.packs.values():
        for fig in _figures(pack):
            assert isinstance(fig, Figure) and len(fig.source) > 10
            total += 1
    assert total > 40
    burnin = THRESHOLDS.burnin_pack("hgx-h100-8gpu")
    assert burnin is not None
    assert burnin.fleet_deviation.warn_below_pct.value == -3.5
    assert burnin.fleet_deviation.fail_below_pct.value == -7.0


def test_site_override_is_merged() -> None:
    site = {
        "overrides": {
            "nccl-allreduce-2node-ring-ib": {
                "busbw": {"fail_below": {"value": 360, "source": "site acceptance 2025"}}
            }
        }
    }
    ts = build_thresholds(site, "site.yaml")
    pack = ts.packs["nccl-allreduce-2node-ring-ib"]
    assert pack.busbw is not None and pack.busbw.fail_below is not None
    assert pack.busbw.fail_below.value == 360
    assert pack.busbw.warn_below is not None and pack.busbw.warn_below.value == 370
    assert pack.nic is not None  # untouched keys stay


@pytest.mark.parametrize(
    ("site", "needle"),
    [
        ({"overrides": {"no-such-pack": {}}}, "no built-in pack"),
        ({"bogus": 1}, "unknown key"),
        (
            {"overrides": {"nic-bandwidth-400g": {"busbw": {"fail_below": {"value": 25}}}}},
            "source",
        ),
        (
            {
                "overrides": {
                    "nic-bandwidth-400g": {"busbw": {"fail_below": {"value": 60, "source": "x y"}}}
                }
            },
            "must not exceed",
        ),
    ],
)
def test_bad_site_thresholds_are_rejected(site: dict, needle: str) -> None:
    with pytest.raises(UserError) as info:
        build_thresholds(site, "site.yaml")
    assert needle in str(info.value)
    assert "site.yaml" in str(info.value) or "nic-bandwidth-400g" in str(info.value)


def test_parse_profile() -> None:
    assert parse_profile("hgx-h100-8gpu-roce") == ("hgx-h100-8gpu", "roce")
    assert parse_profile("hgx-h100-8gpu") == ("hgx-h100-8gpu", "ib")
