"""Verify dcgm (DCGM 4 and its exporter) against the TEST repository (hardware checks off)."""

import pytest

HOST = "gpufleet-mol-nvidia_driver-default"
# podman exec directly: through the ansible backend every command would be a whole ansible run.
testinfra_hosts = [f"podman://{HOST}"]
ON_FAILURE = [
    "apt-cache policy datacenter-gpu-manager-4-core datacenter-gpu-manager-exporter",
    "apt-mark showhold",
    "systemctl cat nvidia-dcgm-exporter",
    "journalctl -u nvidia-dcgm --no-pager -n 20",
]
LOCKED = "1:4.2.3-1"


@pytest.mark.parametrize(
    "pkg", ["datacenter-gpu-manager-4-core", "datacenter-gpu-manager-4-cuda12"]
)
def test_dcgm_4_locked_with_epoch_installed_held_and_pinned(host, pkg):
    assert host.package(pkg).version == LOCKED
    assert pkg in host.check_output("apt-mark showhold").split()
    # The repository also has 1:4.3.1-1: the pin keeps the candidate at the lock.
    policy = host.check_output(f"apt-cache policy {pkg}")
    assert f"Candidate: {LOCKED}" in policy
    assert "1:4.3.1-1" in policy


def test_exporter_locked_held_and_pinned(host):
    assert host.package("datacenter-gpu-manager-exporter").version == "4.2.3-1"
    assert "datacenter-gpu-manager-exporter" in host.check_output("apt-mark showhold").split()
    assert "Candidate: 4.2.3-1" in host.check_output(
        "apt-cache policy datacenter-gpu-manager-exporter"
    )


def test_drift_checker_clean_for_every_lock(host):
    # Without arguments the checker reads every lock of the node: nvidia_driver 3,
    # nvidia_fabricmanager 2, cuda_toolkit 1, cuda_toolkit_nccl 2, dcgm 2, dcgm_exporter 1,
    # nvidia_container_toolkit 4.
    out = host.run("/usr/local/sbin/gpufleet-version-drift")
    assert (out.rc, out.stdout.strip()) == (0, "OK 15 package(s) as locked")


@pytest.mark.parametrize("unit", ["nvidia-dcgm", "nvidia-dcgm-exporter"])
def test_units_enabled_not_started_without_gpus(host, unit):
    svc = host.service(unit)
    assert svc.is_enabled
    assert not svc.is_running


def test_exporter_runs_with_the_counters_file_and_address(host):
    # systemd's view of the unit with the drop-in applied, not the file.
    execstart = host.check_output("systemctl show -p ExecStart --value nvidia-dcgm-exporter")
    assert "path=/usr/bin/dcgm-exporter ;" in execstart
    assert (
        "argv[]=/usr/bin/dcgm-exporter -f /etc/dcgm-exporter/gpufleet-counters.csv -a :9400 ;"
        in (execstart)
    )
    requires = host.check_output("systemctl show -p Requires --value nvidia-dcgm-exporter")
    assert "nvidia-dcgm.service" in requires.split()


@pytest.mark.parametrize(
    "field",
    [
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "DCGM_FI_DEV_RETIRED_DBE",
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
        "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
    ],
)
def test_counters_file_collects_the_error_fields(host, field):
    f = host.file("/etc/dcgm-exporter/gpufleet-counters.csv")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    rows = [ln.split(",")[0] for ln in f.content_string.splitlines() if ln and ln[0] != "#"]
    assert field in rows
