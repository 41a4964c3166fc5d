"""The recordings the test_fabric_* modules read, by name (imported by them), and a check of them.

Recordings live in tests/data/hardware/ and, for those the lab replays, in the package data
src/gpufleet/lab/replay/recordings/ (copied unchanged from /work/shared/reference/hardware;
line 1 names the source and is stripped before parsing).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA_DIRS = (REPO / "tests" / "data" / "hardware", REPO / "src/gpufleet/lab/replay/recordings")

# InfiniBand NDR H100 node, 8 IB ports Active at 400 + an Ethernet LAG device (gpud fixture).
IBSTAT_IB = "ibstat-leptonai-gpud-h100-ib-ndr-all-active.txt"
# InfiniBand H100 node, 8 IB ports at 400 + 4 Ethernet ports (3 Down/Disabled, one at 100).
IBSTAT_IB_ETH_DOWN = "ibstat-leptonai-gpud-h100-ib-ndr-eth-ports-down.txt"
# RoCE H100 node: 12 Ethernet ports, 8 x MT4129 at 400 and 4 x MT4125 at 100, all Active.
IBSTAT_ROCE = "ibstat-leptonai-gpud-h100-roce-all-active.txt"
# DGX-class IB node (DGX H100 port names): 8 ibp* Up, 3 Ethernet ports.
IBDEV_DGX = "ibdev2netdev-aben20807-dotfiles-dgx-ib.txt"
# HGX H100 RoCE node tpgds-aihub0007: 12 ports, two in bond0, two Down.
IBDEV_ROCE = "ibdev2netdev-devopsrustem-slurmv4-aihub0007-roce.txt"
# The same host's nvidia-smi topo -m (8 GPUs, 12 NICs).
TOPO_ROCE = "nvidia-smi-topo-m-devopsrustem-slurmv4-aihub0007.txt"
# ibv_devinfo -d mlx5_0 of tpgds-aihub0001 (same RoCE cluster, another node).
DEVINFO_ROCE = "ibv_devinfo-d-mlx5_0-devopsrustem-slurmv4-roce.txt"
# A lent single-GPU H100 VM without fabric NICs (recorded by gpufleet).
TOPO_VM = "nvidia-smi-topo-m-gpufleet-lent-h100-vm-1gpu.txt"


def recording_path(name: str) -> Path:
    found = [d / name for d in DATA_DIRS if (d / name).is_file()]
    assert len(found) == 1, f"{name}: in {len(found)} of {DATA_DIRS}"
    return found[0]


def recorded(name: str) -> str:
    text = recording_path(name).read_bytes().decode("utf-8")
    assert text.startswith("# source:"), f"{name}: line 1 must name the source"
    return text.split("\n", 1)[1]


ALL = (
    IBSTAT_IB,
    IBSTAT_IB_ETH_DOWN,
    IBSTAT_ROCE,
    IBDEV_DGX,
    IBDEV_ROCE,
    TOPO_ROCE,
    DEVINFO_ROCE,
    TOPO_VM,
)


def test_every_fabric_recording_is_there_once_with_its_source():
    for name in ALL:
        first = recording_path(name).read_text().split("\n", 1)[0]
        assert first.startswith("# source: "), name
        # Every one of them is a whole output, not an excerpt (the header says COMPLETE).
        assert "COMPLETE" in first, name
