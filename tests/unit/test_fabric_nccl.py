"""Rail HCAs and /etc/nccl.conf of every recorded H100 system, against hand-checked answers.

Each test states the answer worked out by reading the recording, with the reasoning, and
compares the whole selection and the NCCL settings. The versions are the locks of the example
specs: inventories/example-ib (NCCL 2.21.5-1+cuda12.4) and inventories/example-roce (NCCL
2.26.2-1+cuda12.8, roce: traffic_class 106, dscp 26). The front-end interface name is an
input the recordings do not always hold: each test says where its name comes from.
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
    recorded,
)

from gpufleet.fabric.nccl import (
    NcclConfigError,
    nccl_settings,
    nccl_version,
    render_nccl_conf,
    roce_v2_gid_index,
    traffic_class,
)
from gpufleet.fabric.node import (
    RailSelectionError,
    merge_ports,
    parse_ibdev2netdev,
    parse_ibstat,
    parse_ibv_devinfo,
    parse_topo_nics,
    select_rails,
)

NCCL_IB = "2.21.5-1+cuda12.4"  # inventories/example-ib
NCCL_ROCE = "2.26.2-1+cuda12.8"  # inventories/example-roce
ROCE_CLASS = {"traffic_class": 106, "dscp": 26, "pfc_priority": 3, "ecn": True}


def _hcas(selection):
    return [f"{r['hca']}:{r['port']}" for r in selection["rails"]]


def _excluded(selection):
    return {e["key"]: e["why"] for e in selection["excluded"]}


# --------------------------------------------------------------------------- InfiniBand


def test_ib_all_active():
    # Reasoning: nine CAs. mlx5_0,1,4,5,6,7,8,9 are MT4129 (ConnectX-7) with Link layer
    # InfiniBand, Active/LinkUp, Rate 400: the 8 NDR rails. mlx5_bond_0 (MT41692, a BlueField-3
    # device id, Rate 200) is Ethernet: not an InfiniBand rail. No topo -m and no PCI address
    # from this host, so the rail order is the HCA names in natural order.
    ports = merge_ports(ibstat=parse_ibstat(recorded(IBSTAT_IB)))
    sel = select_rails(ports, fabric_type="infiniband", rails=8, rate=400)
    assert _hcas(sel) == [f"mlx5_{i}:1" for i in (0, 1, 4, 5, 6, 7, 8, 9)]
    assert _excluded(sel) == {
        "mlx5_bond_0:1": "link layer Ethernet (printed), fabric is InfiniBand"
    }
    assert sel["order"] == "HCA name (natural order)"
    # The recording holds no netdev names; the front end given here (bond0, for the LAG
    # device) is the test's input.
    conf = render_nccl_conf(
        sel["rails"], fabric_type="infiniband", nccl=NCCL_IB, socket_ifname="bond0"
    )
    # InfiniBand: exact HCA list and the front end only; no traffic class (no DSCP on IB),
    # no GID index (RoCE only), no GDR level (no topology matrix for this host).
    assert nccl_settings(conf) == {
        "NCCL_IB_HCA": "=mlx5_0:1,mlx5_1:1,mlx5_4:1,mlx5_5:1,mlx5_6:1,mlx5_7:1,mlx5_8:1,mlx5_9:1",
        "NCCL_SOCKET_IFNAME": "=bond0",
    }


def test_ib_with_ethernet_ports_down():
    # Reasoning: twelve CAs. The 8 InfiniBand ones (mlx5_0,3,4,5,6,9,10,11; MT4129, Active,
    # 400) are the rails. mlx5_1 (Ethernet, Active, 100), mlx5_2/7/8 (Ethernet, Down,
    # Disabled, 40) are ConnectX-6 Dx (MT4125) Ethernet ports: excluded by link layer, so
    # their being down does not matter to the fabric. Natural order puts mlx5_10 after mlx5_9.
    ports = merge_ports(ibstat=parse_ibstat(recorded(IBSTAT_IB_ETH_DOWN)))
    sel = select_rails(ports, fabric_type="infiniband", rails=8, rate=400)
    assert _hcas(sel) == [f"mlx5_{i}:1" for i in (0, 3, 4, 5, 6, 9, 10, 11)]
    assert sorted(_excluded(sel)) == ["mlx5_1:1", "mlx5_2:1", "mlx5_7:1", "mlx5_8:1"]
    conf = render_nccl_conf(
        sel["rails"], fabric_type="infiniband", nccl=NCCL_IB, socket_ifname="eno1"
    )
    # '=' keeps mlx5_1 (an Ethernet port) from matching the rails mlx5_10 and mlx5_11 as a
    # prefix; the list must not contain mlx5_1 itself.
    assert nccl_settings(conf)["NCCL_IB_HCA"] == (
        "=mlx5_0:1,mlx5_3:1,mlx5_4:1,mlx5_5:1,mlx5_6:1,mlx5_9:1,mlx5_10:1,mlx5_11:1"
    )
    assert "NCCL_IB_TC" not in conf and "NCCL_IB_GID_INDEX" not in conf


def test_dgx_ib_from_ibdev2netdev():
    # Reasoning: eleven ports. The eight ibp* netdevs are IPoIB interfaces (the kernel's ib
    # prefix; ibp24s0 ... ibp220s0 are the DGX H100 OSFP NDR ports), all Up: InfiniBand rails.
    # enp41s0f0np0/enp41s0f1np1 (Down) and enp170s0np0 (Up) are Ethernet. No ibstat on this
    # host, so the link layer is inferred from the names. The up Ethernet port enp170s0np0 is
    # taken as the front end (the post does not say what it is: the test's input); it is also
    # excluded as such. Natural order of the names equals the PCI bus order in the names
    # (24, 64, 79, 94, 154, 192, 206, 220).
    ports = merge_ports(ibdev2netdev=parse_ibdev2netdev(recorded(IBDEV_DGX)))
    sel = select_rails(ports, fabric_type="infiniband", rails=8, exclude_netdevs=["enp170s0np0"])
    assert [(r["hca"], r["netdev"]) for r in sel["rails"]] == [
        ("mlx5_0", "ibp24s0"),
        ("mlx5_3", "ibp64s0"),
        ("mlx5_4", "ibp79s0"),
        ("mlx5_5", "ibp94s0"),
        ("mlx5_6", "ibp154s0"),
        ("mlx5_8", "ibp192s0"),
        ("mlx5_9", "ibp206s0"),
        ("mlx5_10", "ibp220s0"),
    ]
    assert sorted(_excluded(sel)) == ["mlx5_1:1", "mlx5_2:1", "mlx5_7:1"]
    conf = render_nccl_conf(
        sel["rails"], fabric_type="infiniband", nccl=NCCL_IB, socket_ifname="enp170s0np0"
    )
    assert nccl_settings(conf) == {
        "NCCL_IB_HCA": "=mlx5_0:1,mlx5_3:1,mlx5_4:1,mlx5_5:1,mlx5_6:1,mlx5_8:1,mlx5_9:1,mlx5_10:1",
        "NCCL_SOCKET_IFNAME": "=enp170s0np0",
    }


# --------------------------------------------------------------------------- RoCE


def test_roce_all_active_from_ibstat():
    # Reasoning: twelve Ethernet ports, all Active. Eight MT4129 (ConnectX-7) at 400 and four
    # MT4125 (ConnectX-6 Dx) at 100. Link layer cannot tell them apart on RoCE and none is
    # down, so the profile rate (400) decides: the 100G ports are the front-end/storage
    # cards. Rails in natural order: mlx5_0,3,4,5,6,9,10,11.
    ports = merge_ports(ibstat=parse_ibstat(recorded(IBSTAT_ROCE)))
    sel = select_rails(ports, fabric_type="roce", rails=8, rate=400)
    assert _hcas(sel) == [f"mlx5_{i}:1" for i in (0, 3, 4, 5, 6, 9, 10, 11)]
    assert _excluded(sel) == {f"mlx5_{i}:1": "rate 100 below the rails' 400" for i in (1, 2, 7, 8)}
    # The front-end name is the test's input (the recording has no netdevs).
    conf = render_nccl_conf(
        sel["rails"], fabric_type="roce", nccl=NCCL_ROCE, socket_ifname="bond0", roce=ROCE_CLASS
    )
    # RoCE: the traffic class of the spec (106 = DSCP 26 << 2 | ECN 0b10); NCCL 2.26 picks the
    # RoCE v2 GID itself, so no NCCL_IB_GID_INDEX.
    assert nccl_settings(conf) == {
        "NCCL_IB_HCA": "=mlx5_0:1,mlx5_3:1,mlx5_4:1,mlx5_5:1,mlx5_6:1,mlx5_9:1,mlx5_10:1,mlx5_11:1",
        "NCCL_SOCKET_IFNAME": "=bond0",
        "NCCL_IB_TC": "106",
    }
    assert "# NCCL_IB_GID_INDEX not set: NCCL 2.26.2 (2.21 and later) picks" in conf


def test_roce_hgx_aihub0007_full_conf():
    # Reasoning: ibdev2netdev of tpgds-aihub0007 lists twelve Ethernet ports. mlx5_3 and
    # mlx5_9 are in bond0 (the bonded front end): never rails. mlx5_4 (enp83s0f1np1) and
    # mlx5_10 (enp210s0f1np1) are Down: the second ports of dual-port cards; with 8 up
    # candidates left for 8 rails they are dropped. The same host's topo -m puts each GPU
    # behind one PIX NIC: GPU0-7 -> mlx5_0,1,2,5,6,7,8,11, which is the rail order (rail r =
    # the NIC of GPU r). Every GPU-to-own-NIC link is PIX, within NCCL's default GDR level
    # PXB, which is written explicitly: NCCL_NET_GDR_LEVEL=PXB.
    ports = merge_ports(ibdev2netdev=parse_ibdev2netdev(recorded(IBDEV_ROCE)))
    topo = parse_topo_nics(recorded(TOPO_ROCE))
    sel = select_rails(ports, fabric_type="roce", rails=8, exclude_netdevs=["bond0"], topo=topo)
    assert [(r["rail"], r["hca"], r["netdev"]) for r in sel["rails"]] == [
        (0, "mlx5_0", "enp25s0np0"),
        (1, "mlx5_1", "enp41s0np0"),
        (2, "mlx5_2", "enp59s0np0"),
        (3, "mlx5_5", "enp92s0np0"),
        (4, "mlx5_6", "enp155s0np0"),
        (5, "mlx5_7", "enp170s0np0"),
        (6, "mlx5_8", "enp187s0np0"),
        (7, "mlx5_11", "enp218s0np0"),
    ]
    assert _excluded(sel) == {
        "mlx5_3:1": "bond0 is the front-end/storage interface",
        "mlx5_9:1": "bond0 is the front-end/storage interface",
        "mlx5_4:1": "down, and enough ports are up for the rails",
        "mlx5_10:1": "down, and enough ports are up for the rails",
    }
    assert sel["order"].startswith("GPU affinity")
    conf = render_nccl_conf(
        sel["rails"],
        fabric_type="roce",
        nccl=NCCL_ROCE,
        socket_ifname="bond0",
        roce=ROCE_CLASS,
        topo=topo,
    )
    assert conf == (
        '# NCCL system defaults written by gpufleet (docs/fabric.md, "NCCL settings");\n'
        "# the environment of a job overrides them.\n"
        "\n"
        "# The 8 fabric rails in rail order (rail r = mlx5_0:1 ...), exact names\n"
        "# ('=' prefix: without it mlx5_1 would also match mlx5_10 and mlx5_11).\n"
        "NCCL_IB_HCA==mlx5_0:1,mlx5_1:1,mlx5_2:1,mlx5_5:1,mlx5_6:1,mlx5_7:1,mlx5_8:1,mlx5_11:1\n"
        "\n"
        "# Bootstrap and socket traffic on the front-end interface only, never a rail or"
        " storage.\n"
        "NCCL_SOCKET_IFNAME==bond0\n"
        "\n"
        "# RoCE: NCCL's queue pairs carry ToS 106 (the spec's traffic_class: DSCP 26, ECN bits"
        " 10),\n"
        "# the DSCP the NIC and switches map to the lossless PFC priority.\n"
        "NCCL_IB_TC=106\n"
        "\n"
        "# NCCL_IB_GID_INDEX not set: NCCL 2.26.2 (2.21 and later) picks the RoCE v2 GID"
        " itself.\n"
        "\n"
        "# GPUDirect RDMA up to PXB: every GPU-to-own-rail link in nvidia-smi topo -m is PIX or"
        " PXB (worst PIX); NCCL's default made explicit.\n"
        "NCCL_NET_GDR_LEVEL=PXB\n"
    )


def test_gdr_beyond_pxb_is_refused_unless_accepted():
    # constructed: the aihub0007 matrix with GPU7's own NIC (mlx5_11) moved off its PCIe
    # switch (PIX -> NODE), as a NIC in the wrong slot would show.
    text = recorded(TOPO_ROCE)
    row = next(line for line in text.splitlines() if line.startswith("GPU7\t"))
    topo = parse_topo_nics(
        text.replace(row, row[: row.rindex("PIX")] + "NODE" + row[row.rindex("PIX") + 3 :])
    )
    assert topo["gpus"][7]["mlx5_11"] == "NODE"
    ports = merge_ports(ibdev2netdev=parse_ibdev2netdev(recorded(IBDEV_ROCE)))
    sel = select_rails(ports, fabric_type="roce", rails=8, exclude_netdevs=["bond0"], topo=topo)
    # GPU7 now has no single nearest NIC: the order falls back to the names (the same here).
    assert sel["order"] == "HCA name (natural order)"
    kwargs = {"fabric_type": "roce", "nccl": NCCL_ROCE, "socket_ifname": "bond0"}
    with pytest.raises(NcclConfigError) as err:
        render_nccl_conf(sel["rails"], roce=ROCE_CLASS, topo=topo, **kwargs)
    assert str(err.value).startswith("GPUDirect RDMA would be off for GPU7-mlx5_11 NODE")
    conf = render_nccl_conf(sel["rails"], roce=ROCE_CLASS, topo=topo, gdr_across_cpu=True, **kwargs)
    # NODE (same NUMA node, across host bridges) is NCCL's PHB.
    assert nccl_settings(conf)["NCCL_NET_GDR_LEVEL"] == "PHB"


def test_roce_without_topo_orders_by_name_and_the_bond_alone_is_excluded():
    # Without the front end named, bond0 is still no rail (a bonded port never is).
    ports = merge_ports(ibdev2netdev=parse_ibdev2netdev(recorded(IBDEV_ROCE)))
    sel = select_rails(ports, fabric_type="roce", rails=8)
    assert _excluded(sel)["mlx5_3:1"] == "bonded (bond0): not a rail"
    assert [r["hca"] for r in sel["rails"]] == [f"mlx5_{i}" for i in (0, 1, 2, 5, 6, 7, 8, 11)]


def test_roce_nccl_older_than_2_21_needs_the_gid_index():
    ports = merge_ports(ibdev2netdev=parse_ibdev2netdev(recorded(IBDEV_ROCE)))
    rails = select_rails(ports, fabric_type="roce", rails=8)["rails"]
    kwargs = {"fabric_type": "roce", "socket_ifname": "bond0", "roce": {"dscp": 26}}
    with pytest.raises(NcclConfigError, match=r"older than 2.21 .* pass gid_index"):
        render_nccl_conf(rails, nccl="2.18.5-1+cuda12.2", **kwargs)
    # constructed: a RoCE GID table of the usual shape (0/1 IPv6 link-local v1/v2, 2/3 the
    # IPv4 address as v1/v2), as sysfs gids/ and gid_attrs/types print it.
    gids = [
        {"index": 0, "gid": "fe80:0000:0000:0000:a288:c2ff:fe3b:506a", "type": "IB/RoCE v1"},
        {"index": 1, "gid": "fe80:0000:0000:0000:a288:c2ff:fe3b:506a", "type": "RoCE v2"},
        {"index": 2, "gid": "0000:0000:0000:0000:0000:ffff:0ac8:010a", "type": "IB/RoCE v1"},
        {"index": 3, "gid": "0000:0000:0000:0000:0000:ffff:0ac8:010a", "type": "RoCE v2"},
    ]
    index = roce_v2_gid_index(gids)
    assert index == 3
    conf = render_nccl_conf(rails, nccl="2.18.5-1+cuda12.2", gid_index=index, **kwargs)
    settings = nccl_settings(conf)
    # Only a DSCP given: the traffic class is DSCP << 2 = 104.
    assert (settings["NCCL_IB_GID_INDEX"], settings["NCCL_IB_TC"]) == ("3", "104")
    # From 2.21 a fixed index would override NCCL's own choice: refused.
    with pytest.raises(NcclConfigError, match="selects the RoCE v2 GID itself"):
        render_nccl_conf(rails, nccl=NCCL_ROCE, gid_index=3, **kwargs)
    with pytest.raises(NcclConfigError, match="no RoCE v2 GID with an IPv4 address"):
        roce_v2_gid_index(gids[:2])


def test_ibv_devinfo_recording_joins_the_roce_facts():
    # ibv_devinfo -d mlx5_0 of a RoCE node: link layer Ethernet, so mlx5_0 is a RoCE port.
    ports = merge_ports(ibv_devinfo=parse_ibv_devinfo(recorded(DEVINFO_ROCE)))
    assert select_rails(ports, fabric_type="roce", rails=1)["rails"][0]["hca"] == "mlx5_0"
    with pytest.raises(RailSelectionError, match=r"0 candidate InfiniBand ports"):
        select_rails(ports, fabric_type="infiniband", rails=1)


# --------------------------------------------------------------------------- refusals


def test_selection_refuses_what_it_cannot_tell():
    ports = merge_ports(ibstat=parse_ibstat(recorded(IBSTAT_ROCE)))
    # Without the rate, 12 up Ethernet ports for 8 rails cannot be told apart.
    with pytest.raises(RailSelectionError) as err:
        select_rails(ports, fabric_type="roce", rails=8)
    assert str(err.value).startswith("12 candidate Ethernet ports (mlx5_0:1, mlx5_1:1, ")
    assert "Name the rail interfaces in the profile (fabric_netdevs)" in str(err.value)
    with pytest.raises(RailSelectionError, match="has no RDMA rails"):
        select_rails(ports, fabric_type="ethernet", rails=2)


def test_selection_by_the_plans_netdevs():
    ports = merge_ports(ibdev2netdev=parse_ibdev2netdev(recorded(IBDEV_DGX)))
    sel = select_rails(ports, fabric_type="infiniband", rails=2, netdevs=["ibp220s0", "ibp24s0"])
    assert [(r["rail"], r["hca"]) for r in sel["rails"]] == [(0, "mlx5_10"), (1, "mlx5_0")]
    assert sel["order"] == "the plan's rail interfaces"
    with pytest.raises(RailSelectionError, match=r"no RDMA port behind rail 1 \(ib7\)"):
        select_rails(ports, fabric_type="infiniband", rails=2, netdevs=["ibp24s0", "ib7"])


def test_render_refusals():
    rails = [{"rail": 0, "hca": "mlx5_0", "port": 1, "netdev": "ibp24s0"}]
    ok = {"fabric_type": "infiniband", "nccl": NCCL_IB, "socket_ifname": "eno1"}
    with pytest.raises(NcclConfigError, match="no rail HCA selected"):
        render_nccl_conf([], **ok)
    with pytest.raises(NcclConfigError, match="ibp24s0 is a rail interface, not the front end"):
        render_nccl_conf(rails, **{**ok, "socket_ifname": "ibp24s0"})
    with pytest.raises(NcclConfigError, match=r"RoCE settings .* for an InfiniBand fabric"):
        render_nccl_conf(rails, roce={"dscp": 26}, **ok)
    with pytest.raises(NcclConfigError, match="needs its QoS class"):
        render_nccl_conf(rails, **{**ok, "fabric_type": "roce"})
    with pytest.raises(NcclConfigError, match=r"traffic class 104 carries DSCP 26, not .* 24"):
        render_nccl_conf(
            rails, roce={"dscp": 24, "traffic_class": 104}, **{**ok, "fabric_type": "roce"}
        )
    with pytest.raises(NcclConfigError, match=r"is not MAJOR\.MINOR\.PATCH"):
        render_nccl_conf(rails, **{**ok, "nccl": "latest"})
    with pytest.raises(NcclConfigError, match="not an absolute path"):
        render_nccl_conf(rails, topo_file="topo.xml", **ok)
    conf = render_nccl_conf(rails, topo_file="/etc/nccl/topo.xml", **ok)
    assert nccl_settings(conf)["NCCL_TOPO_FILE"] == "/etc/nccl/topo.xml"
    assert "NCCL_TOPO_FILE" not in render_nccl_conf(rails, **ok)


def test_versions_and_traffic_class():
    assert nccl_version("2.21.5-1+cuda12.4") == (2, 21, 5)
    assert nccl_version("2.26.2-1") == (2, 26, 2)
    assert (traffic_class(26), traffic_class(26, ecn=True)) == (104, 106)
    with pytest.raises(NcclConfigError, match="DSCP 64 is outside 0-63"):
        traffic_class(64)
