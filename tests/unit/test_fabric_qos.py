"""RoCE QoS rendering: the dcb commands and configfs/sysfs writes for the recorded RoCE node.

Nothing here runs on ConnectX hardware (none is reachable from this project's machines): what
is proven is the rendering and the validation; the commands' effect is not.
"""

from __future__ import annotations

import pytest
from test_fabric_data import IBDEV_ROCE, TOPO_ROCE, recorded

from gpufleet.fabric.node import merge_ports, parse_ibdev2netdev, parse_topo_nics, select_rails
from gpufleet.fabric.qos import (
    FileWrite,
    QosError,
    RoceQos,
    qos_settings,
    render_qos,
    render_qos_script,
)

PFC_ON_3 = ["0:off", "1:off", "2:off", "3:on", "4:off", "5:off", "6:off", "7:off"]
PFC_ON_4 = ["0:off", "1:off", "2:off", "3:off", "4:on", "5:off", "6:off", "7:off"]


def _aihub0007_rails():
    ports = merge_ports(ibdev2netdev=parse_ibdev2netdev(recorded(IBDEV_ROCE)))
    topo = parse_topo_nics(recorded(TOPO_ROCE))
    return select_rails(ports, fabric_type="roce", rails=8, exclude_netdevs=["bond0"], topo=topo)[
        "rails"
    ]


def test_defaults():
    qos = qos_settings()
    assert qos == RoceQos(
        pfc_priority=3, roce_dscp=26, ecn=True, cnp_dscp=48, cnp_priority=6, traffic_class=None
    )
    # ToS of RoCE traffic: DSCP 26 << 2.
    assert qos.tos == 104
    assert qos_settings({"traffic_class": 106}).tos == 106


def test_recorded_roce_node_first_rail():
    plan = render_qos(_aihub0007_rails())
    # Three dcb commands per rail, in order: trust DSCP, PFC on priority 3 only, the app table
    # mapping RoCE DSCP 26 to priority 3 and CNP DSCP 48 to priority 6.
    assert plan["commands"][:3] == [
        ["dcb", "apptrust", "set", "dev", "enp25s0np0", "order", "dscp"],
        ["dcb", "pfc", "set", "dev", "enp25s0np0", "prio-pfc", *PFC_ON_3],
        ["dcb", "app", "replace", "dev", "enp25s0np0", "dscp-prio", "26:3", "48:6"],
    ]
    assert len(plan["commands"]) == 24
    assert plan["mkdirs"] == [
        f"/sys/kernel/config/rdma_cm/mlx5_{i}" for i in (0, 1, 2, 5, 6, 7, 8, 11)
    ]
    first = [w for w in plan["writes"] if "mlx5_0" in w.path or "enp25s0np0" in w.path]
    assert [(w.path, w.value, w.required) for w in first] == [
        ("/sys/kernel/config/rdma_cm/mlx5_0/ports/1/default_roce_tos", "104", True),
        ("/sys/class/net/enp25s0np0/ecn/roce_np/cnp_dscp", "48", False),
        ("/sys/class/net/enp25s0np0/ecn/roce_np/cnp_802p_prio", "6", False),
        ("/sys/class/net/enp25s0np0/ecn/roce_np/enable/3", "1", False),
        ("/sys/class/net/enp25s0np0/ecn/roce_rp/enable/3", "1", False),
        ("/sys/class/infiniband/mlx5_0/tc/1/traffic_class", "104", False),
    ]


def test_overrides_reach_every_command():
    qos = qos_settings(
        {"pfc_priority": "4", "dscp": 24, "ecn": False, "cnp_dscp": 46, "cnp_priority": 7}
    )
    rails = [{"rail": 0, "hca": "mlx5_0", "port": 1, "netdev": "enp25s0np0"}]
    plan = render_qos(rails, qos, trust_command=False)
    assert plan["commands"] == [
        ["dcb", "pfc", "set", "dev", "enp25s0np0", "prio-pfc", *PFC_ON_4],
        ["dcb", "app", "replace", "dev", "enp25s0np0", "dscp-prio", "24:4", "46:7"],
    ]
    # ecn off: no ECN enable writes; ToS 24 << 2 = 96.
    assert [w.path.rsplit("/", 2)[-2:] for w in plan["writes"]] == [
        ["1", "default_roce_tos"],
        ["roce_np", "cnp_dscp"],
        ["roce_np", "cnp_802p_prio"],
        ["1", "traffic_class"],
    ]
    assert plan["writes"][0] == FileWrite(
        "/sys/kernel/config/rdma_cm/mlx5_0/ports/1/default_roce_tos",
        "96",
        True,
        "RDMA-CM queue pairs carry ToS 96 (DSCP 24)",
    )


def test_script_form():
    rails = [{"rail": 0, "hca": "mlx5_0", "port": 1, "netdev": "enp25s0np0"}]
    script = render_qos_script(render_qos(rails, qos_settings({"traffic_class": 106})))
    lines = script.splitlines()
    assert lines[3:5] == [
        "mkdir -p /sys/kernel/config/rdma_cm/mlx5_0",
        "echo 106 > /sys/kernel/config/rdma_cm/mlx5_0/ports/1/default_roce_tos",
    ]
    assert lines[5] == (
        "[ -e /sys/class/net/enp25s0np0/ecn/roce_np/cnp_dscp ] &&"
        " echo 48 > /sys/class/net/enp25s0np0/ecn/roce_np/cnp_dscp"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pfc_priority": 8}, "pfc_priority 8 is outside 0-7"),
        ({"roce_dscp": 64}, "roce_dscp 64 is outside 0-63"),
        ({"cnp_dscp": -1}, "cnp_dscp -1 is outside 0-63"),
        ({"pfc_priority": "three"}, "pfc_priority 'three' is not a whole number"),
        ({"ecn": "maybe"}, "ecn 'maybe' is not true or false"),
        ({"traffic_class": 300}, "traffic_class 300 is outside 0-255 (a ToS byte)"),
        (
            {"traffic_class": 100},
            "traffic_class 100 carries DSCP 25, not roce_dscp 26: use 104 or 106 (ECN-capable)",
        ),
        ({"cnp_dscp": 26}, "cnp_dscp 26 equals roce_dscp"),
        ({"cnp_priority": 3}, "cnp_priority 3 is the PFC priority"),
        ({"pcf_priority": 3}, "unknown setting 'pcf_priority'"),
        ({"dscp": 26, "roce_dscp": 24}, "dscp and roce_dscp both given and different"),
    ],
)
def test_validation(values, message):
    with pytest.raises(QosError) as err:
        qos_settings(values)
    assert message in str(err.value)


def test_every_problem_at_once():
    with pytest.raises(QosError) as err:
        qos_settings({"pfc_priority": 9, "cnp_dscp": 99})
    assert str(err.value).splitlines() == [
        "pfc_priority 9 is outside 0-7",
        "cnp_dscp 99 is outside 0-63",
    ]


def test_rails_without_netdev_refused():
    with pytest.raises(QosError, match=r"rail 0 \(mlx5_0\) has no valid netdev: None"):
        render_qos([{"rail": 0, "hca": "mlx5_0", "port": 1, "netdev": None}])
    with pytest.raises(QosError, match="no rail to configure"):
        render_qos([])
