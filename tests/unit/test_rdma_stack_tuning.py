"""rdma_stack's tuning on hardware: /etc/nccl.conf and the RoCE QoS script, rendered from the
rails found on a recorded RoCE H100 node (tpgds-aihub0007: ibdev2netdev and topo -m), through
the role's own task expressions and templates (roles_render), since no RoCE NIC is reachable."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import pytest
from ansible.plugins.loader import add_all_plugin_dirs, init_plugin_loader
from roles_render import ROLES, load_yaml, render, render_file, role_vars, task_named
from test_fabric_data import IBDEV_ROCE, TOPO_ROCE, recorded

from gpufleet.fabric.nccl import render_nccl_conf
from gpufleet.fabric.node import merge_ports, parse_ibdev2netdev, parse_topo_nics, select_rails

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the loader may already be set up by another test module
    init_plugin_loader()
add_all_plugin_dirs(str(ROLES / "rdma_stack"))

ROLE = ROLES / "rdma_stack"
TASKS = ROLE / "tasks" / "tuning.yml"
ROCE = {"traffic_class": 106, "dscp": 26, "pfc_priority": 3, "ecn": True}  # example-roce
NCCL = "2.26.2-1+cuda12.8"


@pytest.fixture(scope="module")
def variables() -> dict:
    ports = merge_ports(ibdev2netdev=parse_ibdev2netdev(recorded(IBDEV_ROCE)))
    topo = parse_topo_nics(recorded(TOPO_ROCE))
    sel = select_rails(ports, fabric_type="roce", rails=8, exclude_netdevs=["bond0"], topo=topo)
    return {
        **role_vars("rdma_stack"),
        "ansible_managed": "managed by gpufleet",
        "ansible_facts": {"gpufleet_fabric": {"rails": sel["rails"], "topology": topo}},
        "rdma_stack_fabric_type": "roce",
        "rdma_stack_nccl_conf": True,
        "rdma_stack_nccl_version": NCCL,
        "rdma_stack_socket_ifname": "bond0",
        "rdma_stack_roce": ROCE,
    }


def test_nccl_conf_task_writes_what_the_fabric_core_renders(variables):
    task = task_named(TASKS, "Write /etc/nccl.conf from the discovered rails and GPU-NIC affinity")
    content = render(variables, task["ansible.builtin.copy"]["content"].strip()[3:-3])
    fabric = variables["ansible_facts"]["gpufleet_fabric"]
    body = render_nccl_conf(fabric["rails"], fabric_type="roce", nccl=NCCL,
                            socket_ifname="bond0", roce=ROCE, topo=fabric["topology"])  # fmt: skip
    assert content.startswith("# managed by gpufleet\n")  # ansible_managed, commented once
    assert content.endswith(body)
    for line in ("NCCL_SOCKET_IFNAME==bond0", "NCCL_IB_TC=106"):
        assert line in content.splitlines()
    # NCCL 2.26 picks the RoCE v2 GID itself: a comment says so, no setting
    assert not any(ln.startswith("NCCL_IB_GID_INDEX") for ln in content.splitlines())


def test_qos_script_sets_every_rail_and_guards_optional_writes(variables, tmp_path: Path):
    block = task_named(TASKS, "RoCE lossless class, applied at every boot")
    qos = render(variables, block["vars"]["__rdma_stack_qos"].strip()[3:-3])
    script = render_file(
        {**variables, "__rdma_stack_qos": qos},
        ROLE / "templates/usr/local/sbin/gpufleet-roce-qos.j2",
    )
    lines = script.splitlines()
    assert lines[0] == "#!/bin/sh" and "set -eu" in lines
    rails = variables["ansible_facts"]["gpufleet_fabric"]["rails"]
    for rail in rails:
        dev, hca = rail["netdev"], rail["hca"]
        assert (
            f"dcb pfc set dev {dev} prio-pfc 0:off 1:off 2:off 3:on 4:off 5:off 6:off 7:off"
            in lines
        )
        assert f"dcb app replace dev {dev} dscp-prio 26:3 48:6" in lines
        assert f"mkdir -p /sys/kernel/config/rdma_cm/{hca}" in lines
        assert f"echo 106 > /sys/kernel/config/rdma_cm/{hca}/ports/1/default_roce_tos" in lines
    guarded = [ln for ln in lines if ln.startswith("if [ -e ")]
    assert guarded and all(ln.endswith("; fi") for ln in guarded)
    path = tmp_path / "qos.sh"
    path.write_text(script)
    subprocess.run(["sh", "-n", str(path)], check=True)  # the shell parses it


def test_unit_and_gating(variables):
    unit = render_file(
        variables, ROLE / "templates/etc/systemd/system/gpufleet-roce-qos.service.j2"
    )
    assert "ExecStart=/usr/local/sbin/gpufleet-roce-qos" in unit.splitlines()
    # Written only from rails found on hardware: validate.yml (hardware checks) includes it
    # when there are rails to find, and only RoCE gets the QoS.
    main = {t["name"]: t for t in load_yaml(ROLE / "tasks" / "main.yml")}
    assert main["Validate on hardware"]["when"] == "rdma_stack_hardware_checks"
    include = task_named(
        ROLE / "tasks" / "validate.yml", "NCCL settings and RoCE QoS from the discovered rails"
    )
    assert include["when"] == "rdma_stack_rails > 0"
    block = task_named(TASKS, "RoCE lossless class, applied at every boot")
    assert block["when"] == "rdma_stack_fabric_type == 'roce'"


# --- the NCCL topology file (flat, virtualised PCI trees) ---------------------------------------


def topo_variables(variables: dict, pci: dict | None, mode: str = "auto") -> dict:
    cpu = {"arch": "x86_64", "vendor": "GenuineIntel", "family": 6, "model": 143}
    fabric = {**variables["ansible_facts"]["gpufleet_fabric"], "pci": pci, "cpu": cpu}
    return {**variables, "ansible_facts": {"gpufleet_fabric": fabric},
            "rdma_stack_nccl_topo_file": mode}  # fmt: skip


def topo_step_runs(v: dict) -> bool:
    block = task_named(TASKS, "NCCL topology file where NCCL cannot read the PCI tree itself")
    return bool(render(v, f"({block['when']}) | bool"))


def nccl_conf(v: dict) -> list[str]:
    task = task_named(TASKS, "Write /etc/nccl.conf from the discovered rails and GPU-NIC affinity")
    return render(v, task["ansible.builtin.copy"]["content"].strip()[3:-3]).splitlines()


def test_flat_tree_gets_a_topology_file_named_in_nccl_conf(variables):
    from test_fabric_topo import flat_vm_facts

    from gpufleet.fabric.topo import render_topo_xml

    v = topo_variables(variables, flat_vm_facts())
    assert topo_step_runs(v)
    block = task_named(TASKS, "NCCL topology file where NCCL cannot read the PCI tree itself")
    write = next(t for t in block["block"] if "ansible.builtin.copy" in t)["ansible.builtin.copy"]
    assert render(v, write["dest"].strip()[3:-3]) == "/etc/nccl/topo.xml"
    xml = render(v, write["content"].strip()[3:-3])
    fabric = v["ansible_facts"]["gpufleet_fabric"]
    hcas = [r["hca"] for r in fabric["rails"]]
    assert xml == render_topo_xml(fabric["pci"], rails=hcas, cpu=fabric["cpu"])
    assert "NCCL_TOPO_FILE=/etc/nccl/topo.xml" in nccl_conf(v)


def test_no_topology_file_on_bare_metal_or_when_never(variables):
    from test_fabric_topo import flat_vm_facts

    # The recorded RoCE node as the module reports it without a PCI tree: nothing written.
    assert not topo_step_runs(topo_variables(variables, None))
    assert not any(
        ln.startswith("NCCL_TOPO_FILE") for ln in nccl_conf(topo_variables(variables, None))
    )
    never = topo_variables(variables, flat_vm_facts(), mode="never")
    assert not topo_step_runs(never)
    assert not any(ln.startswith("NCCL_TOPO_FILE") for ln in nccl_conf(never))
    # GPU nodes only: nccl.conf off means no topology file either.
    assert not topo_step_runs(
        {**topo_variables(variables, flat_vm_facts()), "rdma_stack_nccl_conf": False}
    )
