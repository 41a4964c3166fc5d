"""Verify dcgm against the TEST repository of dummy packages (hardware checks off)."""

HOST = "gpufleet-mol-nvidia_driver-default"
# podman exec directly: through the ansible backend every command would be a whole ansible run.
testinfra_hosts = [f"podman://{HOST}"]
ON_FAILURE = [
    "apt-cache policy datacenter-gpu-manager",
    "apt-mark showhold",
    "journalctl -u nvidia-dcgm --no-pager -n 20",
]


def test_locked_version_with_epoch_installed_held_and_pinned(host):
    assert host.package("datacenter-gpu-manager").version == "1:3.3.9"
    assert "datacenter-gpu-manager" in host.check_output("apt-mark showhold").split()
    # The repository also has 1:3.3.10: the pin keeps the candidate at the lock.
    policy = host.check_output("apt-cache policy datacenter-gpu-manager")
    assert "Candidate: 1:3.3.9" in policy
    assert "1:3.3.10" in policy


def test_drift_checker_clean_for_every_lock(host):
    # Without arguments the checker reads every lock of the node: nvidia_driver 3,
    # nvidia_fabricmanager 2, cuda_toolkit 1, dcgm 1, nvidia_container_toolkit 4.
    out = host.run("/usr/local/sbin/gpufleet-version-drift")
    assert (out.rc, out.stdout.strip()) == (0, "OK 11 package(s) as locked")


def test_host_engine_enabled_not_started_without_gpus(host):
    svc = host.service("nvidia-dcgm")
    assert svc.is_enabled
    assert not svc.is_running
