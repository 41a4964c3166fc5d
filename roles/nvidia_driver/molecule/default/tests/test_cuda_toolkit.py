"""Verify cuda_toolkit against the TEST repository of dummy packages (see prepare.yml)."""

HOST = "gpufleet-mol-nvidia_driver-default"
# podman exec directly: through the ansible backend every command would be a whole ansible run.
testinfra_hosts = [f"podman://{HOST}"]
ON_FAILURE = ["apt-cache policy cuda-toolkit-12-4 libnccl2 libnccl-dev", "apt-mark showhold"]


def test_locked_version_installed_held_and_pinned(host):
    assert host.package("cuda-toolkit-12-4").version == "12.4.1-1"
    assert "cuda-toolkit-12-4" in host.check_output("apt-mark showhold").split()
    pref = host.file("/etc/apt/preferences.d/gpufleet-cuda-toolkit").content_string
    assert "Package: cuda-toolkit-12-4\nPin: version 12.4.1-1\nPin-Priority: 1001" in pref


def test_seeded_drift_reported_then_repaired(host):
    log = host.file("/var/log/gpufleet/drift-cuda_toolkit.log").content_string
    assert "DRIFT cuda-toolkit-12-4: installed 12.4.0-1, locked 12.4.1-1" in log
    out = host.run(
        "/usr/local/sbin/gpufleet-version-drift /etc/gpufleet/version-lock.d/cuda_toolkit.lock"
    )
    assert (out.rc, out.stdout.strip()) == (0, "OK 1 package(s) as locked")


def test_login_shell_path(host):
    f = host.file("/etc/profile.d/gpufleet-cuda.sh")
    assert f.mode == 0o644
    path = host.check_output("bash -lc 'echo $PATH'")
    assert path.split(":")[0] == "/usr/local/cuda-12.4/bin"


def test_nccl_locked_to_the_lock_s_cuda_build(host):
    held = host.check_output("apt-mark showhold").split()
    for pkg in ("libnccl2", "libnccl-dev"):
        assert host.package(pkg).version == "2.21.5-1+cuda12.4", pkg
        assert pkg in held, pkg
    # The repository also has 2.23.4-1+cuda12.6: the pin keeps the candidate at the lock.
    policy = host.check_output("apt-cache policy libnccl2")
    assert "Candidate: 2.21.5-1+cuda12.4" in policy
    assert "2.23.4-1+cuda12.6" in policy
