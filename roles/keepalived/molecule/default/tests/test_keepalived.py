"""keepalived on a pair of load balancers: the package at the locked version and held, the
configuration root's only and accepted by keepalived, VRRP adverts sent by unicast between the
peers, the VIP on the higher-priority node and answering the other one, and a dead HAProxy
moving the VIP to the peer within 4 s, where it stays when HAProxy comes back (no preemption)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest
import testinfra

PREFIX = "gpufleet-mol-{}-{}".format(
    os.environ.get("GPUFLEET_MOLECULE_ROLE", "role"),
    os.environ.get("MOLECULE_SCENARIO_NAME", "default"),
)
LB1, LB2 = f"{PREFIX}-lb1", f"{PREFIX}-lb2"
ADDRESS = {"lb1": "198.19.234.10", "lb2": "198.19.234.11"}
VIP = "198.19.234.5"
VERSION = "1:2.2.7-1+b2"
CONF = "/etc/keepalived/keepalived.conf"
NOTIFY_LOG = "/var/log/gpufleet-keepalived.log"
testinfra_hosts = [f"podman://{LB1}"]
# Shown under a failed test (tests/molecule/gpufleet_testinfra.py), run on lb1.
ON_FAILURE = [
    "journalctl -u keepalived -u haproxy --no-pager -n 60",
    "ip -4 -o addr show dev eth0",
    f"cat {NOTIFY_LOG}",
]


@pytest.fixture(scope="module")
def lb2():
    return testinfra.get_host(f"podman://{LB2}")


@pytest.fixture(scope="module")
def nodes(host, lb2):
    return {"lb1": host, "lb2": lb2}


def holds_vip(node) -> bool:
    return f"inet {VIP}/24 " in node.check_output("ip -4 -o addr show dev eth0")


def mac(node) -> str:
    return node.check_output("cat /sys/class/net/eth0/address").strip()


def connects(node, address: str, port: int) -> bool:
    """A TCP connection from `node` to address:port completes within 3 s."""
    code = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(3)\n"
        f"sys.exit(s.connect_ex(('{address}', {port})))"
    )
    return node.run(f'python3 -c "{code}"').rc == 0


def vip_neighbour(node) -> str:
    """The MAC address `node` reaches the VIP at (its neighbour table, after a connection)."""
    out = node.check_output(f"ip neigh show {VIP} dev eth0")
    fields = out.split()
    return fields[fields.index("lladdr") + 1] if "lladdr" in fields else ""


def transitions(node) -> list[tuple[float, str]]:
    """(Unix time, state) of every line of the notify log, oldest first."""
    found = []
    for line in node.file(NOTIFY_LOG).content_string.splitlines():
        stamp, _, state = line.split()[:3]
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        found.append((when.timestamp(), state))
    return found


def states(node) -> list[str]:
    """The states of the notify log, oldest first."""
    return [state for _, state in transitions(node)]


@pytest.mark.parametrize("name", ["lb1", "lb2"])
def test_package_at_the_locked_version_and_held(nodes, name):
    node = nodes[name]
    assert node.package("keepalived").version == VERSION
    assert "keepalived" in node.check_output("apt-mark showhold").split()


@pytest.mark.parametrize("name", ["lb1", "lb2"])
def test_service_enabled_and_running(nodes, name):
    service = nodes[name].service("keepalived")
    assert service.is_enabled and service.is_running


@pytest.mark.parametrize("name", ["lb1", "lb2"])
def test_configuration_root_only_accepted_and_unicast(nodes, name):
    node = nodes[name]
    conf = node.file(CONF)
    assert (conf.user, conf.group, conf.mode) == ("root", "root", 0o640)
    assert node.run(f"keepalived -t -f {CONF}").rc == 0
    text = conf.content_string
    peer = ADDRESS["lb2" if name == "lb1" else "lb1"]
    assert f"unicast_src_ip {ADDRESS[name]}\n" in text
    assert text.split("unicast_peer {", 1)[1].split("}", 1)[0].split() == [peer]
    assert "state BACKUP\n" in text and "nopreempt\n" in text
    assert 'script "/usr/bin/pgrep --exact haproxy"' in text
    assert "notify /usr/local/sbin/gpufleet-keepalived-notify\n" in text
    script = node.file("/usr/local/sbin/gpufleet-keepalived-notify")
    assert (script.user, script.mode) == ("root", 0o755)


@pytest.mark.parametrize("name", ["lb1", "lb2"])
def test_no_multicast_group_joined(nodes, name):
    """With unicast peers keepalived never joins VRRP's multicast group 224.0.0.18."""
    assert "224.0.0.18" not in nodes[name].check_output("ip maddr show dev eth0")


def test_adverts_arrive_by_unicast_from_the_master(host, lb2):
    """lb2 receives lb1's adverts addressed to lb2 itself: VRRP v3, router id 51, priority 150,
    an advert every 50 centiseconds. (`host`, lb1, orders the test before the failover, after
    which lb2 sends the adverts.)"""
    code = (
        "import socket\n"
        "s=socket.socket(socket.AF_INET, socket.SOCK_RAW, 112); s.settimeout(5)\n"
        "p=s.recv(256); h=(p[0]&15)*4\n"
        "print(socket.inet_ntoa(p[12:16]), socket.inet_ntoa(p[16:20]), p[h]>>4, p[h+1], p[h+2],"
        " int.from_bytes(p[h+4:h+6], 'big') & 0xfff)"
    )
    got = tuple(lb2.check_output(f'python3 -c "{code}"').split())
    assert got == (ADDRESS["lb1"], ADDRESS["lb2"], "3", "51", "150", "50")


def test_vip_on_the_higher_priority_node_only(host, lb2):
    assert holds_vip(host), "lb1 (priority 150) does not hold the VIP"
    assert not holds_vip(lb2), "lb2 holds the VIP as well"
    assert states(host)[-1] == "MASTER" and states(lb2)[-1] == "BACKUP"


def test_vip_answers_the_peer(host, lb2):
    """lb2 reaches sshd through the VIP, at lb1's MAC address (ARP answered by the master)."""
    assert connects(lb2, VIP, 22)
    assert vip_neighbour(lb2) == mac(host)


def test_reload_keeps_the_vip_and_the_state(host, lb2):
    """`systemctl reload keepalived` (a configuration change) on the master moves nothing."""
    before = (states(host), states(lb2))
    host.run_expect([0], "systemctl reload keepalived")
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert holds_vip(host) and not holds_vip(lb2), "the VIP moved on a reload"
        time.sleep(0.5)
    assert (states(host), states(lb2)) == before


@pytest.fixture
def haproxy_restored(host):
    yield
    host.run("systemctl start haproxy")


def test_dead_haproxy_moves_the_vip_which_stays_after_it_returns(
    host, lb2, haproxy_restored, capsys
):
    assert holds_vip(host) and not holds_vip(lb2), "the VIP is not on lb1 to start with"
    start = time.monotonic()
    # The containers share the host's clock: lb1's time of the stop against the notify logs.
    stopped = float(host.check_output("date +%s.%N && systemctl stop haproxy"))
    while not holds_vip(lb2) and time.monotonic() - start < 10:
        time.sleep(0.1)
    moved = time.monotonic() - start
    fault = next((t for t, state in transitions(host) if t > stopped and state == "FAULT"), None)
    master = next((t for t, state in transitions(lb2) if t > stopped and state == "MASTER"), None)
    with capsys.disabled():
        print(
            f"\nVIP on lb2 {moved:.2f} s after `systemctl stop haproxy` on lb1 (polled);"
            f" notify logs: lb1 FAULT +{(fault or stopped) - stopped:.2f} s,"
            f" lb2 MASTER +{(master or stopped) - stopped:.2f} s"
        )
    assert holds_vip(lb2), "the VIP did not reach lb2 within 10 s"
    # The takeover as lb2's keepalived logged it (polling through podman exec adds its own
    # latency on a loaded machine); the polled time when the log has no line.
    takeover = master - stopped if master is not None else moved
    assert takeover < 4, f"the VIP took {takeover:.2f} s to move (4 s allowed)"
    assert not holds_vip(host), "lb1 kept the VIP"
    assert states(host)[-1] == "FAULT" and states(lb2)[-1] == "MASTER"
    # lb1 now reaches the VIP at lb2 (whose gratuitous ARP replaced lb1's local address).
    assert connects(host, VIP, 22)
    assert vip_neighbour(host) == mac(lb2)

    # HAProxy back on lb1: it leaves FAULT for BACKUP and, without preemption, the VIP stays.
    host.run_expect([0], "systemctl start haproxy")
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        assert holds_vip(lb2) and not holds_vip(host), "the VIP moved back to lb1"
        time.sleep(0.5)
    assert states(host)[-1] == "BACKUP", f"lb1 is {states(host)[-1]}, not BACKUP, with HAProxy back"
    assert "instance gpufleet_vip is now MASTER" in lb2.check_output(
        "journalctl -t gpufleet-keepalived --no-pager -o cat"
    )
