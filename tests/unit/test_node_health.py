"""gpufleet-node-health (roles/slurm): the node health check Slurm runs as prolog, epilog and
HealthCheckProgram. Judged on outputs recorded on real H100 systems (tests/data/hardware: the
kernel logs with Xid events, ibstat, nvidia-smi -q); the small `scontrol` line and the config
are constructed here. The whole check runs as a program against tools that replay the
recordings (test-only scripts written into tmp_path)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from roles_render import ROLES, render, render_file, task_named

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


# --------------------------------------------------------------------------- --textfile

# The 8 GPUs of the 535.161.08 recording the default config replays, in sorted order.
H100_BUSES = [
    "00000000:19:00.0", "00000000:3B:00.0", "00000000:4C:00.0", "00000000:5D:00.0",
    "00000000:9B:00.0", "00000000:BB:00.0", "00000000:CB:00.0", "00000000:DB:00.0",
]  # fmt: skip
# An A100 with a pending row remap; this branch (510) prints no PCIe link values.
REMAP_PENDING = HW / "nvidia-smi-q-stas00-ml-engineering-a100-510.73.08-remap-pending.txt"
METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], text)


def parse_exposition(text: str) -> dict[str, dict[str, Any]]:
    """A strict reader of the Prometheus text format (0.0.4) as this check writes it: by metric,
    its help, type and samples ({labels: value}). Fails on what the format does not allow (bad
    names, unescaped label values, values that are no number, a series twice) and on what this
    writer promises (HELP then TYPE before the samples, metrics sorted and never split)."""
    assert text.endswith("\n") and "\n\n" not in text, repr(text[-80:])
    families: dict[str, dict[str, Any]] = {}
    current = ""
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (\S+) (.*)", line)
            assert m and METRIC.fullmatch(m[2]), where
            family = families.setdefault(m[2], {"samples": {}})
            assert m[2] == current or not family["samples"], f"{where}: metric split"
            key = m[1].lower()
            assert key not in family and (key == "help" or "help" in family), where
            if key == "type":
                assert m[3] in ("counter", "gauge", "untyped", "summary", "histogram"), where
            family[key] = _unescape(m[3])
            current = m[2]
            continue
        m = SAMPLE.fullmatch(line)
        assert m and m[1] == current and "type" in families[current], where
        labels, rest = [], m[2] or ""
        while rest:
            lm = LABEL.match(rest)
            assert lm, where
            labels.append((lm[1], _unescape(lm[2])))
            rest = rest[lm.end() :]
            assert rest == "" or rest.startswith(","), where
            rest = rest[1:]
        value = float(m[3])  # NaN, +Inf and -Inf included
        series = families[current]["samples"]
        assert tuple(labels) not in series, f"{where}: series twice"
        series[tuple(labels)] = value
    assert list(families) == sorted(families), list(families)
    assert all(f["samples"] for f in families.values()), "a metric without samples"
    return families


def _samples(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


# The Xid codes the alert rules name (written as 0 until logged), as the script has them.
ALERTED = (13, 31, 43, 45, 48, 63, 64, 74, 79, 94, 95, 119, 120)


def _xids(logged: dict[int, int], drain: list[int] = DRAIN) -> list[str]:
    """The Xid counter's samples: every alerted or drained code (0 unless logged), in code
    order, then logged codes that are neither."""
    known = sorted({*ALERTED, *drain})
    codes = known + sorted(set(logged) - set(known))
    return [f'gpufleet_xid_events_total{{code="{c}"}} {logged.get(c, 0)}' for c in codes]


def _per_gpu(metric: str, value: int, buses: list[str] = H100_BUSES) -> list[str]:
    return [f'{metric}{{gpu="{bus}"}} {value}' for bus in buses]


def test_textfile_has_the_metrics_of_a_recorded_node(tmp_path: Path) -> None:
    out = tmp_path / "textfile/gpufleet_node_health.prom"
    out.parent.mkdir()
    cfg = _config(tmp_path, kernel_log=[_tool(tmp_path, "dmesg-48", XID_LOG)])
    run = _run(cfg, "--textfile", str(out))
    assert run.returncode == 1, run.stdout + run.stderr  # Xid 48 and 63: not healthy
    report = json.loads((tmp_path / "state/last.json").read_text())
    text = out.read_text()
    assert _samples(text) == [
        "gpufleet_gpu_count 8",
        *_per_gpu("gpufleet_gpu_ecc_uncorrectable_volatile", 0),
        "gpufleet_gpu_expected_count 8",
        *_per_gpu("gpufleet_gpu_pcie_link_gen_current", 5),
        *_per_gpu("gpufleet_gpu_pcie_link_gen_max", 5),
        *_per_gpu("gpufleet_gpu_pcie_link_width_current", 16),
        *_per_gpu("gpufleet_gpu_pcie_link_width_max", 16),
        *_per_gpu("gpufleet_gpu_row_remap_failure", 0),
        *_per_gpu("gpufleet_gpu_row_remap_pending", 0),
        'gpufleet_node_health_check_ok{check="disk"} 1',
        'gpufleet_node_health_check_ok{check="gpus"} 1',
        'gpufleet_node_health_check_ok{check="versions"} 1',
        'gpufleet_node_health_check_ok{check="xid"} 0',
        f"gpufleet_node_health_duration_seconds {report['seconds']:g}",
        f"gpufleet_node_health_last_run_timestamp_seconds {report['time']}",
        "gpufleet_node_health_ok 0",
        "gpufleet_version_drift 0",
        *_xids({48: 1, 63: 1, 94: 9}),
    ]
    # The report and the check's own output are what they were without --textfile.
    assert run.stdout.splitlines()[1].startswith("FAIL xid ")
    assert not (out.parent / "gpufleet_node_health.prom.tmp").exists()
    assert out.stat().st_mode & 0o777 == 0o644  # node_exporter reads it as its own user


def test_textfile_is_valid_exposition_format(tmp_path: Path) -> None:
    out = tmp_path / "node.prom"
    run = _run(_config(tmp_path), "--json", f"--textfile={out}")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["healthy"]  # --json still prints the report alone
    families = parse_exposition(out.read_text())
    # The replayed kernel log has no Xid line: the counter is 0 for every code it knows.
    assert {v["type"] for k, v in families.items() if k != "gpufleet_xid_events_total"} == {"gauge"}
    assert families["gpufleet_xid_events_total"]["type"] == "counter"
    assert set(families["gpufleet_xid_events_total"]["samples"].values()) == {0.0}
    assert families["gpufleet_node_health_ok"]["samples"] == {(): 1.0}
    assert families["gpufleet_node_health_ok"]["help"].startswith("1 when every configured")
    # Label values and help text are escaped: a backslash, a quote and a newline survive.
    odd = 'a\\b "c"\nd'
    text = health.exposition(
        [
            ("gpufleet_node_health_check_ok", (("check", odd),), 1),
            ("gpufleet_xid_events_total", (("code", "119"),), 2),
            ("gpufleet_xid_events_total", (("code", "48"),), 3),
        ]
    )
    parsed = parse_exposition(text)
    assert parsed["gpufleet_node_health_check_ok"]["samples"] == {(("check", odd),): 1.0}
    assert parsed["gpufleet_xid_events_total"]["type"] == "counter"
    # Codes in numeric order, and the output is the same for the same samples in any order.
    assert _samples(text)[1:] == [
        'gpufleet_xid_events_total{code="48"} 3',
        'gpufleet_xid_events_total{code="119"} 2',
    ]
    shuffled = health.exposition(
        [
            ("gpufleet_xid_events_total", (("code", "48"),), 3),
            ("gpufleet_xid_events_total", (("code", "119"),), 2),
            ("gpufleet_node_health_check_ok", (("check", odd),), 1),
        ]
    )
    assert shuffled == text


def test_values_nvidia_smi_does_not_print_have_no_series(tmp_path: Path) -> None:
    out = tmp_path / "node.prom"
    cfg = _config(
        tmp_path,
        nvidia_smi=_tool(tmp_path, "smi-remap", REMAP_PENDING),
        gpu_expect={"gpu_count": 1, "ecc_errors": True},
    )
    run = _run(cfg, "--textfile", str(out))
    assert run.returncode == 1  # the pending remap fails the gpus check
    samples = [s for s in _samples(out.read_text()) if s.startswith("gpufleet_gpu")]
    assert samples == [
        "gpufleet_gpu_count 1",
        'gpufleet_gpu_ecc_uncorrectable_volatile{gpu="00000000:10:1C.0"} 0',
        "gpufleet_gpu_expected_count 1",
        'gpufleet_gpu_row_remap_failure{gpu="00000000:10:1C.0"} 0',
        'gpufleet_gpu_row_remap_pending{gpu="00000000:10:1C.0"} 1',
    ]  # no gpufleet_gpu_pcie_*: the 510 recording prints no link values
    # nvidia-smi does not answer: the expected count stays, what it would have said is absent.
    cfg = _config(tmp_path, nvidia_smi=_tool(tmp_path, "smi-broken", None, rc=9))
    _run(cfg, "--textfile", str(out))
    families = parse_exposition(out.read_text())
    assert [n for n in families if n.startswith("gpufleet_gpu")] == ["gpufleet_gpu_expected_count"]
    assert families["gpufleet_node_health_check_ok"]["samples"][(("check", "gpus"),)] == 0
    # A check that is not configured has no series at all.
    _run(_config(tmp_path, gpu_expect={}, xid_drain=[]), "--textfile", str(out))
    families = parse_exposition(out.read_text())
    assert not [n for n in families if n.startswith(("gpufleet_gpu", "gpufleet_xid"))]
    assert set(families["gpufleet_node_health_check_ok"]["samples"]) == {
        (("check", "disk"),),
        (("check", "versions"),),
    }


def test_the_xid_counter_counts_every_code_acknowledged_or_not(tmp_path: Path) -> None:
    out = tmp_path / "node.prom"
    cfg = _config(tmp_path, kernel_log=[_tool(tmp_path, "dmesg-48", XID_LOG)])
    counted = [
        'gpufleet_xid_events_total{code="48"} 1',
        'gpufleet_xid_events_total{code="63"} 1',
        'gpufleet_xid_events_total{code="94"} 9',  # not in the drain list: counted all the same
    ]

    def xid_lines() -> list[str]:
        # The codes that were logged (the zero-valued series are the next test's subject).
        return [
            s
            for s in _samples(out.read_text())
            if "xid" in s and not (s.startswith("gpufleet_xid_events_total") and s.endswith(" 0"))
        ]

    assert _run(cfg, "--textfile", str(out)).returncode == 1
    assert xid_lines() == ['gpufleet_node_health_check_ok{check="xid"} 0', *counted]
    assert _run(cfg, "--ack-xid", "--textfile", str(out)).returncode == 0
    assert _run(cfg, "--textfile", str(out)).returncode == 0
    assert xid_lines() == ['gpufleet_node_health_check_ok{check="xid"} 1', *counted]
    # Whatever the drain list, every code is counted.
    _run(_config(tmp_path, kernel_log=[_tool(tmp_path, "dmesg-48", XID_LOG)], xid_drain=[119]),
         "--textfile", str(out))  # fmt: skip
    assert xid_lines()[1:] == counted


def test_every_alerted_and_drained_xid_code_starts_at_zero(tmp_path: Path) -> None:
    """The first Xid of a code must be an increase Prometheus can see: a series that is born
    at 1 is no increase, and without history the Xid rule would stay quiet."""
    out = tmp_path / "node.prom"
    _run(_config(tmp_path, kernel_log=[_tool(tmp_path, "dmesg-48", XID_LOG)], xid_drain=[154]),
         "--textfile", str(out))  # fmt: skip
    xids = {
        s.split('code="')[1].split('"')[0]: s.rsplit(" ", 1)[1]
        for s in _samples(out.read_text())
        if s.startswith("gpufleet_xid_events_total")
    }
    alerted = [str(c) for c in ALERTED]
    assert {c: xids[c] for c in [*alerted, "154"]} == {
        **dict.fromkeys([*alerted, "154"], "0"),
        "48": "1",
        "63": "1",
        "94": "9",
    }
    assert set(xids) == set(alerted) | {"154"}
    # The codes the alert rules name are the ones the script knows.
    rules = (ROOT / "monitoring/rules/gpu.yml").read_text()
    named = set(re.findall(r'code=~?"([0-9|]+)"', rules))
    assert {c for group in named for c in group.split("|")} == set(alerted)


def test_a_failed_write_leaves_the_previous_file_and_changes_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "node.prom"
    cfg = _config(tmp_path)
    assert _run(cfg, "--textfile", str(out)).returncode == 0
    before = out.read_text()
    # FILE.tmp cannot be written (a directory holds its name, with something in it).
    (tmp_path / "node.prom.tmp").mkdir()
    (tmp_path / "node.prom.tmp/keep").write_text("")
    cfg = _config(tmp_path, kernel_log=[_tool(tmp_path, "dmesg-48", XID_LOG)])
    run = _run(cfg, "--textfile", str(out))
    assert run.returncode == 1, run.stderr  # the verdict of the checks, not of the write
    assert f"cannot write the metrics to {out}" in run.stderr
    assert out.read_text() == before
    assert json.loads((tmp_path / "state/last.json").read_text())["healthy"] is False
    # A failed rename removes the temporary file it wrote.
    target = tmp_path / "a-directory.prom"
    target.mkdir()
    with pytest.raises(OSError):
        health.write_atomically(target, "gpufleet_node_health_ok 1\n")
    assert not (tmp_path / "a-directory.prom.tmp").exists()


def test_fabric_fabricmanager_and_drift_metrics_come_from_what_the_tools_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ibstat = _recording(HW / "ibstat-leptonai-gpud-h100-ib-ndr-eth-ports-down.txt")
    answers: dict[str, tuple[int, str, str]] = {
        "ibstat": (0, ibstat, ""),
        # constructed: `systemctl is-active` prints the state and exits 3 when not active
        "systemctl": (3, "inactive\n", ""),
        # constructed in the form of gpufleet-version-drift's lines (exit 1: drift found)
        "drift": (1, "DRIFT slurmd: installed 22.05.8-4, locked 22.05.8-4+deb12u3 (x.lock)\n"
                     "NOT HELD munge: 0.5.15-2 is installed but not held (x.lock)\n", ""),
    }  # fmt: skip
    monkeypatch.setattr(health, "run", lambda argv, timeout: answers[argv[0]])

    def metrics(**over: Any) -> list[str]:
        cfg = {"node": "gpu9", "timeout_s": 1, "fabric_ports": 8, "version_drift": "drift",
               "fabric_link_layer": "InfiniBand", "fabric_manager_unit": "nvidia-fabricmanager",
               **over}  # fmt: skip
        seen: dict[str, Any] = {}
        rep = health.report(cfg, tmp_path, seen)
        text = health.exposition(health.samples_of(cfg, rep, seen))
        parse_exposition(text)
        return [s for s in _samples(text) if not s.startswith("gpufleet_node_health")]

    assert metrics() == [
        "gpufleet_fabric_ports_active 8",
        "gpufleet_fabric_ports_expected 8",
        "gpufleet_fabricmanager_active 0",
        "gpufleet_version_drift 2",
    ]
    # RoCE on the same node: one of its four Ethernet ports is up.
    assert metrics(fabric_link_layer="Ethernet", fabric_ports=4)[:2] == [
        "gpufleet_fabric_ports_active 1",
        "gpufleet_fabric_ports_expected 4",
    ]
    # Tools that gave no answer: the expectation stays, the reading is absent (not 0).
    answers["ibstat"] = (127, "", "ibstat: not found")
    answers["systemctl"] = (124, "", "no answer within 1 s")
    answers["drift"] = (2, "", "ERROR cannot read lock file x.lock")
    assert metrics() == ["gpufleet_fabric_ports_expected 8"]
    answers["systemctl"] = (0, "active\n", "")
    answers["drift"] = (0, "OK 12 package(s) as locked\n", "")
    assert metrics()[1:] == ["gpufleet_fabricmanager_active 1", "gpufleet_version_drift 0"]


def test_textfile_arguments(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    for bad in (["--textfile"], ["--textfile", "--json"], ["--textfile="],
                ["--textfile", "a.prom", "--textfile", "b.prom"]):  # fmt: skip
        run = _run(cfg, *bad)
        assert run.returncode == 2 and "--textfile FILE" in run.stderr, bad
    assert not list(tmp_path.glob("*.prom"))
    # --ack-xid builds no report, so it writes no metrics.
    assert _run(cfg, "--ack-xid", "--textfile", str(tmp_path / "a.prom")).returncode == 0
    assert not (tmp_path / "a.prom").exists()


def test_the_health_check_wrapper_passes_the_textfile_when_set() -> None:
    template = ROLES / "slurm/templates/usr/local/sbin/gpufleet-slurm-healthcheck.j2"
    off = render_file({"slurm_health_textfile": ""}, template)
    assert off.startswith("#!/bin/sh\n")
    assert off.splitlines()[-1] == "exec /usr/local/sbin/gpufleet-node-health --slurm"
    on = render_file({"slurm_health_textfile": "/var/lib/node exporter/gpufleet.prom"}, template)
    assert on.splitlines()[-1] == (
        "exec /usr/local/sbin/gpufleet-node-health --slurm"
        " --textfile '/var/lib/node exporter/gpufleet.prom'"
    )
    rule = task_named(
        ROLES / "slurm/tasks/preflight.yml",
        "Require the health metrics file to be an absolute path ending in .prom, or empty",
    )["ansible.builtin.assert"]["that"]
    textfile, interval = rule
    for value, ok in [("", True), ("/var/lib/prometheus/node-exporter/gpufleet.prom", True),
                      ("gpufleet.prom", False), ("/var/lib/gpufleet.txt", False)]:  # fmt: skip
        assert render({"slurm_health_textfile": value}, textfile) is ok, value
    for seconds, ok in [(60, True), (5, True), (4, False), ("60", False)]:
        assert render({"slurm_health_metrics_interval": seconds}, interval) is ok, seconds


def test_rails_check_names_the_rail_that_is_down_and_writes_one_series_per_rail(
    tmp_path: Path,
) -> None:
    """Constructed: a /sys/class/net with eth1 up, eth2 down and eth3 missing."""
    net = tmp_path / "net"
    for dev, state in (("eth1", "up"), ("eth2", "down")):
        (net / dev).mkdir(parents=True)
        (net / dev / "operstate").write_text(f"{state}\n")
    out = tmp_path / "node.prom"
    cfg = _config(tmp_path, rail_netdevs=["eth1", "eth2"], sys_class_net=str(net))
    run = _run(cfg, "--textfile", str(out))
    assert run.returncode == 1
    report = json.loads((tmp_path / "state/last.json").read_text())
    assert report["checks"]["rails"]["problems"] == ["rail 1 (eth2) is down"]
    rails = [s for s in _samples(out.read_text()) if s.startswith("gpufleet_fabric_rail_up")]
    assert rails == [
        'gpufleet_fabric_rail_up{device="eth1",rail="0"} 1',
        'gpufleet_fabric_rail_up{device="eth2",rail="1"} 0',
    ]
    assert 'gpufleet_node_health_check_ok{check="rails"} 0' in _samples(out.read_text())

    (net / "eth2" / "operstate").write_text("up\n")
    assert _run(cfg, "--textfile", str(out)).returncode == 0
    missing = _config(tmp_path, rail_netdevs=["eth1", "eth3"], sys_class_net=str(net))
    assert _run(missing).returncode == 1
    report = json.loads((tmp_path / "state/last.json").read_text())
    assert report["checks"]["rails"]["problems"] == ["rail 1 (eth3) is missing"]
    # Not configured: no check, no series.
    _run(_config(tmp_path), "--textfile", str(out))
    assert "gpufleet_fabric_rail_up" not in out.read_text()
    assert "rails" not in json.loads((tmp_path / "state/last.json").read_text())["checks"]


def test_a_run_beside_another_keeps_its_report_and_its_verdict(tmp_path: Path) -> None:
    """A job's epilog, the next job's prolog and the metrics timer run at once on a busy node
    (the verification phase's short jobs): each writes its report through a temporary file of
    its own. Another run's temporary file in the way (here a directory under the name a shared
    temporary file would have) must not make this run fail, which would drain the node with
    "Epilog error"; a report that cannot be kept at all is logged and changes nothing else."""
    state = tmp_path / "state"
    (state / "last.json.tmp").mkdir(parents=True)
    (state / "last.json.tmp/keep").write_text("")
    run = _run(_config(tmp_path), "--epilog")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert json.loads((state / "last.json").read_text())["mode"] == "epilog"
    (state / "last-epilog.json").unlink()
    (state / "last-epilog.json").mkdir()  # cannot be replaced by a file
    (state / "last-epilog.json/keep").write_text("")
    run = _run(_config(tmp_path), "--epilog")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert f"cannot keep the report in {state / 'last-epilog.json'}" in run.stderr
    assert not list(state.glob("*.json.*.tmp"))
