"""Fabric port checks on the recorded ibstat outputs, and the fleet firmware check.

Healthy recordings pass; a port down or at a lower rate fails naming the node, the rail and
the HCA port. The recorded down ports are Ethernet ports beside an InfiniBand fabric (not
rails), so a rail that is down or slow is a constructed variation of the healthy recording,
named CONSTRUCTED in each test; the recorded down port is also judged as if the plan had
made it a rail.
"""

from __future__ import annotations

import re

import pytest
from test_fabric_data import (
    DEVINFO_ROCE,
    IBSTAT_IB,
    IBSTAT_IB_ETH_DOWN,
    IBSTAT_ROCE,
    recorded,
)

from gpufleet.fabric.fleet import check_firmware
from gpufleet.fabric.node import (
    check_ports,
    failure_lines,
    merge_ports,
    parse_ibstat,
    parse_ibv_devinfo,
    pcie_generation,
    select_rails,
)


def _vary(text: str, ca: str, old: str, new: str) -> str:
    """The recording with `old` replaced by `new` inside the block of CA `ca` only."""
    start = text.index(f"CA '{ca}'")
    end = text.find("\nCA '", start + 1)
    end = len(text) if end < 0 else end
    block = text[start:end]
    assert old in block, f"{old!r} not in the block of {ca}"
    return text[:start] + block.replace(old, new, 1) + text[end:]


def _judge(text: str, fabric: str, node: str = "gpu1"):
    ports = merge_ports(ibstat=parse_ibstat(text))
    rails = select_rails(ports, fabric_type=fabric, rails=8, rate=400)["rails"]
    layer = "InfiniBand" if fabric == "infiniband" else "Ethernet"
    return rails, check_ports(node, ports, rails, rate=400, link_layer=layer)


@pytest.mark.parametrize(
    ("name", "fabric"),
    [(IBSTAT_IB, "infiniband"), (IBSTAT_IB_ETH_DOWN, "infiniband"), (IBSTAT_ROCE, "roce")],
)
def test_healthy_recordings_pass(name, fabric):
    _, results = _judge(recorded(name), fabric)
    assert failure_lines(results) == []
    # Every rail judged on presence, state, rate and link layer: 8 x 4 results, all pass.
    assert len(results) == 32
    assert {r["status"] for r in results} == {"pass"}
    assert {r["check"] for r in results} == {"present", "state", "rate", "link_layer"}


def test_constructed_rail_down_fails_naming_it():
    # CONSTRUCTED: the healthy IB recording with mlx5_4's cable pulled (State Down, Physical
    # state Polling, as a port without a link reports).
    text = _vary(recorded(IBSTAT_IB), "mlx5_4", "State: Active", "State: Down")
    text = _vary(text, "mlx5_4", "Physical state: LinkUp", "Physical state: Polling")
    rails, results = _judge(text, "infiniband", node="gpu2")
    # Still 8 candidates for 8 rails: the down port stays a rail (rail 2) and is reported.
    assert rails[2]["hca"] == "mlx5_4"
    assert failure_lines(results) == [
        "gpu2 rail 2 mlx5_4:1: state Down (physical state Polling), expected Active/LinkUp"
    ]


def test_constructed_rail_at_a_lower_rate_fails_naming_it():
    # CONSTRUCTED: the healthy RoCE recording with mlx5_6 trained at 200 instead of 400.
    text = _vary(recorded(IBSTAT_ROCE), "mlx5_6", "Rate: 400", "Rate: 200")
    # Only 7 ports remain at 400 beside the four 100G cards, so the rate alone cannot pick 8
    # rails; the CA type of the ports at 400 (MT4129) does, and the slow rail stays rail 4.
    rails, results = _judge(text, "roce", node="gpu3")
    assert rails[4]["hca"] == "mlx5_6"
    assert failure_lines(results) == ["gpu3 rail 4 mlx5_6:1: rate 200, expected 400"]
    ports = merge_ports(ibstat=parse_ibstat(text))
    excluded = select_rails(ports, fabric_type="roce", rails=8, rate=400)["excluded"]
    assert {e["key"]: e["why"] for e in excluded} == {
        f"mlx5_{i}:1": "CA type MT4125, the rails are MT4129" for i in (1, 2, 7, 8)
    }


def test_constructed_ib_rail_at_200_fails_naming_it():
    # CONSTRUCTED: the healthy IB recording with mlx5_9 at 200 (HDR speed on an NDR fabric).
    text = _vary(recorded(IBSTAT_IB), "mlx5_9", "Rate: 400", "Rate: 200")
    _, results = _judge(text, "infiniband", node="gpu4")
    assert failure_lines(results) == ["gpu4 rail 7 mlx5_9:1: rate 200, expected 400"]


def test_recorded_down_port_judged_as_a_rail():
    # The recorded Down/Disabled Ethernet port mlx5_2 as the plan's rail 0 on an IB fabric:
    # every check that can fail does, each naming the port.
    ports = merge_ports(ibstat=parse_ibstat(recorded(IBSTAT_IB_ETH_DOWN)))
    results = check_ports(
        "gpu5",
        ports,
        [{"rail": 0, "hca": "mlx5_2", "port": 1}, {"rail": 1, "hca": "mlx5_77", "port": 1}],
        rate=400,
        link_layer="InfiniBand",
    )
    lines = failure_lines(results)
    assert lines[:3] == [
        "gpu5 rail 0 mlx5_2:1: state Down (physical state Disabled), expected Active/LinkUp",
        "gpu5 rail 0 mlx5_2:1: rate 40, expected 400",
        "gpu5 rail 0 mlx5_2:1: link layer Ethernet, expected InfiniBand",
    ]
    assert re.fullmatch(
        r"gpu5 rail 1 mlx5_77:1: port missing \(ports seen: mlx5_0:1, mlx5_1:1, .*\),"
        r" expected present",
        lines[3],
    )
    assert len(lines) == 4


def test_unknown_when_the_tool_printing_it_did_not_run():
    # ibv_devinfo (recorded) prints no rate and no physical state: the rate is unknown, the
    # state is judged from PORT_ACTIVE.
    ports = merge_ports(ibv_devinfo=parse_ibv_devinfo(recorded(DEVINFO_ROCE)))
    results = check_ports(
        "gpu6",
        ports,
        [{"rail": 0, "hca": "mlx5_0", "port": 1}],
        rate=400,
        link_layer="Ethernet",
        pcie_width=16,
    )
    status = {r["check"]: r["status"] for r in results}
    assert status == {
        "present": "pass",
        "state": "pass",
        "rate": "unknown",
        "link_layer": "pass",
        "pcie_width": "unknown",
    }
    assert failure_lines(results) == [
        "gpu6 rail 0 mlx5_0:1: rate not read, expected 400",
        "gpu6 rail 0 mlx5_0:1: PCIe link width not read, expected 16",
    ]


def test_pcie_width_and_speed():
    # constructed: PCI link data as the module reads it from sysfs, one NIC trained at x8 Gen4.
    ports = merge_ports(
        ibstat=parse_ibstat(recorded(IBSTAT_IB)),
        pci={
            "mlx5_0": {"address": "0000:18:00.0", "width": 16, "speed": "32.0 GT/s PCIe"},
            "mlx5_1": {"address": "0000:29:00.0", "width": 8, "speed": "16.0 GT/s PCIe"},
        },
    )
    rails = [{"rail": 0, "hca": "mlx5_0", "port": 1}, {"rail": 1, "hca": "mlx5_1", "port": 1}]
    results = check_ports("gpu7", ports, rails, pcie_width=16, pcie_gen=5)
    assert failure_lines(results) == [
        "gpu7 rail 1 mlx5_1:1: PCIe link width 8, expected 16",
        "gpu7 rail 1 mlx5_1:1: PCIe link gen 4 (16.0 GT/s PCIe), expected 5",
    ]
    assert [pcie_generation(s) for s in ("2.5 GT/s PCIe", "8.0 GT/s PCIe", "64.0 GT/s")] == [
        1,
        3,
        6,
    ]
    assert pcie_generation("Unknown") is None


# --------------------------------------------------------------------------- fleet firmware


def _rails(name: str, fabric: str):
    ports = merge_ports(ibstat=parse_ibstat(recorded(name)))
    return ports, select_rails(ports, fabric_type=fabric, rails=8, rate=400)["rails"]


def test_firmware_equal_across_the_fleet_passes():
    ports, rails = _rails(IBSTAT_IB, "infiniband")
    fleet = {"gpu1": ports, "gpu2": ports}
    assert check_firmware(fleet, {"gpu1": rails, "gpu2": rails}) == []


def test_firmware_off_the_fleet_is_named():
    # Two nodes of the IB recording (ConnectX-7 firmware 28.41.1000) and one of the other IB
    # recording (28.39.1002): the odd node's eight rails are named with both versions.
    ib, ib_rails = _rails(IBSTAT_IB, "infiniband")
    old, old_rails = _rails(IBSTAT_IB_ETH_DOWN, "infiniband")
    fleet = {"gpu1": ib, "gpu2": ib, "gpu3": old}
    lines = check_firmware(fleet, {"gpu1": ib_rails, "gpu2": ib_rails, "gpu3": old_rails})
    assert lines == [
        f"gpu3 mlx5_{i} (MT4129): firmware 28.39.1002, fleet runs 28.41.1000 (16 HCAs on 2 nodes)"
        for i in (0, 3, 4, 5, 6, 9, 10, 11)
    ]


def test_firmware_compared_per_ca_type():
    # The RoCE recording: ConnectX-7 (28.39.1002) and ConnectX-6 Dx (22.39.1002) on one node
    # differ by model, not by mistake; all ports compared (no rails given).
    roce = merge_ports(ibstat=parse_ibstat(recorded(IBSTAT_ROCE)))
    assert check_firmware({"gpu1": roce, "gpu2": roce}) == []
    # CONSTRUCTED: one ConnectX-6 Dx of gpu2 on another firmware.
    text = _vary(recorded(IBSTAT_ROCE), "mlx5_7", "22.39.1002", "22.36.1010")
    odd = merge_ports(ibstat=parse_ibstat(text))
    assert check_firmware({"gpu1": roce, "gpu2": odd, "gpu3": roce}) == [
        "gpu2 mlx5_7 (MT4125): firmware 22.36.1010, fleet runs 22.39.1002 (11 HCAs on 3 nodes)"
    ]
