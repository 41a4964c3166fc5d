"""library/gpufleet_fabric_facts.py: its copy of the node-side code, its gathering, and one
real run through Ansible (check mode) with the recorded ibstat on PATH.

The sysfs trees below are constructed (named so): no recording of /sys exists here. The
tools the module runs are replaced by fakes that print recordings, or are missing.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from test_fabric_data import IBDEV_DGX, IBSTAT_IB, REPO, recorded, recording_path

from gpufleet.fabric import embed

MODULE_PATH = REPO / "library" / "gpufleet_fabric_facts.py"
_spec = importlib.util.spec_from_file_location("gpufleet_fabric_facts", MODULE_PATH)
assert _spec and _spec.loader
module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(module)

PARAMS = {
    "fabric_type": "infiniband",
    "rails": 8,
    "netdevs": [],
    "exclude_netdevs": [],
    "rate": 400,
    "pcie_width": 0,
    "pcie_gen": 0,
    "topology": False,
    "node_name": "gpu1",
    "ibstat": "ibstat",
    "ibdev2netdev": "ibdev2netdev",
    "ibv_devinfo": "ibv_devinfo",
    "nvidia_smi": "nvidia-smi",
}


def test_module_carries_node_py_verbatim():
    node = embed.node_source()
    text = MODULE_PATH.read_text()
    assert embed.embedded(text, node) == text, f"run: python -m gpufleet.fabric.embed {MODULE_PATH}"
    assert embed.main(["--check", str(MODULE_PATH)]) == 0
    # And the copy is a real one: changing node.py's block would change the module.
    changed = node.replace("def parse_ibstat(", "def parse_ibstat_(")
    assert embed.embedded(text, changed) != text


def test_documentation_options_equal_the_argument_spec():
    doc = yaml.safe_load(module.DOCUMENTATION)
    tree = ast.parse(MODULE_PATH.read_text())
    spec_keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "argument_spec":
            assert isinstance(node.value, ast.Dict)
            spec_keys = {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    assert spec_keys == set(doc["options"]) == set(PARAMS)
    yaml.safe_load(module.RETURN)


def _tools(outputs: dict[str, tuple[int, str, str]]):
    """A fake `find` that knows the tools in `outputs` and a fake `run` that answers them."""

    def find(name: str) -> str | None:
        return f"/usr/bin/{name}" if Path(name).name in outputs else None

    def run(argv: list[str]) -> tuple[int, str, str]:
        return outputs[Path(argv[0]).name]

    return run, find


def test_collect_with_the_recorded_ibstat(tmp_path):
    run, find = _tools({"ibstat": (0, recorded(IBSTAT_IB), "")})
    result = module.collect(PARAMS, run, find, root=str(tmp_path))
    fabric = result["ansible_facts"]["gpufleet_fabric"]
    assert result["changed"] is False
    assert result["failures"] == []
    assert [r["hca"] for r in fabric["rails"]] == [f"mlx5_{i}" for i in (0, 1, 4, 5, 6, 7, 8, 9)]
    assert fabric["tools"] == {
        "ibstat": "ok",
        "ibdev2netdev": "not found (ibdev2netdev; package: NVIDIA OFED/DOCA (mlnx-tools);"
        " sysfs is read instead)",
        "ibv_devinfo": "not found (ibv_devinfo; package: ibverbs-utils)",
    }
    # The facts survive JSON (Ansible returns them so).
    assert json.loads(json.dumps(result))["checks"][0]["status"] == "pass"


def test_collect_without_any_tool_fails_with_reasons_not_a_crash(tmp_path):
    run, find = _tools({})
    result = module.collect(PARAMS, run, find, root=str(tmp_path))
    assert result["failures"] == [
        "gpu1: no port state, rate or link layer: ibstat not found (ibstat; package:"
        " infiniband-diags), ibv_devinfo not found (ibv_devinfo; package: ibverbs-utils)",
        "gpu1: rail selection: 0 candidate InfiniBand ports (none) for 8 rails; excluded: none."
        " Name the rail interfaces in the profile (fabric_netdevs) or pass the front-end/storage"
        " interfaces to exclude",
    ]
    assert result["ansible_facts"]["gpufleet_fabric"]["rails"] == []


def test_collect_failed_and_unparsable_tools(tmp_path):
    run, find = _tools(
        {
            "ibstat": (255, "", "ibpanic: [1234] main: stat of IB device 'mlx5_0' failed"),
            "ibv_devinfo": (0, "garbage that is not ibv_devinfo\n", ""),
        }
    )
    result = module.collect(PARAMS, run, find, root=str(tmp_path))
    tools = result["ansible_facts"]["gpufleet_fabric"]["tools"]
    assert tools["ibstat"] == (
        "failed (rc 255): ibpanic: [1234] main: stat of IB device 'mlx5_0' failed"
    )
    assert tools["ibv_devinfo"] == (
        "unparsable: ibv_devinfo: line 1: expected 'hca_id:' first:"
        " 'garbage that is not ibv_devinfo'"
    )
    assert result["failures"][0].startswith("gpu1: no port state, rate or link layer")


def _constructed_sysfs(root: Path, hcas: dict[str, tuple[str, str, int, str]]) -> None:
    """constructed: /sys/class/infiniband/HCA/device -> the PCI function, with its netdev
    (operstate) and link width/speed, as the kernel lays them out."""
    for hca, (address, netdev, width, state) in hcas.items():
        pci = root / "devices" / "pci0000:00" / address
        (pci / "net" / netdev).mkdir(parents=True)
        (pci / "net" / netdev / "operstate").write_text(state + "\n")
        (pci / "net" / netdev / "dev_port").write_text("0\n")
        (pci / "current_link_width").write_text(f"{width}\n")
        (pci / "current_link_speed").write_text("32.0 GT/s PCIe\n")
        (pci / "max_link_width").write_text("16\n")
        ib = root / "class" / "infiniband" / hca
        (ib / "ports" / "1").mkdir(parents=True)
        os.symlink(pci, ib / "device")


def test_collect_reads_netdevs_and_pcie_from_sysfs(tmp_path):
    # constructed: sysfs for the eight rails of the recorded IB node, PCI addresses in the
    # reverse of the names' order (to show the order follows the PCI address), mlx5_7 at x8.
    rails = [f"mlx5_{i}" for i in (0, 1, 4, 5, 6, 7, 8, 9)]
    tree = {
        hca: (f"0000:{0xF0 - 16 * n:02x}:00.0", f"ibp{0xF0 - 16 * n}s0", 16, "up")
        for n, hca in enumerate(rails)
    }
    tree["mlx5_7"] = (*tree["mlx5_7"][:2], 8, "up")
    # The Ethernet LAG device of the recording, with its first port's netdev.
    tree["mlx5_bond_0"] = ("0000:05:00.0", "enp5s0f0np0", 16, "up")
    _constructed_sysfs(tmp_path, tree)
    run, find = _tools({"ibstat": (0, recorded(IBSTAT_IB), "")})
    params = {**PARAMS, "pcie_width": 16, "pcie_gen": 5}
    result = module.collect(params, run, find, root=str(tmp_path))
    fabric = result["ansible_facts"]["gpufleet_fabric"]
    assert fabric["tools"]["sysfs"] == "ok (netdevs read from sysfs)"
    assert fabric["order"] == "PCI address"
    assert [r["hca"] for r in fabric["rails"]] == list(reversed(rails))
    port = fabric["ports"]["mlx5_0:1"]
    assert (port["netdev"], port["netdev_state"], port["pci_address"]) == (
        "ibp240s0",
        "Up",
        "0000:f0:00.0",
    )
    assert port["pcie"] == {"width": 16, "speed": "32.0 GT/s PCIe", "max_width": 16}
    assert result["failures"] == ["gpu1 rail 2 mlx5_7:1: PCIe link width 8, expected 16"]
    assert port["sources"] == ["ibstat", "sysfs"]
    # constructed: a ninth device in sysfs that ibstat does not list.
    _constructed_sysfs(tmp_path, {"mlx5_12": ("0000:06:00.0", "ibp6s0", 16, "up")})
    again = module.collect(params, run, find, root=str(tmp_path))
    assert again["failures"][0] == (
        "gpu1: tools disagree: mlx5_12:1 is listed by sysfs but not by ibstat"
    )


def test_collect_prefers_ibdev2netdev_and_honours_the_plans_netdevs(tmp_path):
    # The recorded DGX ibdev2netdev with the plan naming two rails; no ibstat, so the state
    # comes from ibdev2netdev's (Up) and the rate cannot be confirmed.
    run, find = _tools({"ibdev2netdev": (0, recorded(IBDEV_DGX), "")})
    params = {**PARAMS, "rails": 2, "netdevs": ["ibp64s0", "ibp24s0"]}
    result = module.collect(params, run, find, root=str(tmp_path))
    fabric = result["ansible_facts"]["gpufleet_fabric"]
    assert [(r["rail"], r["hca"]) for r in fabric["rails"]] == [(0, "mlx5_3"), (1, "mlx5_0")]
    assert result["failures"] == [
        "gpu1: no port state, rate or link layer: ibstat not found (ibstat; package:"
        " infiniband-diags), ibv_devinfo not found (ibv_devinfo; package: ibverbs-utils)",
        "gpu1 rail 0 mlx5_3:1: state not read, expected Active/LinkUp",
        "gpu1 rail 0 mlx5_3:1: rate not read, expected 400",
        "gpu1 rail 0 mlx5_3:1: link layer not read, expected InfiniBand",
        "gpu1 rail 1 mlx5_0:1: state not read, expected Active/LinkUp",
        "gpu1 rail 1 mlx5_0:1: rate not read, expected 400",
        "gpu1 rail 1 mlx5_0:1: link layer not read, expected InfiniBand",
    ]


def test_module_runs_under_ansible_in_check_mode(tmp_path):
    # The module as Ansible ships it (alone) to a node: here localhost, with an `ibstat` on
    # PATH that prints the recorded healthy IB output.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ibstat").write_text(
        f"#!/bin/sh\ntail -n +2 '{recording_path(IBSTAT_IB)}'\n", encoding="utf-8"
    )
    (fake / "ibstat").chmod(0o755)
    ansible = shutil.which("ansible", path=str(Path(sys.executable).parent))
    assert ansible, "ansible is installed with the project (pyproject dependencies)"
    args = (
        "fabric_type=infiniband rails=8 rate=400 node_name=gpu1"
        f" ibstat={fake / 'ibstat'} ibdev2netdev=/nonexistent/ibdev2netdev"
        " ibv_devinfo=/nonexistent/ibv_devinfo"
    )
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_LIBRARY": str(REPO / "library"),
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_NOCOLOR": "1",
    }
    run = subprocess.run(
        [
            ansible,
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "--check",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-m",
            "gpufleet_fabric_facts",
            "-a",
            args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # The json callback's document, then the timer callback's recap lines (ansible.cfg).
    out, _ = json.JSONDecoder().raw_decode(run.stdout[run.stdout.index("{") :])
    result = out["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert result["changed"] is False
    fabric = result["ansible_facts"]["gpufleet_fabric"]
    assert [r["hca"] for r in fabric["rails"]] == [f"mlx5_{i}" for i in (0, 1, 4, 5, 6, 7, 8, 9)]
    assert fabric["tools"]["ibdev2netdev"] == (
        "not found (/nonexistent/ibdev2netdev; package: NVIDIA OFED/DOCA (mlnx-tools);"
        " sysfs is read instead)"
    )
    assert result["failures"] == []
    assert {c["status"] for c in result["checks"]} == {"pass"}


def test_collect_reads_the_pci_tree_and_cpu_on_gpu_nodes(tmp_path):
    # constructed: the HGX pair of test_fabric_topo in sysfs and an x86 /proc/cpuinfo; the
    # recorded ibstat as the tool; nvidia-smi missing (its failure is a line, not a crash).
    from test_fabric_topo import constructed_hgx

    constructed_hgx(tmp_path / "sys")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n\n"
    )
    run, find = _tools({"ibstat": (0, recorded(IBSTAT_IB), "")})
    params = {**PARAMS, "topology": True}
    result = module.collect(
        params, run, find, root=str(tmp_path / "sys"), proc=str(tmp_path / "proc")
    )
    fabric = result["ansible_facts"]["gpufleet_fabric"]
    assert [(d["address"], d["kind"]) for d in fabric["pci"]["devices"]] == [
        ("0000:18:00.0", "nic"),
        ("0000:19:00.0", "gpu"),
    ]
    assert fabric["cpu"] == {"vendor": "AuthenticAMD", "family": 25, "model": 17,
                             "arch": os.uname()[4]}  # fmt: skip
    assert fabric["tools"]["nvidia-smi"].startswith("not found")
    json.dumps(result)  # the facts survive JSON
    # Without topology (nodes without GPUs) nothing of it is read.
    plain = module.collect(PARAMS, run, find, root=str(tmp_path / "sys"))
    assert plain["ansible_facts"]["gpufleet_fabric"]["pci"] is None
