"""gpufleet.fabric.node parsers on the recorded outputs, and on small constructed inputs.

Constructed inputs are named CONSTRUCTED_*; no recording shows `ibdev2netdev -v`, a garbage
line or an older topo -m header, so those are constructed.
"""

from __future__ import annotations

import pytest
from test_fabric_data import (
    DEVINFO_ROCE,
    IBDEV_DGX,
    IBDEV_ROCE,
    IBSTAT_IB,
    IBSTAT_IB_ETH_DOWN,
    IBSTAT_ROCE,
    TOPO_ROCE,
    TOPO_VM,
    recorded,
    recording_path,
)

from gpufleet.fabric.node import (
    FabricParseError,
    disagreements,
    merge_ports,
    nearest_gpu_nics,
    parse_ibdev2netdev,
    parse_ibstat,
    parse_ibv_devinfo,
    parse_topo_nics,
)

# --------------------------------------------------------------------------- ibstat


def test_ibstat_ib_all_active_space_indented():
    cas = parse_ibstat(recorded(IBSTAT_IB))
    assert list(cas) == [f"mlx5_{i}" for i in (0, 1, 4, 5, 6, 7, 8, 9)] + ["mlx5_bond_0"]
    first = cas["mlx5_0"]
    assert (first["ca_type"], first["firmware"], first["port_count"]) == ("MT4129", "28.41.1000", 1)
    assert first["ports"][1] == {
        "state": "Active",
        "physical_state": "LinkUp",
        "rate": 400,
        "base_lid": 128,
        "lmc": 0,
        "sm_lid": 1,
        "capability_mask": "0xa751e848",
        "port_guid": "0x58a2e10300a7820e",
        "link_layer": "InfiniBand",
    }
    bond = cas["mlx5_bond_0"]
    assert (bond["ca_type"], bond["firmware"]) == ("MT41692", "32.38.3056")
    assert bond["ports"][1]["rate"] == 200
    assert bond["ports"][1]["link_layer"] == "Ethernet"


def test_ibstat_eth_ports_down_tab_indented_no_final_newline():
    text = recorded(IBSTAT_IB_ETH_DOWN)
    assert "\t" in text and not text.endswith("\n")  # as recorded
    cas = parse_ibstat(text)
    assert len(cas) == 12
    down = {n: c["ports"][1] for n, c in cas.items() if c["ports"][1]["state"] != "Active"}
    assert sorted(down) == ["mlx5_2", "mlx5_7", "mlx5_8"]
    assert {(p["physical_state"], p["rate"], p["link_layer"]) for p in down.values()} == {
        ("Disabled", 40, "Ethernet")
    }
    # The last port of the file (no newline after it) is read whole.
    assert cas["mlx5_9"]["ports"][1]["link_layer"] == "InfiniBand"


def test_ibstat_roce_rates_and_types():
    cas = parse_ibstat(recorded(IBSTAT_ROCE))
    by_rate = {}
    for name, ca in cas.items():
        by_rate.setdefault((ca["ca_type"], ca["ports"][1]["rate"]), []).append(name)
    assert by_rate == {
        ("MT4129", 400): [f"mlx5_{i}" for i in (0, 10, 11, 3, 4, 5, 6, 9)],
        ("MT4125", 100): [f"mlx5_{i}" for i in (1, 2, 7, 8)],
    }
    assert {ca["ports"][1]["link_layer"] for ca in cas.values()} == {"Ethernet"}


# constructed: ibstat output with a line that is not `Key: value`.
CONSTRUCTED_IBSTAT_GARBAGE = (
    "CA 'mlx5_0'\n\tCA type: MT4129\n\tibpanic: ???\n\tthis is not ibstat\n"
)


def test_ibstat_garbage_names_the_line():
    with pytest.raises(FabricParseError) as err:
        parse_ibstat(CONSTRUCTED_IBSTAT_GARBAGE)
    assert str(err.value) == "ibstat: line 4: not a 'Key: value' line: 'this is not ibstat'"
    assert err.value.lineno == 4


def test_ibstat_without_a_ca_line_and_with_a_bad_rate():
    with pytest.raises(FabricParseError, match=r"^ibstat: line 1: expected a CA 'name' line"):
        parse_ibstat("ibstat: command not found\n")
    with pytest.raises(FabricParseError, match=r"line 4: Rate is not a number: 'Rate: fast'"):
        parse_ibstat("CA 'mlx5_0'\n\tFirmware version: 1\n\tPort 1:\n\t\tRate: fast\n")
    assert parse_ibstat("") == {}


# --------------------------------------------------------------------------- ibdev2netdev


def test_ibdev2netdev_dgx_crlf_recording():
    raw = recording_path(IBDEV_DGX).read_bytes()
    assert b"\r\n" in raw  # kept byte-exact, CRLF as in the source README
    lines = parse_ibdev2netdev(recorded(IBDEV_DGX))
    assert [(x["hca"], x["netdev"], x["netdev_state"]) for x in lines] == [
        ("mlx5_0", "ibp24s0", "Up"),
        ("mlx5_1", "enp41s0f0np0", "Down"),
        ("mlx5_10", "ibp220s0", "Up"),
        ("mlx5_2", "enp41s0f1np1", "Down"),
        ("mlx5_3", "ibp64s0", "Up"),
        ("mlx5_4", "ibp79s0", "Up"),
        ("mlx5_5", "ibp94s0", "Up"),
        ("mlx5_6", "ibp154s0", "Up"),
        ("mlx5_7", "enp170s0np0", "Up"),
        ("mlx5_8", "ibp192s0", "Up"),
        ("mlx5_9", "ibp206s0", "Up"),
    ]
    assert {x["port"] for x in lines} == {1}


def test_ibdev2netdev_roce_with_bond():
    lines = parse_ibdev2netdev(recorded(IBDEV_ROCE))
    assert len(lines) == 12
    assert [x["hca"] for x in lines if x["netdev"] == "bond0"] == ["mlx5_3", "mlx5_9"]
    assert [x["netdev"] for x in lines if x["netdev_state"] == "Down"] == [
        "enp210s0f1np1",
        "enp83s0f1np1",
    ]


# constructed: `ibdev2netdev -v` lines shaped after public posts of that form (PCI address,
# HCA, CA type and part number, description, firmware, port state), one with "(DOWN )".
CONSTRUCTED_IBDEV_VERBOSE = (
    "0000:18:00.0 mlx5_0 (MT4129 - MCX75310AAS-NEAT) NVIDIA ConnectX-7 HHHL adapter card,"
    " 400Gb/s NDR IB fw 28.39.1002 port 1 (ACTIVE) ==> ibp24s0 (Up)\n"
    "0000:29:00.1 mlx5_2 (MT4125 - NA)  fw 22.38.1002 port 1 (DOWN ) ==> enp41s0f1np1 (Down)\n"
)


def test_ibdev2netdev_verbose_form():
    first, second = parse_ibdev2netdev(CONSTRUCTED_IBDEV_VERBOSE)
    assert first == {
        "hca": "mlx5_0",
        "port": 1,
        "netdev": "ibp24s0",
        "netdev_state": "Up",
        "pci_address": "0000:18:00.0",
        "ca_type": "MT4129",
        "part_number": "MCX75310AAS-NEAT",
        "description": "NVIDIA ConnectX-7 HHHL adapter card, 400Gb/s NDR IB",
        "firmware": "28.39.1002",
        "port_state": "ACTIVE",
    }
    assert (second["port_state"], second["part_number"], second["description"]) == (
        "DOWN",
        "NA",
        None,
    )
    ports = merge_ports(ibdev2netdev=[first, second])
    assert ports["mlx5_2:1"]["state"] == "Down"
    assert ports["mlx5_0:1"]["pci_address"] == "0000:18:00.0"


def test_ibdev2netdev_garbage_names_the_line():
    text = "mlx5_0 port 1 ==> ib0 (Up)\nmlx5_1 port one ==> ib1 (Up)\n"
    with pytest.raises(FabricParseError) as err:
        parse_ibdev2netdev(text)
    assert str(err.value) == (
        "ibdev2netdev: line 2: expected 'HCA port N ==> NETDEV (State)':"
        " 'mlx5_1 port one ==> ib1 (Up)'"
    )


# --------------------------------------------------------------------------- ibv_devinfo


def test_ibv_devinfo_roce_recording():
    dev = parse_ibv_devinfo(recorded(DEVINFO_ROCE))["mlx5_0"]
    assert (dev["fw_ver"], dev["vendor_part_id"], dev["board_id"]) == (
        "28.43.2026",
        "4129",
        "MT_0000000838",
    )
    port = dev["ports"][1]
    assert (port["state"], port["state_name"], port["link_layer"], port["active_mtu"]) == (
        "PORT_ACTIVE (4)",
        "ACTIVE",
        "Ethernet",
        "4096 (5)",
    )
    merged = merge_ports(ibv_devinfo={"mlx5_0": dev})["mlx5_0:1"]
    assert (merged["state"], merged["link_layer"], merged["firmware"], merged["ca_type"]) == (
        "Active",
        "Ethernet",
        "28.43.2026",
        "MT4129",
    )
    assert merged["rate"] is None  # ibv_devinfo without -v prints no rate


def test_ibv_devinfo_garbage_and_no_devices():
    assert parse_ibv_devinfo("No IB devices found\n") == {}
    with pytest.raises(FabricParseError, match=r"^ibv_devinfo: line 1: expected 'hca_id:' first"):
        parse_ibv_devinfo("Failed to get IB devices list: Function not implemented\n")


# --------------------------------------------------------------------------- nvidia-smi topo -m


def test_topo_nics_hgx_h100_roce():
    topo = parse_topo_nics(recorded(TOPO_ROCE))
    assert topo["nics"] == {f"NIC{i}": f"mlx5_{i}" for i in range(12)}
    assert sorted(topo["gpus"]) == list(range(8))
    # Each GPU's row has exactly one PIX NIC (same PCIe switch); all others are NODE.
    pix = {g: [h for h, lv in links.items() if lv == "PIX"] for g, links in topo["gpus"].items()}
    assert pix == {
        0: ["mlx5_0"],
        1: ["mlx5_1"],
        2: ["mlx5_2"],
        3: ["mlx5_5"],
        4: ["mlx5_6"],
        5: ["mlx5_7"],
        6: ["mlx5_8"],
        7: ["mlx5_11"],
    }
    assert {lv for links in topo["gpus"].values() for lv in links.values()} == {"PIX", "NODE"}
    nearest = nearest_gpu_nics(topo, [f"mlx5_{i}" for i in range(12)])
    assert nearest[3] == ("mlx5_5", "PIX")


def test_topo_nics_vm_without_nics_and_ansi_header():
    # The lent VM's header row carries ANSI underline escapes; it has no NIC column.
    assert parse_topo_nics(recorded(TOPO_VM)) == {"gpus": {0: {}}, "nics": {}}


def test_topo_nics_bad_cell_and_no_matrix():
    # constructed: the recording with GPU0-NIC0 changed to a link type topo -m never prints.
    bad = recorded(TOPO_ROCE).replace("\tPIX\tNODE", "\tQPI\tNODE", 1)
    with pytest.raises(FabricParseError, match=r"line 2: GPU0-NIC0 is 'QPI', not one of PIX"):
        parse_topo_nics(bad)
    with pytest.raises(FabricParseError, match="no GPU0 header row found"):
        parse_topo_nics("NVIDIA-SMI has failed because it couldn't communicate with the driver\n")


# --------------------------------------------------------------------------- tools that disagree


def test_outputs_of_one_machine_agree():
    # The RoCE node's ibdev2netdev alone, and ibstat with an ibdev2netdev built from it
    # (constructed: the IB recording's CAs named with their IPoIB netdevs), agree.
    assert disagreements(merge_ports(ibdev2netdev=parse_ibdev2netdev(recorded(IBDEV_ROCE)))) == []
    cas = parse_ibstat(recorded(IBSTAT_IB))
    links = [
        {
            "hca": ca,
            "port": 1,
            "netdev": f"ib{n}" if "bond" not in ca else "bond0",
            "netdev_state": "Up",
        }
        for n, ca in enumerate(cas)
    ]
    assert disagreements(merge_ports(ibstat=cas, ibdev2netdev=links)) == []


def test_the_labs_two_replays_come_from_two_machines():
    # The lab replays ibstat of a gpud H100 fixture and ibdev2netdev of a DGX-class node: their
    # HCAs do not match, and the merged facts say so instead of pairing mlx5_1 (InfiniBand in
    # ibstat) with the DGX's Ethernet netdev enp41s0f0np0.
    ports = merge_ports(
        ibstat=parse_ibstat(recorded(IBSTAT_IB)),
        ibdev2netdev=parse_ibdev2netdev(recorded(IBDEV_DGX)),
    )
    assert disagreements(ports) == [
        "mlx5_1:1: link layer InfiniBand (printed) but its netdev enp41s0f0np0 has an Ethernet"
        " name",
        "mlx5_2:1 is listed by ibdev2netdev but not by ibstat",
        "mlx5_3:1 is listed by ibdev2netdev but not by ibstat",
        "mlx5_7:1: link layer InfiniBand (printed) but its netdev enp170s0np0 has an Ethernet name",
        "mlx5_10:1 is listed by ibdev2netdev but not by ibstat",
        "mlx5_bond_0:1 is listed by ibstat but not by ibdev2netdev",
    ]
