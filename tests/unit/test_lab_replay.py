"""The lab's replay set is package data: every tool and every recording it prints ships in the
package (importlib.resources), each recording with its provenance line, nothing unused."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from gpufleet.errors import UserError
from gpufleet.lab import core

ROOT = Path(__file__).resolve().parents[2]

REPLAY = resources.files("gpufleet.lab") / "replay"
# File names the tools print from: "<name>.txt" in a string literal.
_NAME = re.compile(r'"(?:/usr/share/gpufleet-replay/)?([A-Za-z0-9._-]+\.txt)"')


# The tools on PATH, and the replayed nccl-tests (installed under one name per collective).
TOOLS = (*core.REPLAY_TOOLS, "nccl-tests")


def test_every_tool_ships_and_runs_python3() -> None:
    names = sorted(e.name for e in (REPLAY / "bin").iterdir())
    assert names == sorted(TOOLS)
    for tool in TOOLS:
        text = (REPLAY / "bin" / tool).read_text()
        assert text.startswith("#!/usr/bin/python3\n"), tool
        assert "TEST REPLAY" in text, tool  # says what it is to anyone who finds it on a node


def test_recordings_are_exactly_those_the_tools_print() -> None:
    wanted = {name for tool in TOOLS for name in _NAME.findall((REPLAY / "bin" / tool).read_text())}
    shipped = {e.name for e in (REPLAY / "recordings").iterdir()}
    assert wanted and wanted == shipped
    for name in shipped:
        first = (REPLAY / "recordings" / name).read_text().split("\n", 1)[0]
        assert first.startswith("# source: "), name


def test_the_lab_installs_them_from_the_package() -> None:
    assert core.REPLAY == REPLAY


def test_the_repository_is_found_or_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """converge and pulumi-up run the checkout's playbooks and stack: cwd or $GPUFLEET_REPO."""
    monkeypatch.delenv("GPUFLEET_REPO", raising=False)
    monkeypatch.chdir(ROOT)
    assert core.repo_root() == ROOT
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as info:
        core.repo_root()
    problem = info.value.problems[0]
    assert problem.path == "the current directory"
    assert "not a gpufleet checkout (no site.yml, ansible.cfg" in problem.message
    assert "GPUFLEET_REPO" in problem.hint
    monkeypatch.setenv("GPUFLEET_REPO", str(tmp_path))
    with pytest.raises(UserError) as info:
        core.repo_root()
    assert info.value.problems[0].path == "GPUFLEET_REPO"
    monkeypatch.setenv("GPUFLEET_REPO", str(ROOT))
    assert core.repo_root() == ROOT


def test_the_xid_fault_offers_exactly_the_codes_the_dmesg_replay_has_recordings_of() -> None:
    from gpufleet.lab import faults

    text = (REPLAY / "bin" / "dmesg").read_text()
    table = text[text.index("RECORDINGS = {") : text.index("}", text.index("RECORDINGS = {"))]
    codes = {int(c) for c in re.findall(r"^\s+(\d+): ", table, re.M)}
    assert codes == set(faults.XID_CODES)
    for code in codes:  # each recording carries the Xid it is listed for
        name = re.search(rf"^\s+{code}: \"([^\"]+)\"", table, re.M).group(1)  # type: ignore[union-attr]
        assert f"): {code}," in (REPLAY / "recordings" / name).read_text(), (code, name)


def _nccl_tests(tmp_path: Path, collective: str, env: dict[str, str]) -> tuple[int, str]:
    """Run the replayed nccl-tests as `<collective>_perf` with the recordings of the package."""
    import os
    import subprocess
    import sys

    link = tmp_path / f"{collective}_perf"
    link.symlink_to(Path(str(REPLAY / "bin" / "nccl-tests")))
    with resources.as_file(REPLAY / "recordings") as data:
        run = subprocess.run(
            [sys.executable, str(link)],
            env={**os.environ, "GPUFLEET_REPLAY_DATA": str(data), **env},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    return run.returncode, run.stdout


@pytest.mark.parametrize(
    ("fabric", "nodes", "busbw", "rc"),
    [
        ({}, "gpu1", 482.27, 0),  # one node: the 8 x H100 NVSwitch run of that collective
        ({}, "gpu1,gpu2", 23.62, 0),  # a healthy pair
        ({"degraded": ["gpu2"]}, "gpu1,gpu2", 5.13, 0),
        ({"degraded": ["gpu3"]}, "gpu1,gpu2", 23.62, 0),  # the fault is not in this job
        ({"down": {"gpu2": ["eth2"]}}, "gpu1,gpu2", None, 1),  # this job's rail is down
        ({"down": {"gpu2": ["eth1"]}}, "gpu1,gpu2", 23.62, 0),  # another rail is down
    ],
)
def test_replayed_nccl_tests_choose_by_node_set_and_fault(tmp_path, fabric, nodes, busbw, rc):
    import json

    from gpufleet.verify.judge import JudgeOptions, judge_log
    from gpufleet.verify.nccl import parse_nccl_log
    from gpufleet.verify.thresholds import load_thresholds

    faults = tmp_path / "fabric.json"
    faults.write_text(json.dumps(fabric))
    collective = "all_reduce" if "," not in nodes else "alltoall"
    env = {"GPUFLEET_REPLAY_FABRIC": str(faults), "SLURM_STEP_NODELIST": nodes,
           "SLURM_PROCID": "0", "NCCL_SOCKET_IFNAME": "=eth2"}  # fmt: skip
    code, out = _nccl_tests(tmp_path, collective, env)
    assert code == rc
    (judged,) = judge_log(parse_nccl_log(out, "replay"), load_thresholds(), JudgeOptions())
    assert judged.verdict.metrics.get("busbw_gbps") == busbw
    assert judged.run.binary == f"{collective}_perf"
    (tmp_path / "rank3").mkdir()
    code, out = _nccl_tests(tmp_path / "rank3", collective, {**env, "SLURM_PROCID": "3"})
    assert (code, out) == (rc, "")  # other ranks print nothing, with rank 0's status
