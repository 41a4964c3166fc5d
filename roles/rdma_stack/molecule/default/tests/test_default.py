"""Verify the RDMA stack in a systemd container (no InfiniBand port: no module, no SM runs)."""

import pytest

HOST = "gpufleet-mol-rdma_stack-default"
testinfra_hosts = [f"podman://{HOST}"]
ON_FAILURE = ["systemctl status opensm.service --no-pager"]


@pytest.mark.parametrize(
    "package",
    [
        "rdma-core",
        "ibverbs-providers",
        "ibverbs-utils",
        "infiniband-diags",
        "rdmacm-utils",
        "opensm",
    ],
)
def test_packages_installed(host, package):
    assert host.package(package).is_installed


def test_modules_load_file(host):
    f = host.file("/etc/modules-load.d/gpufleet-rdma.conf")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    lines = [x for x in f.content_string.splitlines() if x and not x.startswith("#")]
    assert lines == ["ib_ipoib", "ib_umad", "rdma_ucm", "ib_uverbs"]


def test_opensm_config_priority_and_ports(host):
    conf = host.file("/etc/opensm/opensm.conf").content_string.splitlines()
    assert "sm_priority 14" in conf
    assert 'PORTS="ALL"' in host.file("/etc/default/opensm").content_string.splitlines()


def test_opensm_enabled(host):
    assert host.service("opensm").is_enabled


def test_the_tools_run_and_find_no_port(host):
    # The diagnostics are the real ones: on a node without an HCA they say so.
    out = host.run("ibstat -l")
    assert out.rc == 0 and out.stdout.strip() == "", out.stdout + out.stderr
    # libibverbs finds no verbs device class in sysfs: ibv_devices exits 1 and says why.
    devices = host.run("ibv_devices")
    assert devices.rc == 1 and "Failed to get IB devices list" in devices.stderr, devices.stderr
    # opensm.service's condition (an InfiniBand MAD interface) keeps it from starting here.
    started = host.run("systemctl start opensm.service && systemctl is-active opensm.service")
    assert started.stdout.strip() == "inactive", started.stdout + started.stderr
