"""Verify the internal version_lock role through its callers converged in this scenario."""

import pytest

HOST = "gpufleet-mol-nvidia_driver-default"
# podman exec directly: through the ansible backend every command would be a whole ansible run.
testinfra_hosts = [f"podman://{HOST}"]
DRIFT = "/usr/local/sbin/gpufleet-version-drift"
ON_FAILURE = ["ls -l /etc/gpufleet/version-lock.d /etc/apt/preferences.d /var/log/gpufleet"]
# Lock name -> packages and version, as converge.yml asks for them.
LOCKS = {
    "nvidia_driver": (
        ["cuda-drivers-550", "nvidia-kernel-open-dkms", "nvidia-persistenced"],
        "550.127.05-1",
    ),
    "nvidia_fabricmanager": (["nvidia-fabricmanager-550", "libnvidia-nscq-550"], "550.127.05-1"),
    "cuda_toolkit": (["cuda-toolkit-12-4"], "12.4.1-1"),
    "cuda_toolkit_nccl": (["libnccl2", "libnccl-dev"], "2.21.5-1+cuda12.4"),
    "dcgm": (["datacenter-gpu-manager-4-core", "datacenter-gpu-manager-4-cuda12"], "1:4.2.3-1"),
    "dcgm_exporter": (["datacenter-gpu-manager-exporter"], "4.2.3-1"),
    "nvidia_container_toolkit": (
        [
            "nvidia-container-toolkit",
            "nvidia-container-toolkit-base",
            "libnvidia-container-tools",
            "libnvidia-container1",
        ],
        "1.17.3-1",
    ),
}


def test_one_lock_per_caller_and_nothing_else(host):
    found = host.check_output("ls /etc/gpufleet/version-lock.d").split()
    assert sorted(found) == sorted(f"{name}.lock" for name in LOCKS)


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_lock_and_pin_name_every_package_at_the_version(host, name):
    packages, version = LOCKS[name]
    lock = host.file(f"/etc/gpufleet/version-lock.d/{name}.lock")
    assert (lock.user, lock.group, lock.mode) == ("root", "root", 0o644)
    entries = [ln for ln in lock.content_string.splitlines() if ln and not ln.startswith("#")]
    assert entries == [f"{pkg} {version}" for pkg in packages]
    pin = host.file(f"/etc/apt/preferences.d/gpufleet-{name.replace('_', '-')}")
    assert (pin.user, pin.group, pin.mode) == ("root", "root", 0o644)
    for pkg in packages:
        assert f"Package: {pkg}\nPin: version {version}\nPin-Priority: 1001" in pin.content_string


def test_driver_pin_also_covers_the_libraries_it_pulls_in(host):
    pin = host.file("/etc/apt/preferences.d/gpufleet-nvidia-driver").content_string
    assert (
        "Package: nvidia-* libnvidia-* libcuda1 libcuda1-* libcudadebugger1 libnvcuvid1 libnvoptix1"
        " libglx-nvidia0 libegl-nvidia0 libgl1-nvidia-glvnd-glx libgles-nvidia1 libgles-nvidia2"
        " xserver-xorg-video-nvidia firmware-nvidia-gsp cuda-drivers cuda-drivers-*"
        "\nPin: version 550.127.05-*\nPin-Priority: 1001"
    ) in pin


@pytest.mark.parametrize(
    "name", ["cuda_toolkit_nccl", "dcgm", "dcgm_exporter", "nvidia_container_toolkit"]
)
def test_no_drift_recorded_where_none_was_seeded(host, name):
    assert not host.file(f"/var/log/gpufleet/drift-{name}.log").exists


def test_checker_is_executable_by_root_only_writable(host):
    f = host.file(DRIFT)
    assert (f.user, f.group, f.mode) == ("root", "root", 0o755)


def test_checker_refuses_an_unreadable_lock(host):
    missing = "/etc/gpufleet/version-lock.d/missing.lock"
    out = host.run(f"{DRIFT} {missing}")
    assert out.rc == 2
    assert out.stderr.strip() == f"ERROR cannot read lock file {missing}"
