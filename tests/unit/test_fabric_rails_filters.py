"""The fabric_rails role's filters (roles/fabric_rails/filter_plugins), on constructed inputs.

The `ip -j` documents below are constructed in the shape iproute2 prints (trimmed to the
keys the filters read); molecule and the lab run the same filters on real kernels.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[2] / "roles/fabric_rails/filter_plugins/fabric_rails.py"
_spec = importlib.util.spec_from_file_location("fabric_rails_filters", PLUGIN)
assert _spec and _spec.loader
fr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fr)

RAILS = [
    {"rail": 0, "address": "198.18.10.21", "prefix": 24},
    {"rail": 1, "address": "198.18.11.21", "prefix": 24},
]
CIDRS = ["198.18.10.0/24", "198.18.11.0/24"]
LINKS = [
    {"ifname": "lo", "max_mtu": 0},
    {"ifname": "eth1", "max_mtu": 9216},
    {"ifname": "eth2", "max_mtu": 9216},
]


def plan(interfaces=("eth1", "eth2"), rails=RAILS, cidrs=CIDRS):
    return fr.rail_plan(list(rails), list(interfaces), list(cidrs), 100, 1000)


def test_the_plugin_exports_every_filter():
    assert set(fr.FilterModule().filters()) == {
        "fabric_rail_plan",
        "fabric_rail_problems",
        "fabric_rail_state_problems",
        "fabric_rail_probe_problems",
        "fabric_rail_ring_peers",
    }


def test_ring_peers_wrap_around_and_stop_at_count():
    hosts = ["gpu3", "gpu1", "gpu2", "head1"]
    rails = [[{"rail": 0, "address": f"198.18.10.{i}", "prefix": 24}] for i in (3, 1, 2, 9)]
    peers = fr.ring_peers("gpu3", hosts, rails, count=2)
    assert peers == [
        {"name": "head1", "rails": [{"rail": 0, "address": "198.18.10.9"}]},
        {"name": "gpu1", "rails": [{"rail": 0, "address": "198.18.10.1"}]},
    ]
    # every other host, never itself, when count is larger than the ring
    assert [p["name"] for p in fr.ring_peers("gpu1", hosts, rails, count=32)] == [
        "gpu2",
        "gpu3",
        "head1",
    ]
    assert fr.ring_peers("gpu1", ["gpu1"], [rails[1]]) == []


def test_plan_tables_and_priorities_follow_the_rail_number():
    p = plan()
    assert [(x["rail"], x["netdev"], x["table"], x["priority"]) for x in p] == [
        (0, "eth1", 100, 1000),
        (1, "eth2", 101, 1001),
    ]


def test_a_good_config_has_no_problems():
    assert fr.rail_problems(plan(), 9000, LINKS) == []


def test_every_problem_is_named_by_rail():
    bad_rails = [{**RAILS[0], "address": "198.18.11.21"}, RAILS[1]]
    problems = fr.rail_problems(plan(("eth1", "ib7"), bad_rails), 9000, LINKS)
    assert problems == [
        "rail 0: 198.18.11.21/24 is not an address of rail 0's subnet 198.18.10.0/24",
        "rail 1: interface ib7 does not exist on this node (it has: eth1, eth2)",
    ]


def test_mtu_out_of_range_or_above_the_device():
    assert fr.rail_problems(plan(), 65000, LINKS) == [
        "fabric_rails_mtu 65000 is not an MTU between 576 and 9216"
    ]
    small = [{"ifname": "eth1", "max_mtu": 1500}, {"ifname": "eth2", "max_mtu": 9216}]
    assert fr.rail_problems(plan(), 9000, small) == [
        "rail 0: MTU 9000 is above eth1's maximum 1500"
    ]
    assert fr.rail_problems(plan(), "9000", LINKS)[0].startswith("fabric_rails_mtu '9000'")


def test_same_interface_twice_and_too_few_interfaces_or_subnets():
    assert fr.rail_problems(plan(("eth1", "eth1")), 9000, LINKS) == [
        "rail 1: interface eth1 is already rail 0's"
    ]
    assert fr.rail_problems(plan(("eth1",), cidrs=CIDRS[:1]), 9000, LINKS) == [
        "rail 1: no interface (fabric_rails_interfaces is too short)",
        "rail 1: no subnet (fabric_rails_cidrs has fewer entries than rails)",
    ]
    assert fr.rail_problems([], 9000, LINKS)[0].startswith("no rails")


def _addr(dev, address, mtu=9000, up=True):
    return {
        "ifname": dev,
        "flags": ["BROADCAST", "UP", "LOWER_UP"] if up else ["BROADCAST"],
        "operstate": "UP" if up else "DOWN",
        "mtu": mtu,
        "addr_info": [{"family": "inet", "local": address, "prefixlen": 24}],
    }


RULES = [{"src": "198.18.10.21", "table": "100"}, {"src": "198.18.11.21", "table": "101"}]
ROUTES = {
    "100": [{"dst": "198.18.10.0/24", "dev": "eth1"}],
    "101": [{"dst": "198.18.11.0/24", "dev": "eth2"}],
}


def test_kernel_state_as_planned_has_no_problems():
    addrs = [_addr("eth1", "198.18.10.21"), _addr("eth2", "198.18.11.21")]
    assert fr.rail_state_problems(plan(), 9000, addrs, RULES, ROUTES) == []


def test_kernel_state_problems_name_the_rail_and_what_was_seen():
    addrs = [_addr("eth1", "198.18.10.99", mtu=1500), _addr("eth2", "198.18.11.21", up=False)]
    problems = fr.rail_state_problems(plan(), 9000, addrs, RULES[:1], {"100": [], "101": []})
    assert problems == [
        "rail 0: eth1 does not hold 198.18.10.21/24 (it holds: 198.18.10.99/24)",
        "rail 0: eth1 has MTU 1500, not 9000",
        "rail 0: table 100 has no route to 198.18.10.0/24 on eth1",
        "rail 1: eth2 is down (operstate DOWN)",
        "rail 1: no rule 'from 198.18.11.21 lookup 101'",
        "rail 1: table 101 has no route to 198.18.11.0/24 on eth2",
    ]
    # without policy routing, rules and tables are not asked for
    no_pr = fr.rail_state_problems(plan(), 9000, addrs, [], {}, policy_routing=False)
    assert no_pr == problems[:2] + problems[3:4]


def test_probe_verdicts_swap_short_mtu_and_silence():
    results = [
        {"rail": 0, "peer": "gpu2", "address": "198.18.10.22", "ok": True, "small_ok": True},
        {"rail": 1, "peer": "gpu2", "address": "198.18.11.22", "ok": False, "small_ok": False,
         "seen_on": [0]},
        {"rail": 0, "peer": "gpu3", "address": "198.18.10.23", "ok": False, "small_ok": True,
         "seen_on": []},
        {"rail": 1, "peer": "gpu3", "address": "198.18.11.23", "ok": False, "small_ok": False,
         "seen_on": [1]},
    ]  # fmt: skip
    assert fr.probe_problems("gpu1", results, 9000) == [
        "gpu1 rail 1: gpu2 (198.18.11.22) does not answer; gpu1's rail 1 interface hears the "
        "peers of rail 0: its cable is on rail 0's network (rails swapped)",
        "gpu1 rail 0: gpu3 (198.18.10.23) answers small pings but not 9000-byte packets with "
        "don't-fragment set: an MTU below 9000 on the path",
        "gpu1 rail 1: gpu3 (198.18.11.23) does not answer on rail 1",
    ]
