"""playbooks/verify.yml's own expressions, rendered by Ansible's templar as the play runs them:
each GPU node's findings (the health check's problems, a failed DCGM run, the facts module's
link failures) and the NCCL device of each rail (RDMA: from `ibdev2netdev`, recorded on a real
HGX H100 RoCE node; Ethernet: the rails' interfaces)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from roles_render import REPO, load_yaml, render

PLAYBOOK = REPO / "playbooks" / "verify.yml"
DATA = Path(__file__).resolve().parents[1] / "data" / "hardware"
HEALTH = {"healthy": False, "problems": ["xid: Xid 48 on GPU 0000:19:00 since boot"]}


def _facts_task() -> dict:
    plays = load_yaml(PLAYBOOK)
    for task in plays[0]["tasks"]:
        if task["name"].startswith("Keep this node's findings"):
            return dict(task["ansible.builtin.set_fact"])
    raise KeyError("no findings task")


def _render(key: str, variables: dict) -> object:
    expression = _facts_task()[key].strip()
    assert expression.startswith("{{") and expression.endswith("}}")
    return render(variables, expression[2:-2])


def _node(hardware: bool, rdma: bool, **extra: object) -> dict:
    return {
        "gpufleet_verify": {},
        "__verify": {},
        "gpufleet_hardware_checks": hardware,
        "gpufleet_rdma": rdma,
        "gpufleet_fabric_interfaces": ["enp25s0np0", "enp41s0np0"],
        "__verify_health": {"stdout": json.dumps(HEALTH)},
        "__verify_dcgm": {"stdout_lines": ["rc=0"]},
        "__verify_links": {"failures": []},
        "__verify_ibdev": {"stdout": ""},
        **extra,
    }


def test_a_container_node_reports_the_health_checks_problems_only():
    assert _render("gpufleet_verify_problems", _node(False, False)) == HEALTH["problems"]


def test_hardware_adds_dcgm_and_link_failures():
    dcgm = {"stdout_lines": ["rc=226", "| Diagnostic | Fail |", "GPU 3: memory error"]}
    links = {"failures": ["nvlink_links_per_gpu: seen 16 on GPU 2, expected 18"]}
    problems = _render(
        "gpufleet_verify_problems", _node(True, True, __verify_dcgm=dcgm, __verify_links=links)
    )
    assert problems == [
        *HEALTH["problems"],
        "DCGM diagnostics level 1 failed: | Diagnostic | Fail | GPU 3: memory error",
        "links: nvlink_links_per_gpu: seen 16 on GPU 2, expected 18",
    ]


def test_a_passing_dcgm_run_adds_nothing():
    assert _render("gpufleet_verify_problems", _node(True, True)) == HEALTH["problems"]


@pytest.mark.parametrize(
    ("rdma", "expected"),
    [(True, ["mlx5_0", "mlx5_1"]), (False, ["enp25s0np0", "enp41s0np0"])],
)
def test_rail_devices_from_ibdev2netdev_or_the_rails_interfaces(rdma, expected):
    recorded = (DATA / "ibdev2netdev-devopsrustem-slurmv4-aihub0007-roce.txt").read_text()
    ibdev = {"stdout": recorded.split("\n", 1)[1]}  # line 1 is the provenance
    assert _render("gpufleet_verify_rail_devices", _node(True, rdma, __verify_ibdev=ibdev)) == (
        expected
    )


def test_a_sites_rail_devices_win():
    given = {"rail_devices": ["mlx5_4", "mlx5_7"]}
    node = _node(True, True, __verify=given)
    assert _render("gpufleet_verify_rail_devices", node) == ["mlx5_4", "mlx5_7"]
