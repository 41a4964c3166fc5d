"""Verify nvidia_fabricmanager (after nvidia_driver) against the TEST repository of dummies.

Real here: exact version equal to the driver's, pin, hold, drift report and checker, unit
enabled. Not here: NVSwitches, so the service is enabled but not started (hardware checks off).
"""

import pytest

HOST = "gpufleet-mol-nvidia_driver-default"
# podman exec directly: through the ansible backend every command would be a whole ansible run.
testinfra_hosts = [f"podman://{HOST}"]
LOCKED = "550.127.05-1"
PACKAGES = ["nvidia-fabricmanager-550", "libnvidia-nscq-550"]
LOCK = "/etc/gpufleet/version-lock.d/nvidia_fabricmanager.lock"
ON_FAILURE = [
    "apt-cache policy nvidia-fabricmanager-550",
    "apt-mark showhold",
    "journalctl -u nvidia-fabricmanager --no-pager -n 20",
]


@pytest.mark.parametrize("pkg", PACKAGES)
def test_installed_at_driver_version_and_held(host, pkg):
    assert host.package(pkg).version == LOCKED
    assert host.package("nvidia-driver").version == LOCKED
    assert pkg in host.check_output("apt-mark showhold").split()


def test_pin_keeps_candidate_at_lock(host):
    policy = host.check_output("apt-cache policy nvidia-fabricmanager-550")
    assert f"Candidate: {LOCKED}" in policy
    pref = host.file("/etc/apt/preferences.d/gpufleet-nvidia-fabricmanager")
    assert pref.mode == 0o644
    assert f"Package: nvidia-fabricmanager-550\nPin: version {LOCKED}" in pref.content_string


def test_unit_enabled_not_started_without_nvswitch(host):
    svc = host.service("nvidia-fabricmanager")
    assert svc.is_enabled
    assert not svc.is_running


def test_seeded_drift_was_reported(host):
    # prepare.yml installed Fabric Manager 550.90.07-1 by hand. nvidia_driver ran first: its pin
    # covers every package of the driver's release (nvidia-*), so it already brought Fabric
    # Manager to 550.127.05-1; what this role then found was the missing hold and NSCQ.
    log = host.file("/var/log/gpufleet/drift-nvidia_fabricmanager.log").content_string
    assert f"NOT HELD nvidia-fabricmanager-550: {LOCKED} is installed but not held" in log
    assert f"MISSING libnvidia-nscq-550: not installed, locked {LOCKED}" in log


def test_drift_checker_catches_an_unattended_upgrade(host):
    try:
        host.check_output(
            "apt-get install -y -qq --allow-change-held-packages "
            "nvidia-fabricmanager-550=550.144.03-1"
        )
        out = host.run(f"/usr/local/sbin/gpufleet-version-drift {LOCK}")
        assert out.rc == 1
        assert out.stdout.strip() == (
            f"DRIFT nvidia-fabricmanager-550: installed 550.144.03-1, locked {LOCKED} ({LOCK})"
        )
    finally:
        host.run(
            "apt-get install -y -qq --allow-downgrades --allow-change-held-packages "
            f"nvidia-fabricmanager-550={LOCKED} && apt-mark hold nvidia-fabricmanager-550"
        )
    assert host.run("/usr/local/sbin/gpufleet-version-drift").rc == 0
