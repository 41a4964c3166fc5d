"""roles/dcgm: the `dcgmi discovery -l` check and the exporter's counters file.

The discovery outputs below are CONSTRUCTED (no recording of `dcgmi discovery -l` exists in
tests/data or the shared reference set): only their first line, "<n> GPUs found.", is what the
check reads; the check's own expressions from tasks/service.yml are evaluated with Ansible's
templar. On hardware the check runs against the real dcgmi (dcgm_hardware_checks).
"""

from __future__ import annotations

import csv
from typing import Any

import pytest
from roles_render import ROLES, render, render_file, role_vars, task_named, templar

SERVICE = ROLES / "dcgm" / "tasks" / "service.yml"
CHECK = "Require the host engine to see every GPU of the profile"

CONSTRUCTED_EIGHT = "8 GPUs found.\n+--------+------+\n| GPU ID | Device Information |\n"
CONSTRUCTED_ONE = "1 GPU found.\n+--------+------+\n"


def judge(rc: int, stdout: str, stderr: str = "", expected: int = 8) -> tuple[bool, str]:
    task = task_named(SERVICE, CHECK)
    v: dict[str, Any] = {
        **role_vars("dcgm"),
        "inventory_hostname": "gpu001",
        "dcgm_expected_gpu_count": expected,
        "__dcgm_discovery": {"rc": rc, "stdout": stdout, "stderr": stderr},
    }
    for name, expr in task["vars"].items():
        v[name] = templar(v).template(expr)
    passed = all(render(v, f"({c}) | bool") for c in task["ansible.builtin.assert"]["that"])
    return passed, templar(v).template(task["ansible.builtin.assert"]["fail_msg"])


def test_every_gpu_seen_passes():
    assert judge(0, CONSTRUCTED_EIGHT)[0]


def test_a_gpu_missing_fails_with_the_count():
    passed, msg = judge(0, CONSTRUCTED_ONE)
    assert not passed
    assert msg.startswith("gpu001 dcgm_discovery: seen 1 GPU(s), expected 8")


def test_a_failed_dcgmi_fails_with_its_words():
    passed, msg = judge(255, "", "Error: unable to establish a connection to the specified host")
    assert not passed
    assert msg.startswith(
        "gpu001 dcgm_discovery: seen none GPU(s) (dcgmi discovery -l failed, rc 255: Error: unable"
        " to establish a connection to the specified host), expected 8"
    )


def test_the_check_runs_only_with_hardware_checks():
    assert task_named(SERVICE, CHECK)["when"] == "dcgm_hardware_checks"


# Fields NVIDIA's default-counters.csv of dcgm-exporter leaves commented out, which tell a
# failing GPU or NVLink (PLATFORM-NOTES, monitoring; dcgm-exporter's etc/default-counters.csv).
REQUIRED = {
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
    "DCGM_FI_DEV_RETIRED_SBE",
    "DCGM_FI_DEV_RETIRED_DBE",
    "DCGM_FI_DEV_RETIRED_PENDING",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_XID_ERRORS",
}


@pytest.fixture(scope="module")
def counters() -> list[list[str]]:
    text = render_file(
        role_vars("dcgm"), ROLES / "dcgm/templates/etc/dcgm-exporter/gpufleet-counters.csv.j2"
    )
    rows = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return [[c.strip() for c in row] for row in csv.reader(rows)]


def test_counters_file_turns_on_the_error_fields(counters):
    missing = REQUIRED - {row[0] for row in counters}
    assert not missing, f"not collected: {sorted(missing)}"


def test_counters_file_rows_are_field_type_help(counters):
    names = [row[0] for row in counters]
    assert len(names) == len(set(names)), "a field listed twice"
    for row in counters:
        assert len(row) == 3, row
        assert row[0].startswith("DCGM_FI_"), row
        assert row[1] in {"gauge", "counter"}, row
        assert row[2], row
