"""Verify DOCA-OFED from the TEST repository on the ...-doca node (prepare.yml): NVIDIA's
repository line and key path, doca-ofed at exactly the locked version and held, DOCA's builds of
the RDMA user space instead of the distribution's that prepare.yml installed, the pins keeping the
newer build out, and the drift checker clean."""

import pytest

HOST = "gpufleet-mol-rdma_stack-default-doca"
testinfra_hosts = [f"podman://{HOST}"]
ON_FAILURE = [
    "apt-cache policy doca-ofed rdma-core",
    "cat /etc/apt/preferences.d/gpufleet-rdma-stack",
    "/usr/local/sbin/gpufleet-version-drift",
]
LOCKED = "2.9.5-0.1.8"
DRIFT = "/usr/local/sbin/gpufleet-version-drift"
USER_SPACE = ["rdma-core", "ibverbs-providers", "ibverbs-utils", "infiniband-diags", "rdmacm-utils"]


def test_nvidia_repository_line_and_key(host):
    source = host.file("/etc/apt/sources.list.d/gpufleet-nvidia-doca.sources")
    lines = [ln for ln in source.content_string.splitlines() if not ln.startswith("#")]
    assert lines == [
        "Types: deb",
        "URIs: https://linux.mellanox.com/public/repo/doca/2.9.5/debian12/x86_64/",
        "Suites: /",
        "Signed-By: /etc/apt/keyrings/gpufleet-nvidia-doca.asc",
    ]
    key = host.file("/etc/apt/keyrings/gpufleet-nvidia-doca.asc")
    fpr = host.file("/srv/gpufleet-test-repo/test-repo-key.fpr").content_string.strip()
    shown = host.check_output(f"gpg --show-keys --with-colons {key.path}")
    assert f"fpr:::::::::{fpr}:" in shown


def state(host, pkg):
    return host.check_output(f"dpkg-query -W -f='${{db:Status-Want}} ${{Version}}' {pkg}").split()


def test_doca_ofed_at_the_locked_version_and_held(host):
    assert state(host, "doca-ofed") == ["hold", LOCKED]
    lock = host.file("/etc/gpufleet/version-lock.d/rdma_stack.lock").content_string
    assert [ln for ln in lock.splitlines() if not ln.startswith("#")] == [f"doca-ofed {LOCKED}"]


@pytest.mark.parametrize("pkg", USER_SPACE)
def test_docas_build_replaced_the_distributions(host, pkg):
    # prepare.yml installed Debian's rdma-core and ibverbs-providers: one build of each, DOCA's.
    assert state(host, pkg)[1] == "2410mlnx54-1.2410068"


def test_pins_keep_the_newer_revision_out(host):
    pin = host.file("/etc/apt/preferences.d/gpufleet-rdma-stack").content_string
    assert f"Package: doca-ofed\nPin: version {LOCKED}\nPin-Priority: 1001" in pin
    assert "Pin: version *mlnx*\nPin-Priority: 1001" in pin
    upgrade = host.check_output("apt-get --simulate -o Debug::NoLocking=1 dist-upgrade")
    moved = [ln for ln in upgrade.splitlines() if ln.startswith("Inst ")]
    assert not [ln for ln in moved if ln.split()[1] in ["doca-ofed", *USER_SPACE]], moved


def test_drift_checker_finds_the_lock_kept(host):
    out = host.run(f"{DRIFT} /etc/gpufleet/version-lock.d/rdma_stack.lock")
    assert out.rc == 0 and out.stdout.strip() == "OK 1 package(s) as locked", out.stdout


def test_no_opensm_without_the_subnet_manager(host):
    assert not host.package("opensm").is_installed
