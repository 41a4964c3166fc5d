"""Verify the rails on a real systemd container: networkd state, kernel state, a peer reached."""

import json

import pytest

HOST = "gpufleet-mol-fabric_rails-default"
testinfra_hosts = [f"podman://{HOST}"]
RAILS = [(0, "rail0a", "198.18.20.1", "198.18.20.2"), (1, "rail1a", "198.18.21.1", "198.18.21.2")]
ON_FAILURE = ["journalctl -u systemd-networkd --no-pager -n 40", "networkctl status --no-pager"]


def _ip(host, *args):
    return json.loads(host.check_output("ip -j " + " ".join(args)))


def test_wait_online_masked_while_networkd_manages_only_the_rails(host):
    """The container's front end is podman's, not networkd's: with the rails alone (each
    RequiredForOnline=no) systemd-networkd-wait-online would hold every boot for 2 minutes."""
    state = host.run("systemctl is-enabled systemd-networkd-wait-online.service").stdout
    assert state.strip() == "masked"


def test_networkd_running_and_enabled(host):
    svc = host.service("systemd-networkd")
    assert svc.is_running and svc.is_enabled


@pytest.mark.parametrize(("rail", "dev", "addr", "_peer"), RAILS)
def test_networkd_file(host, rail, dev, addr, _peer):
    f = host.file(f"/etc/systemd/network/05-gpufleet-rail{rail}.network")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    text = f.content_string
    want = [f"Name={dev}", "MTUBytes=9000", f"Address={addr}/24", f"From={addr}/32"]
    want += [f"Table={100 + rail}", f"Priority={1000 + rail}", f"Destination=198.18.2{rail}.0/24"]
    for line in want:
        assert line in text.splitlines(), line


def test_stale_rail_file_removed(host):
    assert not host.file("/etc/systemd/network/05-gpufleet-rail7.network").exists


@pytest.mark.parametrize(("rail", "dev", "addr", "_peer"), RAILS)
def test_kernel_holds_address_mtu_rule_and_route(host, rail, dev, addr, _peer):
    (link,) = _ip(host, "addr", "show", "dev", dev)
    assert link["mtu"] == 9000
    assert [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"] == [
        (addr, 24)
    ]
    rules = _ip(host, "rule", "show")
    assert any(r.get("src") == addr and r.get("table") == str(100 + rail) for r in rules), rules
    routes = _ip(host, "route", "show", "table", str(100 + rail))
    assert [(r["dst"], r["dev"]) for r in routes] == [(f"198.18.2{rail}.0/24", dev)]


SYSCTLS = [("arp_ignore", "1"), ("arp_announce", "2"), ("rp_filter", "2")]


@pytest.mark.parametrize(("rail", "dev", "_addr", "_peer"), RAILS)
@pytest.mark.parametrize(("key", "value"), SYSCTLS)
def test_neighbour_sysctls(host, rail, dev, _addr, _peer, key, value):
    assert host.file(f"/proc/sys/net/ipv4/conf/{dev}/{key}").content_string.strip() == value
    assert (
        f"net.ipv4.conf.{dev}.{key} = {value}"
        in host.file("/etc/sysctl.d/60-gpufleet-rails.conf").content_string
    )


@pytest.mark.parametrize(("rail", "dev", "addr", "peer"), RAILS)
def test_peer_answers_a_full_size_unfragmented_ping_from_the_rail(host, rail, dev, addr, peer):
    # A client on the wire: 9000-byte frames, don't-fragment, sourced from the rail's address.
    out = host.run(f"ping -n -c 1 -W 2 -M do -s 8972 -I {addr} {peer}")
    assert out.rc == 0, out.stdout + out.stderr
    # Policy routing: the route the kernel picks for that source is the rail's interface.
    (route,) = _ip(host, "route", "get", peer, "from", addr)
    assert route["dev"] == dev


def test_a_packet_larger_than_the_rail_mtu_is_refused(host):
    out = host.run("ping -n -c 1 -W 2 -M do -s 8973 -I 198.18.20.1 198.18.20.2")
    assert out.rc != 0
