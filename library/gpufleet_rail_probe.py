#!/usr/bin/python
"""Ansible module: probe every rail peer from this node, sourced from the rail's address.

DOCUMENTATION, EXAMPLES and RETURN below. The verdict (which failures mean a swapped
cable, a short MTU, a dead peer) is the fabric_rails role's filter fabric_rail_probe_problems.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: gpufleet_rail_probe
short_description: Ping every rail peer at the rail MTU, don't-fragment, from the rail
description:
  - For each rail of this node and each peer with an address on that rail, one ICMP echo of
    the rail MTU (payload MTU - 28) with don't-fragment set, sourced from this node's rail address
    (so policy routing must send it out of the rail's interface).
  - When that fails, a small echo tells an MTU problem from a dead path, and ARP probes on the
    rail's interface for the peer's addresses on the other rails tell a swapped cable (the
    interface hears another rail's network).
  - Reads only; never changes anything (check mode safe).
options:
  rails:
    description: This node's rails, C({rail, netdev, address}).
    type: list
    elements: dict
    required: true
  peers:
    description: Peer nodes, C({name, rails [{rail, address}]}).
    type: list
    elements: dict
    required: true
  mtu:
    description: The rails' MTU.
    type: int
    required: true
  timeout:
    description: Seconds each probe waits.
    type: int
    default: 2
requirements: [iputils-ping, iputils-arping]
"""

EXAMPLES = r"""
- name: Probe the rail peers
  gpufleet_rail_probe:
    rails: [{rail: 0, netdev: eth1, address: 198.18.10.21}]
    peers: [{name: gpu2, rails: [{rail: 0, address: 198.18.10.22}]}]
    mtu: 9000
"""

RETURN = r"""
results:
  description: One entry per (rail, peer) with C(ok), C(small_ok) and C(seen_on) (rails whose
    peer addresses answered ARP on this rail's interface, probed only after a failure).
  type: list
  returned: always
"""


def _run(argv: list[str], timeout: int) -> bool:
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout + 3, check=False)
        return proc.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def probe(rail: dict[str, Any], peer: dict[str, Any], mtu: int, timeout: int) -> dict[str, Any]:
    by_rail = {int(x["rail"]): str(x["address"]) for x in peer.get("rails", [])}
    r = int(rail["rail"])
    target = by_rail[r]
    base = ["ping", "-n", "-q", "-c", "1", "-W", str(timeout), "-I", str(rail["address"])]
    ok = _run([*base, "-M", "do", "-s", str(mtu - 28), target], timeout)
    res: dict[str, Any] = {"rail": r, "peer": peer["name"], "address": target, "ok": ok}
    res["small_ok"] = ok or _run([*base, target], timeout)
    res["seen_on"] = []
    if not ok:
        for s, addr in sorted(by_rail.items()):
            arp = ["arping", "-q", "-c", "1", "-w", str(timeout), "-I", str(rail["netdev"]), addr]
            if _run(arp, timeout):
                res["seen_on"].append(s)
    return res


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "rails": {"type": "list", "elements": "dict", "required": True},
            "peers": {"type": "list", "elements": "dict", "required": True},
            "mtu": {"type": "int", "required": True},
            "timeout": {"type": "int", "default": 2},
        },
        supports_check_mode=True,
    )
    p = module.params
    for tool in ("ping", "arping"):
        if module.get_bin_path(tool) is None:
            module.fail_json(msg=f"{tool} is not installed (packages iputils-ping, iputils-arping)")
    jobs = [
        (rail, peer)
        for rail in p["rails"]
        for peer in p["peers"]
        if any(int(x["rail"]) == int(rail["rail"]) for x in peer.get("rails", []))
    ]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda j: probe(j[0], j[1], p["mtu"], p["timeout"]), jobs))
    module.exit_json(changed=False, results=results)


if __name__ == "__main__":
    main()
