"""firewall: the ruleset on the node and what other hosts can reach, probed from them."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

HOST = "gpufleet-mol-firewall-default"
NODE = "198.19.232.10"
testinfra_hosts = [f"podman://{HOST}"]
# Shown under a failed test (tests/molecule/gpufleet_testinfra.py).
ON_FAILURE = ["journalctl -u nftables --no-pager -n 40"]

SCANNER = base64.b64encode((Path(__file__).parent / "scan.py").read_bytes()).decode()


def answering_ports(prober, first: int = 1, last: int = 65535) -> set[int]:
    """Ports of the node that answer (handshake or RST) as seen from `prober`."""
    out = prober.check_output(
        f"echo {SCANNER} | base64 -d > /tmp/scan.py && python3 /tmp/scan.py {NODE} {first} {last}"
    )
    found = json.loads(out)
    return set(found["open"]) | set(found["refused"])


def tcp_open(prober, port: int) -> bool:
    return port in answering_ports(prober, port, port)


# --- from outside ----------------------------------------------------------------------


def test_client_full_scan_sees_only_ssh_and_lb_frontend(client):
    # The client is in the admin CIDRs and the frontend's client CIDR; 6817, 8080, 9100
    # and 9400 also listen on the node but must stay silent.
    assert answering_ports(client) == {22, 443}


@pytest.mark.parametrize(
    ("port", "reachable"), [(9100, True), (9400, True), (22, False), (8080, False), (6817, False)]
)
def test_monitoring_node_reaches_exporters_only(mon, port, reachable):
    assert tcp_open(mon, port) is reachable


@pytest.mark.parametrize(
    ("port", "reachable"), [(6817, True), (9100, False), (9400, False), (22, False), (8080, False)]
)
def test_cluster_peer_reaches_slurm_not_exporters(peer, port, reachable):
    assert tcp_open(peer, port) is reachable


def _send_vrrp(prober, marker: str) -> None:
    prober.check_output(
        'python3 -c "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_RAW,112);'
        f"[s.sendto(b'{marker}',('{NODE}',0)) for _ in range(3)]\""
    )


def test_vrrp_accepted_from_lb_peer_only(host, peer, client):
    _send_vrrp(client, "from-client")
    _send_vrrp(peer, "from-peer")
    time.sleep(1)
    seen = set(host.file("/run/vrrp-seen").content_string.split())
    assert "198.19.232.11" in seen
    assert "198.19.232.20" not in seen


# --- on the node -----------------------------------------------------------------------


def test_input_policy_is_drop(host):
    out = host.check_output("nft list chain inet gpufleet input")
    assert "policy drop;" in out


def test_rules_derived_from_groups(host):
    out = host.check_output("nft -s list table inet gpufleet")
    assert "ip saddr 198.19.232.12 tcp dport { 9100, 9400 } counter accept" in out
    assert "ip saddr 198.19.232.11 ip protocol vrrp counter accept" in out
    assert 'iifname { "rail0", "rail1" } counter accept' in out
    assert "ip saddr 198.19.232.10/31 tcp dport { 6817-6819, 60001-63000 } counter accept" in out


def test_ruleset_file_passes_nft_check(host):
    f = host.file("/etc/nftables.conf")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o600)
    assert host.run("nft -c -f /etc/nftables.conf").rc == 0


def test_nftables_enabled_at_boot(host):
    assert host.service("nftables").is_enabled


def test_no_revert_pending_after_converge(host):
    assert host.run("systemctl is-active gpufleet-firewall-revert.timer").stdout.strip() != "active"
    assert host.file("/var/lib/gpufleet-firewall/previous.nft").exists


def test_unconfirmed_ruleset_reverts_by_itself(host):
    before = host.check_output("nft -s list table inet gpufleet")
    host.check_output(
        "printf '%s\\n' 'table inet gpufleet' 'delete table inet gpufleet' "
        "'table inet gpufleet { chain input { "
        "type filter hook input priority filter; policy accept; }; }' "
        "> /tmp/open.nft"
    )
    # Long enough for the next check over a slow container connection, short for a test.
    host.check_output("/usr/local/sbin/gpufleet-nft-apply /tmp/open.nft 20")
    assert "policy accept" in host.check_output("nft list chain inet gpufleet input")
    time.sleep(25)
    assert host.check_output("nft -s list table inet gpufleet") == before
    # With the revert already fired, confirming must fail loudly.
    assert host.run("/usr/local/sbin/gpufleet-nft-confirm").rc == 1


def test_check_mode_on_converged_node_reports_no_change(check_mode_run):
    rc, out, changed = check_mode_run
    assert rc == 0, out[-3000:]
    assert "PLAY RECAP" in out
    assert changed == 0, out[-3000:]
