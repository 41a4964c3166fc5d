"""gpufleet-node-health (roles/slurm): the node health check Slurm runs as prolog, epilog and
HealthCheckProgram. Judged on outputs recorded on real H100 systems (tests/data/hardware: the
kernel logs with Xid events, ibstat, nvidia-smi -q); the small `scontrol` line and the config
are constructed here. The whole check runs as a program against tools that replay the
recordings (test-only scripts written into tmp_path)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles/slurm/files/usr/local/sbin/gpufleet-node-health"
HW = ROOT / "tests/data/hardware"
REPLAY = ROOT / "src/gpufleet/lab/replay/recordings"


def _load() -> Any:
    loader = importlib.machinery.SourceFileLoader("gpufleet_node_health", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


health = _load()


def _recording(path: Path) -> str:
    return path.read_text().split("\n", 1)[1]


DMESG_48 = _recording(HW / "dmesg-xid-48-63-94-leptonai-gpud.txt")
DMESG_119 = _recording(HW / "dmesg-xid-119-leptonai-gpud-xe9680.txt")
XID_LOG = HW / "dmesg-xid-48-63-94-leptonai-gpud.txt"
# A single H100 passed through to a VM: one GPU where the profile has eight
ONE_GPU = REPLAY / "nvidia-smi-q-utkuozdemir-nvidia_gpu_exporter-h100-590.48.01.txt"
DRAIN = yaml.safe_load((ROOT / "roles/slurm/defaults/main.yml").read_text())[
    "slurm_health_xid_drain"
]


def test_xid_lines_of_both_log_formats_are_found() -> None:
    events = health.xid_events(DMESG_48)
    assert {code for _, code, _ in events} == {48, 63, 94}
    assert {pci for pci, _, _ in events} == {"PCI:0000:19:00"}
    assert {(p, c) for p, c, _ in health.xid_events(DMESG_119)} == {("PCI:0000:9b:00", 119)}
    # nvidia-peermem errors and GSP RPC history lines are not Xid events
    assert all("NVRM: Xid" in line for _, _, line in events)


def test_the_default_drain_list_drains_ecc_and_gsp_errors_but_not_contained_ones() -> None:
    assert health.judge_xids(health.xid_events(DMESG_48), DRAIN) == [
        "Xid 48 on GPU 0000:19:00 since boot",
        "Xid 63 on GPU 0000:19:00 since boot",
    ]
    assert health.judge_xids(health.xid_events(DMESG_119), DRAIN) == [
        "Xid 119 on GPU 0000:9b:00 since boot"
    ]
    assert 94 not in DRAIN  # a contained ECC error: the application restarts, the node stays
    assert health.judge_xids(health.xid_events(DMESG_48), [94]) == [
        "Xid 94 on GPU 0000:19:00 since boot"
    ]


def test_acknowledged_events_no_longer_count_and_a_new_log_counts_again() -> None:
    events = health.xid_events(DMESG_48)
    assert health.after_ack(events, events[-1][2]) == []
    assert health.after_ack(events, events[1][2]) == events[2:]
    # The acknowledged line is not in the log (the node rebooted): everything counts.
    assert health.after_ack(events, "NVRM: Xid (PCI:0000:aa:00): 79, gone") == events
    assert health.after_ack(events, "") == events


def test_fabric_ports_counted_by_link_layer_and_the_down_ones_named() -> None:
    ports = health.ib_ports(_recording(HW / "ibstat-leptonai-gpud-h100-ib-ndr-eth-ports-down.txt"))
    ib = [p for p in ports if p["link"] == "InfiniBand"]
    assert len(ports) == 12 and len(ib) == 8
    assert health.judge_ports(ports, 8, "InfiniBand") == []
    assert health.judge_ports(ports, 9, "InfiniBand") == ["8 InfiniBand ports up, expected 9"]
    # RoCE: three Ethernet RDMA ports of this node are down; each is named.
    (eth,) = health.judge_ports(ports, 4, "Ethernet")
    assert eth.startswith("1 Ethernet ports up, expected 4 (") and eth.count("Down/") == 3, eth
    healthy = health.ib_ports(
        _recording(REPLAY / "ibstat-leptonai-gpud-h100-ib-ndr-all-active.txt")
    )
    assert health.judge_ports(healthy, 8, "InfiniBand") == []


def test_reason_is_prefixed_and_bounded() -> None:
    assert health.reason_of(["a", "b"]) == "gpufleet: a; b"
    long = health.reason_of(["x" * 500])
    assert len(long) == health.REASON_MAX and long.endswith("...")


def _tool(tmp: Path, name: str, recording: Path | None, rc: int = 0) -> str:
    """A test-only replay: prints a recording (provenance line stripped) and exits rc."""
    path = tmp / name
    body = (
        f"sys.stdout.write(open({str(recording)!r}).read().split('\\n', 1)[1])\n"
        if recording
        else ""
    )
    path.write_text(f"#!{sys.executable}\nimport sys\n{body}sys.exit({rc})\n")
    path.chmod(0o755)
    return str(path)


def _config(tmp: Path, **over: Any) -> Path:
    cfg = {
        "node": "gpu9",
        "facts_module": str(ROOT / "library/nvidia_gpu_facts.py"),
        "state_dir": str(tmp / "state"),
        "timeout_s": 4,
        "nvidia_smi": _tool(
            tmp, "nvidia-smi", REPLAY / "nvidia-smi-q-leptonai-gpud-535.161.08-8xh100.txt"
        ),
        "gpu_expect": {"gpu_count": 8, "ecc_errors": True},
        "kernel_log": [_tool(tmp, "dmesg-clean", None)],
        "xid_drain": DRAIN,
        "fabric_ports": 0,
        "fabric_manager_unit": "",
        "disks": [{"path": str(tmp), "min_free_percent": 0}],
        "version_drift": _tool(tmp, "drift-ok", None),
    }
    cfg.update(over)
    path = tmp / "node-health.json"
    path.write_text(json.dumps(cfg))
    return path


def _run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False,
        env={"GPUFLEET_NODE_HEALTH_CONFIG": str(config), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_a_healthy_recorded_node_passes_and_the_report_is_kept(tmp_path: Path) -> None:
    run = _run(_config(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "gpu9: healthy" in run.stdout
    report = json.loads((tmp_path / "state/last.json").read_text())
    assert report["healthy"] and report["mode"] == "manual"
    assert set(report["checks"]) == {"gpus", "xid", "disk", "versions"}
    assert report["seconds"] < 10


def test_each_check_can_fail_and_says_why(tmp_path: Path) -> None:
    cases = {
        "xid": dict(kernel_log=[_tool(tmp_path, "dmesg-48", XID_LOG)]),
        "gpus": dict(nvidia_smi=_tool(tmp_path, "smi-1gpu", ONE_GPU)),
        "disk": dict(disks=[{"path": str(tmp_path), "min_free_percent": 101}]),
        "versions": dict(version_drift=_tool(tmp_path, "drift-bad", None, rc=1)),
        "fabric": dict(fabric_ports=8),  # no ibstat on PATH
    }  # fmt: skip
    for check, over in cases.items():
        run = _run(_config(tmp_path, **over), "--json")
        assert run.returncode == 1, (check, run.stdout, run.stderr)
        report = json.loads(run.stdout)
        failed = [name for name, r in report["checks"].items() if not r["ok"]]
        assert failed == [check], (check, report)
    report = json.loads(_run(_config(tmp_path, **cases["xid"]), "--json").stdout)
    assert report["problems"] == [
        "Xid 48 on GPU 0000:19:00 since boot",
        "Xid 63 on GPU 0000:19:00 since boot",
    ]
    report = json.loads(_run(_config(tmp_path, **cases["gpus"]), "--json").stdout)
    assert any(p.startswith("gpu_count: seen 1, expected 8") for p in report["problems"]), report


def test_an_unreadable_kernel_log_or_a_crashing_check_fails(tmp_path: Path) -> None:
    run = _run(
        _config(tmp_path, kernel_log=[_tool(tmp_path, "dmesg-denied", None, rc=1)]), "--json"
    )
    assert run.returncode == 1
    assert json.loads(run.stdout)["problems"][0].startswith("cannot read the kernel log")
    broken = _config(tmp_path, facts_module=str(tmp_path / "missing.py"))
    report = json.loads(_run(broken, "--json").stdout)
    assert report["problems"][0].startswith("gpus check crashed: FileNotFoundError"), report


def test_ack_xid_clears_what_was_logged_before(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        kernel_log=[_tool(tmp_path, "dmesg-48", HW / "dmesg-xid-48-63-94-leptonai-gpud.txt")],
    )
    assert _run(cfg).returncode == 1
    ack = _run(cfg, "--ack-xid")
    assert ack.returncode == 0, ack.stderr
    assert _run(cfg).returncode == 0


def test_bad_arguments_print_the_usage(tmp_path: Path) -> None:
    run = _run(_config(tmp_path), "--prolog", "--epilog")
    assert run.returncode == 2 and "--ack-xid" in run.stderr
    assert _run(_config(tmp_path), "--nonsense").returncode == 2


@pytest.mark.parametrize(
    ("line", "state", "reason"),
    [
        # constructed in the form of `scontrol -o show node` (Slurm 22.05)
        ("NodeName=gpu2 Arch=x86_64 CoresPerSocket=1 State=IDLE+DRAIN ThreadsPerCore=1 "
         "Reason=gpufleet: Xid 48 on GPU 0000:19:00 since boot [root@2026-12-02T19:00:00] "
         "Comment=(null)",
         "IDLE+DRAIN", "gpufleet: Xid 48 on GPU 0000:19:00 since boot"),
        ("NodeName=gpu1 Arch=x86_64 State=IDLE ThreadsPerCore=1 Comment=(null)", "IDLE", ""),
    ],
)  # fmt: skip
def test_node_state_and_reason_are_read_from_scontrol(
    line: str, state: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "run", lambda argv, timeout: (0, line + "\n", ""))
    assert health.node_state({"node": "gpu2", "timeout_s": 1}) == (state, reason)
