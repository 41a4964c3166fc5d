"""Verify nvidia_driver on the Debian 12 node against the signed TEST repository (prepare.yml).

Real here: repository file and key check, apt's resolution of the package graph, pinning, holds,
exact versions, the drift checker, modprobe files, the persistenced unit being enabled with its
drop-in. Not here: NVIDIA's packages, kernel modules, GPUs (hardware checks are off in the
container). Both nodes, the whole graph: test_gpu_stack_graph.py. The other GPU roles of this
scenario have their own test modules; they run after this one's role in converge.yml.
"""

import pytest

HOST = "gpufleet-mol-nvidia_driver-default"
# podman exec directly: through the ansible backend every command would be a whole ansible run.
testinfra_hosts = [f"podman://{HOST}"]
LOCKED = "550.127.05-1"
PACKAGES = ["cuda-drivers-550", "nvidia-kernel-open-dkms", "nvidia-persistenced"]
DRIFT = "/usr/local/sbin/gpufleet-version-drift"
LOCK = "/etc/gpufleet/version-lock.d/nvidia_driver.lock"
ON_FAILURE = [
    "apt-cache policy nvidia-driver",
    "apt-mark showhold",
    "journalctl -u nvidia-persistenced --no-pager -n 20",
]


@pytest.mark.parametrize("pkg", PACKAGES)
def test_package_installed_at_locked_version(host, pkg):
    assert host.package(pkg).is_installed
    assert host.package(pkg).version == LOCKED


@pytest.mark.parametrize("pkg", PACKAGES)
def test_package_held(host, pkg):
    assert pkg in host.check_output("apt-mark showhold").split()


@pytest.mark.parametrize("pkg", PACKAGES)
def test_pin_keeps_locked_version_as_candidate(host, pkg):
    # The repository also offers 550.144.03-1; the pin must keep the candidate at the lock.
    policy = host.check_output(f"apt-cache policy {pkg}")
    assert f"Candidate: {LOCKED}" in policy
    assert "550.144.03-1" in policy


def test_upgrade_would_not_move_driver(host):
    sim = host.check_output("apt-get -s -o Debug::NoLocking=1 dist-upgrade")
    assert "nvidia" not in sim


def test_dependency_installed_by_hand_was_brought_to_the_lock(host):
    # prepare.yml installed nvidia-driver 550.90.07-1 by hand; it is no package of the lock, but
    # cuda-drivers-550 needs it (>=) and the pin makes apt choose the locked release.
    assert host.package("nvidia-driver").version == LOCKED
    assert host.package("libglx-nvidia0").version == LOCKED
    # nvidia-kernel-support needs nvidia-modprobe (>= 550) only: the install alone left the
    # seeded 550.90.07-1; version_lock brings what the driver's pin covers to the pinned release.
    assert host.package("nvidia-modprobe").version == LOCKED


def test_apt_source_is_signed_by_checked_key(host):
    src = host.file("/etc/apt/sources.list.d/gpufleet-nvidia-cuda.sources")
    assert src.mode == 0o644
    # The role's default URL (converge.yml does not override it): NVIDIA's debian12 directory.
    uris = [ln for ln in src.content_string.splitlines() if ln.startswith("URIs:")]
    assert uris == [
        "URIs: https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/"
    ]
    assert "Signed-By: /etc/apt/keyrings/gpufleet-nvidia-cuda.asc" in src.content_string
    fpr = host.file("/srv/gpufleet-test-repo/test-repo-key.fpr").content_string.strip()
    shown = host.check_output(
        "gpg --show-keys --with-colons /etc/apt/keyrings/gpufleet-nvidia-cuda.asc"
    )
    assert f"fpr:::::::::{fpr}:" in shown


def test_preferences_file(host):
    pref = host.file("/etc/apt/preferences.d/gpufleet-nvidia-driver").content_string
    assert f"Package: cuda-drivers-550\nPin: version {LOCKED}\nPin-Priority: 1001" in pref


def test_drift_seeded_by_prepare_was_reported(host):
    log = host.file("/var/log/gpufleet/drift-nvidia_driver.log").content_string
    assert "MISSING cuda-drivers-550: not installed, locked 550.127.05-1" in log
    assert "DRIFT nvidia-kernel-open-dkms: installed 550.90.07-1" in log
    assert "MISSING nvidia-persistenced: not installed, locked 550.127.05-1" in log


def test_drift_checker_clean_now(host):
    # Every lock of the node at once: test_dcgm.py::test_drift_checker_clean_for_every_lock.
    out = host.run(f"{DRIFT} {LOCK}")
    assert out.rc == 0, out.stdout
    assert out.stdout.strip() == "OK 3 package(s) as locked"


def test_drift_checker_reports_unhold_and_other_version(host):
    lock = LOCK
    try:
        host.check_output("apt-mark unhold nvidia-kernel-open-dkms")
        host.check_output(
            "apt-get install -y -qq --allow-downgrades --allow-change-held-packages "
            "nvidia-persistenced=550.144.03-1"
        )
        out = host.run(f"{DRIFT} {lock}")
        assert out.rc == 1
        want = f"DRIFT nvidia-persistenced: installed 550.144.03-1, locked {LOCKED} ({lock})"
        assert want in out.stdout
        assert "NOT HELD nvidia-kernel-open-dkms" in out.stdout
        assert "cuda-drivers-550" not in out.stdout
    finally:
        host.run(
            "apt-get install -y -qq --allow-downgrades --allow-change-held-packages "
            f"nvidia-persistenced={LOCKED} && "
            "apt-mark hold nvidia-kernel-open-dkms nvidia-persistenced"
        )
    assert host.run(f"{DRIFT} {lock}").rc == 0


def test_nouveau_blacklisted(host):
    f = host.file("/etc/modprobe.d/gpufleet-blacklist-nouveau.conf")
    assert f.mode == 0o644
    assert "blacklist nouveau" in f.content_string.splitlines()


def test_nvidia_module_options(host):
    conf = host.file("/etc/modprobe.d/gpufleet-nvidia.conf").content_string
    assert (
        "options nvidia NVreg_DeviceFileGID=44 NVreg_DeviceFileMode=0660 "
        "NVreg_DeviceFileUID=0 NVreg_EnableStreamMemOPs=1"
    ) in conf.splitlines()


def test_persistenced_enabled_not_started_without_hardware(host):
    svc = host.service("nvidia-persistenced")
    assert svc.is_enabled
    assert not svc.is_running
