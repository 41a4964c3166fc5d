"""Verify the base role on a real systemd container: state, content, a client of chronyd."""

import pytest

HOST = "gpufleet-mol-base-default"
# The inventory also names two peers that exist only as /etc/hosts entries.
testinfra_hosts = [f"podman://{HOST}"]


@pytest.mark.parametrize(
    ("address", "names"),
    [
        ("198.18.1.10", f"{HOST}.lab.gpufleet.test {HOST}"),
        ("198.18.1.11", "gpu-peer-01.lab.gpufleet.test gpu-peer-01"),
        ("198.18.1.12", "gpu-peer-02.lab.gpufleet.test gpu-peer-02"),
    ],
)
def test_etc_hosts_has_every_inventory_host(host, address, names):
    lines = [line.split(None, 1) for line in host.file("/etc/hosts").content_string.splitlines()]
    assert [address, names] in [[p[0], p[1].strip()] for p in lines if len(p) == 2]


def test_etc_hosts_stale_entry_removed(host):
    assert "stale-node" not in host.file("/etc/hosts").content_string


def test_etc_hosts_mode(host):
    f = host.file("/etc/hosts")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)


def test_hostname(host):
    assert host.check_output("hostname") == HOST


def test_chrony_running_and_enabled(host):
    svc = host.service("chrony")
    assert svc.is_running, host.run("journalctl -u chrony --no-pager -n 30").stdout
    assert svc.is_enabled


def test_chrony_config_lists_servers_and_allow(host):
    conf = host.file("/etc/chrony/chrony.conf").content_string
    assert "server 127.0.0.1 iburst" in conf
    assert "allow 198.18.1.0/24" in conf
    assert "pool " not in conf


def test_chronyd_never_touches_container_clock(host):
    assert 'DAEMON_OPTS="-F 1 -x"' in host.file("/etc/default/chrony").content_string
    cmdline = host.check_output("cat /proc/$(pidof chronyd | cut -d' ' -f1)/cmdline | tr '\\0' ' '")
    assert " -x" in f" {cmdline}"


def test_chronyc_talks_to_chronyd(host):
    # A real client of the running daemon: the configured source is listed.
    out = host.check_output("chronyc -n sources")
    assert "127.0.0.1" in out
