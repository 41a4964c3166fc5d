"""The generated inventory: ansible-inventory accepts it, bytes are stable, no secrets."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufleet.inventory import (
    GROUP_VARS_FILE,
    HOSTS_FILE,
    render_group_vars,
    render_inventory,
    write_inventory,
)
from gpufleet.model import cluster_from_data, load_cluster
from gpufleet.model.build import resolve_slurm
from gpufleet.spec.checks import parse_spec

ROOT = Path(__file__).resolve().parents[2]
SITES = ["example-ib", "example-roce", "lab"]
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"


def _render(site: str) -> dict[str, str]:
    return render_inventory(load_cluster(ROOT / "inventories" / site))


@pytest.mark.parametrize("site", SITES)
def test_committed_inventory_is_current_and_byte_stable(site: str) -> None:
    first = _render(site)
    second = _render(site)
    assert first == second
    assert sorted(first) == sorted([HOSTS_FILE, GROUP_VARS_FILE])
    for rel, text in first.items():
        committed = (ROOT / "inventories" / site / rel).read_bytes()
        assert committed == text.encode("utf-8"), f"{site}/{rel}: run gpufleet inventory --write"


def test_node_order_does_not_change_the_bytes() -> None:
    path = ROOT / "inventories/example-ib/cluster.yaml"
    data = yaml.safe_load(path.read_text())
    reference = render_inventory(cluster_from_data(data))
    random.Random(3).shuffle(data["nodes"])
    assert render_inventory(cluster_from_data(data)) == reference


def _site_folder_with_reports(site: str, tmp_path: Path) -> Path:
    """A copy of the site's folder as the controller has it after a verification run: the
    spec beside hosts.yml and the phase's reports under reports/ (small constructed files of
    the kinds it writes: JSON, JUnit XML, HTML, Prometheus text, a log)."""
    folder = tmp_path / site
    shutil.copytree(ROOT / "inventories" / site, folder, ignore=shutil.ignore_patterns("reports"))
    latest = folder / "reports" / "verify" / "latest"
    latest.mkdir(parents=True)
    (latest / "report.json").write_text('{"verdict": "PASS", "nodes": {"gpu1": {}}}\n')
    (latest / "junit.xml").write_text(
        '<?xml version="1.0"?>\n<testsuites><testsuite name="verify">'
        "<system-out>PASS: gpu1</system-out></testsuite></testsuites>\n"
    )
    (latest / "report.html").write_text("<html><body><h1>PASS</h1></body></html>\n")
    (latest / "gpufleet_verify.prom").write_text('gpufleet_verify_node_passed{node="gpu1"} 1\n')
    (latest / "progress.log").write_text("round 1: gpu1 passed\n")
    return folder


# Both ways an operator names the inventory: the generated hosts.yml, or the site's folder
# (ansible.cfg's [inventory] ignore_patterns keep the spec and the reports out of it).
@pytest.mark.parametrize("source", ["hosts.yml", "site folder"])
@pytest.mark.parametrize("site", SITES)
def test_ansible_inventory_accepts_it(site: str, source: str, tmp_path: Path) -> None:
    hosts = (
        ROOT / "inventories" / site / HOSTS_FILE
        if source == "hosts.yml"
        else _site_folder_with_reports(site, tmp_path)
    )
    run = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(hosts), "--list"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    assert "WARNING" not in run.stderr.upper(), run.stderr
    data = json.loads(run.stdout)
    plan = load_cluster(ROOT / "inventories" / site)
    for group, role in (
        ("gpu_nodes", "gpu"),
        ("head_nodes", "head"),
        ("lb_nodes", "lb"),
        ("monitoring_nodes", "monitoring"),
    ):
        expected = sorted(n.name for n in plan.nodes if n.role == role)
        assert sorted(data.get(group, {}).get("hosts", [])) == expected
    hostvars = data["_meta"]["hostvars"]
    assert sorted(hostvars) == sorted(n.name for n in plan.nodes)
    for node in plan.nodes:
        hv = hostvars[node.name]
        assert hv["ansible_host"] == str(node.frontend.address)
        assert hv["gpufleet_bmc"]["address"] == str(node.oob.address)
        assert [r["address"] for r in hv["gpufleet_fabric_rails"]] == [
            str(r.address) for r in node.rails
        ]
        # group_vars/all next to hosts.yml reach every host
        assert hv["gpufleet_site"] == site
        assert hv["gpufleet_versions"]["fabric_manager"] == plan.versions.fabric_manager


def test_bmc_password_never_leaves_the_reference(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "inventories/lab/cluster.yaml").read_text())
    data["defaults"]["bmc"]["password"] = {"env": "SITE_BMC_PW"}
    files = render_inventory(cluster_from_data(data))
    hosts = yaml.safe_load(files[HOSTS_FILE])
    gpu1 = hosts["all"]["children"]["gpu_nodes"]["hosts"]["gpu1"]
    assert gpu1["gpufleet_bmc"]["password_ref"] == {"env": "SITE_BMC_PW"}
    assert "password:" not in files[HOSTS_FILE]


def test_write_inventory_only_rewrites_changes(tmp_path: Path) -> None:
    files = _render("lab")
    first = write_inventory(tmp_path, files)
    assert [changed for _, changed in first] == [True, True]
    second = write_inventory(tmp_path, files)
    assert [changed for _, changed in second] == [False, False]
    assert (tmp_path / HOSTS_FILE).read_text() == files[HOSTS_FILE]


# --- gpufleet_slurm: the spec's `slurm:` section, resolved -------------------------------------

MINIMAL = ROOT / "tests/data/specs/minimal-ib.yaml"
# Two more head nodes for the minimal spec, head03 first: the default takes names in order.
MORE_HEADS = [
    {
        "name": f"head0{i}",
        "role": "head",
        "bmc": {"url": f"https://10.0.0.1{i}/redfish/v1/Systems/1"},
        "boot_mac": f"02:00:00:00:00:1{i}",
        "rack": "r1",
        "position": 30 + i,
    }
    for i in (3, 2)
]


def _slurm_vars(data: dict[str, Any]) -> dict[str, Any]:
    files = render_inventory(cluster_from_data(data))
    slurm: dict[str, Any] = yaml.safe_load(files[GROUP_VARS_FILE])["gpufleet_slurm"]
    return slurm


def _minimal(**slurm: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MINIMAL.read_text())
    if slurm:
        data["slurm"] = slurm
    return data


def test_slurm_defaults_without_a_section() -> None:
    assert _slurm_vars(_minimal()) == {
        "controllers": ["head01"],
        "accounting": "head01",
        "partitions": [
            {
                "name": "gpu",
                "nodes": "ALL",
                "default": True,
                "exclusive": True,
                "max_time": "INFINITE",
            },
        ],
        "gres": {"hgx-h100-8gpu-ib": {"type": "h100", "count": 8}},
    }


def test_slurm_controllers_default_to_the_first_two_heads_by_name() -> None:
    data = _minimal()
    data["nodes"] = MORE_HEADS + data["nodes"]
    slurm = _slurm_vars(data)
    assert slurm["controllers"] == ["head01", "head02"]
    assert slurm["accounting"] == "head01"


def test_slurm_controllers_from_the_spec_keep_their_order() -> None:
    data = _minimal(controllers=["head03", "head01"])
    data["nodes"] = MORE_HEADS + data["nodes"]
    slurm = _slurm_vars(data)
    assert slurm["controllers"] == ["head03", "head01"]
    assert slurm["accounting"] == "head03"


def test_slurm_partitions_are_carried() -> None:
    data = _minimal(
        partitions=[
            {"name": "train", "nodes": "ALL", "default": True},
            {
                "name": "debug",
                "nodes": ["gpu002", "gpu001"],
                "exclusive": False,
                "max_time": "1:00:00",
            },
        ]
    )
    assert _slurm_vars(data)["partitions"] == [
        {
            "name": "train",
            "nodes": "ALL",
            "default": True,
            "exclusive": True,
            "max_time": "INFINITE",
        },
        {
            "name": "debug",
            "nodes": ["gpu001", "gpu002"],
            "default": False,
            "exclusive": False,
            "max_time": "1:00:00",
        },
    ]


@pytest.mark.parametrize(
    ("gres", "expected"),
    # An untyped gpu:8 is typed after the profile's model (H100-SXM5-80GB).
    [("gpu:h100:8", {"type": "h100", "count": 8}), ("gpu:8", {"type": "h100", "count": 8})],
)
def test_slurm_gres_from_the_spec(gres: str, expected: dict[str, Any]) -> None:
    slurm = _slurm_vars(_minimal(gres={"hgx-h100-8gpu-ib": gres}))
    assert slurm["gres"] == {"hgx-h100-8gpu-ib": expected}


def test_slurm_gres_derived_from_each_gpu_profile() -> None:
    data = _minimal()
    data["profiles"] = {
        "a100-box": {
            "gpu_count": 4,
            "gpu_model": "A100-SXM4-80GB",
            "fabric_nics": 8,
            "fabric_link": "infiniband",
        },
    }
    data["nodes"][-1]["profile"] = "a100-box"
    slurm = _slurm_vars(data)
    # by profile name; the head node's cpu-server (no GPUs, not a GPU node) is absent
    assert list(slurm["gres"].items()) == [
        ("a100-box", {"type": "a100", "count": 4}),
        ("hgx-h100-8gpu-ib", {"type": "h100", "count": 8}),
    ]


def test_slurm_gres_leaves_out_gpu_nodes_without_gpus() -> None:
    # The lab's GPU nodes are containers whose profile has no GPU.
    assert (
        _slurm_vars(yaml.safe_load((ROOT / "inventories/lab/cluster.yaml").read_text()))["gres"]
        == {}
    )


def test_slurm_without_head_nodes_has_no_controller() -> None:
    # A spec without head nodes never becomes a Cluster ("no head node"); the resolution
    # itself still gives an empty list and no accounting host rather than failing.
    data = _minimal()
    cluster = cluster_from_data(data)
    spec = parse_spec(data)
    slurm = resolve_slurm(spec, [n for n in cluster.nodes if n.role != "head"])
    assert slurm.controllers == () and slurm.accounting is None
    text = render_group_vars(dataclasses.replace(cluster, slurm=slurm))
    assert "  controllers: []\n  accounting: null\n" in text
    assert yaml.safe_load(text)["gpufleet_slurm"]["controllers"] == []


def test_slurm_section_is_ordered() -> None:
    text = _render("example-ib")[GROUP_VARS_FILE]
    block = text[text.index("gpufleet_slurm:\n") : text.index("gpufleet_monitoring:\n")]
    assert block == (
        "gpufleet_slurm:\n"
        "  controllers:\n"
        '    - "head01"\n'
        '    - "head02"\n'
        '  accounting: "head01"\n'
        "  partitions:\n"
        '    - name: "gpu"\n'
        '      nodes: "ALL"\n'
        "      default: true\n"
        "      exclusive: true\n"
        '      max_time: "INFINITE"\n'
        "  gres:\n"
        "    hgx-h100-8gpu-ib:\n"
        '      type: "h100"\n'
        "      count: 8\n"
    )


# --- gpufleet_monitoring: the spec's `monitoring:` section, resolved ---------------------------


def test_monitoring_section_with_defaults_and_servers() -> None:
    text = _render("example-ib")[GROUP_VARS_FILE]
    block = text[text.index("gpufleet_monitoring:\n") : text.index("gpufleet_serving:\n")]
    assert block == (
        "gpufleet_monitoring:\n"
        "  servers:\n"
        '    - "mon01"\n'
        '  scrape_interval: "30s"\n'
        '  evaluation_interval: "30s"\n'
        '  retention_time: "30d"\n'
        "  retention_size: null\n"
    )


def test_monitoring_versions_default_to_debian_12_packages() -> None:
    versions = yaml.safe_load(_render("example-ib")[GROUP_VARS_FILE])["gpufleet_versions"]
    assert versions["prometheus"] == "2.42.0+ds-5+deb12u1"
    assert versions["alertmanager"] == "0.25.0-1+b4"
    assert versions["node_exporter"] == "1.5.0-1+b6"


def test_monitoring_section_from_the_spec_and_no_servers_without_monitoring_nodes() -> None:
    data = _minimal()
    data["monitoring"] = {"scrape_interval": "15s", "retention_size": "500GB"}
    cluster = cluster_from_data(data)
    m = yaml.safe_load(render_group_vars(cluster))["gpufleet_monitoring"]
    assert m["scrape_interval"] == "15s" and m["evaluation_interval"] == "30s"
    assert m["retention_size"] == "500GB"
    assert m["servers"] == sorted(n.name for n in cluster.nodes if n.role == "monitoring")


# --- gpufleet_serving: the spec's `serving:` section, resolved ---------------------------------


def test_serving_section_is_the_last_key_with_models_expanded() -> None:
    text = _render("example-ib")[GROUP_VARS_FILE]
    serving = yaml.safe_load(text)["gpufleet_serving"]
    assert text.rstrip().splitlines()[-1].startswith("      port: ")  # last: models[-1].port
    gpus = sorted(
        h
        for h, v in yaml.safe_load(_render("example-ib")[HOSTS_FILE])["all"]["children"][
            "gpu_nodes"
        ]["hosts"].items()
    )
    assert serving == {
        "vip": "inference",
        "port": 443,
        "balancers": ["lb01", "lb02"],
        "preempt": False,
        "affinity": "least-connections",
        "rate_limit": 0,
        "models": [
            {
                "name": "llama-3.1-70b-instruct",
                "path": "/models/llama-3.1-70b-instruct",
                "nodes": gpus,
                "tensor_parallel": 8,
                "port": 8000,
            }
        ],
    }


def test_serving_versions_default_to_debian_12_packages_and_pypi_vllm() -> None:
    versions = yaml.safe_load(_render("example-roce")[GROUP_VARS_FILE])["gpufleet_versions"]
    assert (versions["vllm"], versions["haproxy"], versions["keepalived"]) == (
        "0.6.3.post1",
        "2.6.12-1+deb12u4",
        "1:2.2.7-1+b2",
    )


def test_serving_without_models_has_the_first_vip_and_nothing_to_serve() -> None:
    serving = yaml.safe_load(_render("example-roce")[GROUP_VARS_FILE])["gpufleet_serving"]
    assert serving["models"] == []
