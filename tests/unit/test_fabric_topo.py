"""The NCCL topology file: read_pci_topology (node side, on constructed sysfs trees) and
gpufleet.fabric.topo (the XML, from PCI facts derived from recordings).

No recording of /sys exists here, and no machine here has a GPU or an RDMA NIC. So:
- the sysfs reader runs on small trees built in tmp_path, each named as constructed, laid out as
  the kernel lays out /sys/devices/pciDDDD:BB/... and /sys/bus/pci/devices;
- the XML is built from PCI facts whose numbers come from recordings (tests/data/hardware, each
  with its source on line 1): GPU bus IDs and their PCIe link from nvidia-smi -q of an 8 x H100
  pass-through VM (the same bus IDs as lspci of an AWS p5.48xlarge), a single-GPU VM's bus ID,
  the NVSwitch bridges of lspci, and the rail NICs of the HGX H100 RoCE node aihub0007
  (ibdev2netdev's netdev names give their PCI bus, nvidia-smi topo -m its NUMA node, CPUs and
  GPU affinity). Putting that node's NICs beside the VM's GPUs is the constructed part; it is
  the shape of a VM with GPUs and NICs passed through, which is where the file is needed.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from test_fabric_data import IBDEV_ROCE, TOPO_ROCE, recorded

from gpufleet.fabric.node import (
    merge_ports,
    parse_cpuinfo,
    parse_ibdev2netdev,
    parse_topo_nics,
    read_pci_topology,
    select_rails,
)
from gpufleet.fabric.topo import TopoError, flat_devices, render_topo_xml, topo_file_needed

GPUS_VM8 = "nvidia-smi-q-leptonai-gpud-535.183.01-8xh100-passthrough.txt"
GPU_VM1 = "nvidia-smi-q-gpufleet-lent-h100-vm-580.159.04.txt"
LSPCI_P5 = "lspci-grep-h100-orimanabu-zenndocs-p5.txt"
LSPCI_NVSWITCH = "lspci-grep-nvidia-nvswitch-22a3-landontclipp.txt"
DATA = Path(__file__).resolve().parents[1] / "data" / "hardware"


def data(name: str) -> str:
    text = (DATA / name).read_text()
    assert text.startswith("# source: "), name
    return text.split("\n", 1)[1]


# --- deriving PCI facts from the recordings (the derivation is the test's, said step by step) ---

# sysfs spells a PCIe generation's transfer rate so (current_link_speed); nvidia-smi -q gives the
# generation number.
GEN_SPEED = {4: "16.0 GT/s PCIe", 5: "32.0 GT/s PCIe"}


def gpus_from_nvidia_smi_q(text: str) -> list[dict[str, Any]]:
    """Bus Id (nvidia-smi prints an 8-digit domain, sysfs 4), current PCIe gen and width."""
    ids = re.findall(
        r"^\s+Bus Id\s+: ([0-9A-F]{8}):([0-9A-F]{2}):([0-9A-F]{2})\.([0-7])$", text, re.M
    )
    gens = re.findall(r"PCIe Generation\n\s+Max\s+: \d+\n\s+Current\s+: (\d+)", text)
    widths = re.findall(r"Link Width\n\s+Max\s+: \d+x\n\s+Current\s+: (\d+)x", text)
    assert len(ids) == len(gens) == len(widths) > 0
    return [
        {
            "address": f"{dom[-4:]}:{bus}:{dev}.{fn}".lower(),
            "kind": "gpu",
            "class": "0x030200",  # "3D controller" in lspci of the same GPUs (p5 recording)
            "vendor": "0x10de",
            "link_speed": GEN_SPEED[int(gen)],
            "link_width": width,
            "numa_node": -1,  # not in nvidia-smi -q; a VM often reports none
            "bridges": [],
        }
        for (dom, bus, dev, fn), gen, width in zip(ids, gens, widths, strict=True)
    ]


def address_of_netdev(netdev: str) -> str:
    """systemd's predictable name en[P]p<bus>s<slot>[f<function>][np<port>] (bus and slot in
    decimal, systemd.net-naming-scheme(7)) -> the PCI function in domain 0000."""
    m = re.fullmatch(r"enp(\d+)s(\d+)(?:f(\d+))?(?:np\d+)?", netdev)
    assert m, netdev
    return f"0000:{int(m.group(1)):02x}:{int(m.group(2)):02x}.{int(m.group(3) or 0)}"


def cpumap(cpulist: str) -> str:
    """topo -m's CPU list (0-191) as the kernel's cpumap: 32-bit hex words, highest first."""
    lo, hi = (int(x) for x in cpulist.split("-"))
    mask = sum(1 << c for c in range(lo, hi + 1))
    words = [(mask >> (32 * i)) & 0xFFFFFFFF for i in range((hi // 32) + 1)]
    return ",".join(f"{w:08x}" for w in reversed(words))


def roce_rails() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    ports = merge_ports(ibdev2netdev=parse_ibdev2netdev(recorded(IBDEV_ROCE)))
    topo = parse_topo_nics(recorded(TOPO_ROCE))
    sel = select_rails(ports, fabric_type="roce", rails=8, exclude_netdevs=["bond0"], topo=topo)
    return sel["rails"], topo


def flat_vm_facts() -> dict[str, Any]:
    """The 8 recorded pass-through GPUs and aihub0007's 8 rail NICs, all on root buses
    (constructed combination; every number is recorded)."""
    rails, _ = roce_rails()
    nics = [
        {
            "address": address_of_netdev(r["netdev"]),
            "kind": "nic",
            "class": "0x020000",  # Ethernet controller: a RoCE port (netdev en*)
            "vendor": "0x15b3",
            "numa_node": 0,  # topo -m: NUMA Affinity 0 on every row
            "bridges": [],
            "hcas": [{"hca": r["hca"], "ports": {1: 400}}],  # RoCE 400G (the source states it)
            "netdevs": [r["netdev"]],
        }
        for r in rails
    ]
    # topo -m of aihub0007: CPU Affinity 0-191, one NUMA node.
    numa = {0: cpumap(re.search(r"\t(0-191)\t0\t", recorded(TOPO_ROCE)).group(1))}
    return {"devices": gpus_from_nvidia_smi_q(data(GPUS_VM8)) + nics, "numa": numa}


CPU = {"arch": "x86_64", "vendor": "GenuineIntel", "family": 6, "model": 143}

# Hand-checked answer. Reasoning:
# - GPUs: nvidia-smi -q of the pass-through VM lists bus 53, 64, 75, 86, 97, a8, b9, ca (domain
#   0), each at Gen5 (sysfs: 32.0 GT/s PCIe) x16; NVML numbers them in that (PCI) order.
# - Rails of aihub0007 in GPU-affinity order (topo -m: GPU r is PIX to exactly one NIC):
#   mlx5_0 enp25s0np0, mlx5_1 enp41s0np0, mlx5_2 enp59s0np0, mlx5_5 enp92s0np0,
#   mlx5_6 enp155s0np0, mlx5_7 enp170s0np0, mlx5_8 enp187s0np0, mlx5_11 enp218s0np0;
#   bus = the decimal after "enp": 25=0x19, 41=0x29, 59=0x3b, 92=0x5c, 155=0x9b, 170=0xaa,
#   187=0xbb, 218=0xda.
# - All on root buses: one made-up switch per GPU r (ffff:ff:0r+1.0), holding GPU r and rail r's
#   NIC; the switch's link is the GPU's. One NUMA node, CPUs 0-191: six 32-bit words all ones.
# - 400 Gb/s per port is 400000 Mb/s in NCCL's unit; gdr is left to NCCL (not given).
PAIRS = [("53", "19", "mlx5_0"), ("64", "29", "mlx5_1"), ("75", "3b", "mlx5_2"),
         ("86", "5c", "mlx5_5"), ("97", "9b", "mlx5_6"), ("a8", "aa", "mlx5_7"),
         ("b9", "bb", "mlx5_8"), ("ca", "da", "mlx5_11")]  # fmt: skip
LINK = 'link_speed="32.0 GT/s PCIe" link_width="16"'
EXPECTED_FLAT = (
    '<system version="1">\n'
    '  <cpu numaid="0" affinity="ffffffff,ffffffff,ffffffff,ffffffff,ffffffff,ffffffff"'
    ' arch="x86_64" vendor="GenuineIntel" familyid="6" modelid="143">\n'
    + "".join(
        f'    <pci busid="ffff:ff:{n + 1:02x}.0" class="0x060400" {LINK}>\n'
        f'      <pci busid="0000:{gpu}:00.0" class="0x030200" {LINK} />\n'
        f'      <pci busid="0000:{nic}:00.0" class="0x020000">\n'
        "        <nic>\n"
        f'          <net name="{hca}" speed="400000" port="1" />\n'
        "        </nic>\n"
        "      </pci>\n"
        "    </pci>\n"
        for n, (gpu, nic, hca) in enumerate(PAIRS)
    )
    + "  </cpu>\n</system>\n"
)


def test_flat_vm_from_recordings_gets_the_hand_checked_xml():
    pci = flat_vm_facts()
    rails, _ = roce_rails()
    needed, why = topo_file_needed(pci, "auto")
    assert needed and why.startswith("flat PCI tree: 0000:53:00.0, ")
    xml = render_topo_xml(pci, rails=[r["hca"] for r in rails], cpu=CPU)
    assert xml == EXPECTED_FLAT


def test_flat_vm_xml_parses_back_with_every_device_once_under_its_cpu():
    pci = flat_vm_facts()
    rails, _ = roce_rails()
    root = ET.fromstring(render_topo_xml(pci, rails=[r["hca"] for r in rails], cpu=CPU))
    assert root.tag == "system" and root.get("version") == "1"
    cpus = root.findall("cpu")
    assert [c.get("numaid") for c in cpus] == ["0"]
    busids = [p.get("busid") for p in root.iter("pci")]
    devices = [d["address"] for d in pci["devices"]]
    for address in devices:
        assert busids.count(address) == 1, address
    # Under the CPU of its NUMA node (the only one), each switch one GPU and its rail's NIC.
    for n, switch in enumerate(cpus[0].findall("pci")):
        gpu, nic = switch.findall("pci")
        assert gpu.get("class") == "0x030200" and nic.get("class") == "0x020000"
        assert gpu.get("busid") == f"0000:{PAIRS[n][0]}:00.0"
        assert [net.get("name") for net in nic.iter("net")] == [rails[n]["hca"]]
    assert sorted(net.get("name") for net in root.iter("net")) == sorted(r["hca"] for r in rails)


def test_single_gpu_vm_without_nics_needs_no_file():
    pci = {"devices": gpus_from_nvidia_smi_q(data(GPU_VM1)), "numa": {0: "ffff"}}
    assert [d["address"] for d in pci["devices"]] == ["0000:00:06.0"]
    assert flat_devices(pci) == ["0000:00:06.0"]  # flat, but nothing for NCCL's network
    assert topo_file_needed(pci, "auto") == (False, "no fabric NIC in the PCI facts")
    with pytest.raises(TopoError, match=r"always.*no fabric NIC"):
        topo_file_needed(pci, "always")
    assert topo_file_needed(pci, "never") == (False, "not asked for (never)")


def test_p5_lspci_and_the_passthrough_vm_show_the_same_gpus():
    # The pass-through recording's bus IDs are those lspci printed on a p5.48xlarge: the same
    # VM shape; lspci's "3D controller" is class 0x0302, the class the reader takes as a GPU.
    lspci = [ln.split(" ", 2) for ln in data(LSPCI_P5).strip().splitlines()]
    gpus = [f"0000:{a}" for a, kind, _ in lspci if kind == "3D"]
    assert gpus == [d["address"] for d in gpus_from_nvidia_smi_q(data(GPUS_VM8))]


# --- the sysfs reader on constructed trees ---------------------------------------------------


def make_device(root: Path, path: list[str], **files: str) -> Path:
    """constructed: /sys/devices/<path...> with the given attribute files, and the
    /sys/bus/pci/devices/<address> link to it."""
    device = root.joinpath("devices", *path)
    device.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (device / name).write_text(value + "\n")
    bus = root / "bus" / "pci" / "devices"
    bus.mkdir(parents=True, exist_ok=True)
    link = bus / path[-1]
    if not link.exists():
        os.symlink(os.path.relpath(device, bus), link)
    return device


BRIDGE = {"class": "0x060400", "vendor": "0x1000", "device": "0xc030",
          "current_link_speed": "32.0 GT/s PCIe", "current_link_width": "16"}  # fmt: skip


def constructed_hgx(root: Path) -> None:
    """constructed: one GPU-NIC pair of an HGX H100 as a PCIe switch holds it (root port
    0000:15:01.0 -> switch upstream 0000:16:00.0 -> downstream ports 0000:17:00.0 (NIC
    0000:18:00.0) and 0000:17:01.0 (GPU 0000:19:00.0)), NUMA node 0; and an NVSwitch of the
    recorded lspci (bus 05, "Bridge": class 0x0680) which is not a GPU."""
    top = ["pci0000:15", "0000:15:01.0", "0000:16:00.0"]
    for depth in (2, 3):
        make_device(root, top[:depth], **BRIDGE)
    make_device(root, [*top, "0000:17:00.0"], **BRIDGE)
    make_device(root, [*top, "0000:17:01.0"], **BRIDGE)
    nic = make_device(root, [*top, "0000:17:00.0", "0000:18:00.0"], **{
        "class": "0x020700", "vendor": "0x15b3", "device": "0x1021", "numa_node": "0",
        "current_link_speed": "32.0 GT/s PCIe", "current_link_width": "16"})  # fmt: skip
    (nic / "infiniband" / "mlx5_0" / "ports" / "1").mkdir(parents=True)
    (nic / "infiniband" / "mlx5_0" / "ports" / "1" / "rate").write_text("400 Gb/sec (4X NDR)\n")
    (nic / "net" / "ibp24s0").mkdir(parents=True)
    make_device(root, [*top, "0000:17:01.0", "0000:19:00.0"], **{
        "class": "0x030200", "vendor": "0x10de", "device": "0x2330", "numa_node": "0",
        "current_link_speed": "32.0 GT/s PCIe", "current_link_width": "16"})  # fmt: skip
    make_device(root, ["pci0000:00", "0000:00:01.0", "0000:05:00.0"], **{
        "class": "0x068000", "vendor": "0x10de", "device": "0x22a3", "numa_node": "0"})  # fmt: skip
    node0 = root / "devices" / "system" / "node" / "node0"
    node0.mkdir(parents=True)
    (node0 / "cpumap").write_text("00000000,0000ffff\n")


def test_reader_on_a_constructed_hgx_pair(tmp_path):
    constructed_hgx(tmp_path)
    pci = read_pci_topology(str(tmp_path))
    assert [(d["address"], d["kind"]) for d in pci["devices"]] == [
        ("0000:18:00.0", "nic"),
        ("0000:19:00.0", "gpu"),
    ]  # the NVSwitch (0x0680, as the recorded "Bridge" lines are) and the bridges are not
    nic, gpu = pci["devices"]
    assert nic["host"] == gpu["host"] == "0000:15"
    assert [b["address"] for b in nic["bridges"]] == [
        "0000:15:01.0",
        "0000:16:00.0",
        "0000:17:00.0",
    ]
    assert [b["address"] for b in gpu["bridges"]] == [
        "0000:15:01.0",
        "0000:16:00.0",
        "0000:17:01.0",
    ]
    assert nic["bridges"][0] == {"address": "0000:15:01.0", "class": "0x060400",
                                 "vendor": "0x1000", "device": "0xc030",
                                 "link_speed": "32.0 GT/s PCIe", "link_width": "16"}  # fmt: skip
    assert nic["hcas"] == [{"hca": "mlx5_0", "ports": {1: 400}}]
    assert nic["netdevs"] == ["ibp24s0"]
    assert (gpu["numa_node"], gpu["link_speed"], gpu["link_width"]) == (0, "32.0 GT/s PCIe", "16")
    assert pci["numa"] == {0: "00000000,0000ffff"}
    # Bare metal: NCCL reads this tree itself.
    assert topo_file_needed(pci, "auto") == (
        False,
        "every GPU and NIC sits below a PCI bridge: NCCL reads the tree itself",
    )
    # Asked for anyway: the real chain, each bridge once, GPU and NIC below their own ports.
    root = ET.fromstring(render_topo_xml(pci, rails=["mlx5_0"], cpu=CPU))
    (cpu,) = root.findall("cpu")
    assert cpu.get("affinity") == "00000000,0000ffff"
    (port,) = cpu.findall("pci")
    (upstream,) = port.findall("pci")
    assert (port.get("busid"), upstream.get("busid")) == ("0000:15:01.0", "0000:16:00.0")
    down = {p.get("busid"): p for p in upstream.findall("pci")}
    assert sorted(down) == ["0000:17:00.0", "0000:17:01.0"]
    assert [p.get("busid") for p in down["0000:17:00.0"].findall("pci")] == ["0000:18:00.0"]
    assert [p.get("busid") for p in down["0000:17:01.0"].findall("pci")] == ["0000:19:00.0"]
    net = root.find(".//net")
    assert net is not None and net.attrib == {"name": "mlx5_0", "speed": "400000", "port": "1"}


def test_reader_on_a_constructed_flat_vm(tmp_path):
    # constructed: the recorded single-GPU VM's GPU (00:06.0, numa_node -1 as VMs often report)
    # and one ConnectX function at 00:07.0, both on the root bus.
    make_device(tmp_path, ["pci0000:00", "0000:00:06.0"], **{
        "class": "0x030200", "vendor": "0x10de", "numa_node": "-1",
        "current_link_speed": "32.0 GT/s PCIe", "current_link_width": "16"})  # fmt: skip
    nic = make_device(tmp_path, ["pci0000:00", "0000:00:07.0"], **{
        "class": "0x020700", "vendor": "0x15b3", "numa_node": "-1"})  # fmt: skip
    (nic / "infiniband" / "mlx5_0" / "ports" / "1").mkdir(parents=True)
    pci = read_pci_topology(str(tmp_path))
    assert [d["bridges"] for d in pci["devices"]] == [[], []]
    assert pci["numa"] == {}
    assert topo_file_needed(pci, "auto") == (
        True,
        "flat PCI tree: 0000:00:06.0, 0000:00:07.0 directly on a root bus",
    )
    root = ET.fromstring(render_topo_xml(pci, cpu={"arch": "aarch64"}))
    (cpu,) = root.findall("cpu")
    assert cpu.attrib == {"numaid": "0", "arch": "arm64"}  # one CPU: numa_node -1 means node 0
    (switch,) = cpu.findall("pci")
    assert switch.get("busid") == "ffff:ff:01.0"
    assert [p.get("busid") for p in switch.findall("pci")] == ["0000:00:06.0", "0000:00:07.0"]
    # a port whose rate file is missing: no speed, NCCL asks the device
    assert root.find(".//net").attrib == {"name": "mlx5_0", "port": "1"}


def test_reader_without_sysfs_gives_nothing(tmp_path):
    assert read_pci_topology(str(tmp_path / "absent")) == {"devices": [], "numa": {}}


def test_cpuinfo():
    # constructed: the first lines of an x86 /proc/cpuinfo (Sapphire Rapids: family 6, model 143)
    text = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n\n"
    text += "processor\t: 1\nvendor_id\t: Other\n"
    assert parse_cpuinfo(text) == {"vendor": "GenuineIntel", "family": 6, "model": 143}
    assert parse_cpuinfo("processor\t: 0\nBogoMIPS\t: 50.00\n") == {
        "vendor": None, "family": None, "model": None}  # fmt: skip


# --- refusals --------------------------------------------------------------------------------


def test_refusals_name_the_device_and_the_fix():
    pci = flat_vm_facts()
    with pytest.raises(TopoError, match=r"rail HCA\(s\) mlx5_3 not found behind any NIC"):
        render_topo_xml(pci, rails=["mlx5_0", "mlx5_3"])
    with pytest.raises(TopoError, match=r"mode 'sometimes' is not one of auto, always, never"):
        topo_file_needed(pci, "sometimes")
    two = {**pci, "numa": {0: "ffff", 1: "ffff0000"}}
    with pytest.raises(TopoError, match=r"0000:53:00.0 reports no NUMA node .* 2 NUMA nodes"):
        render_topo_xml(two)
    split = {
        "devices": [{**d, "numa_node": 0 if d["kind"] == "gpu" else 1} for d in pci["devices"]],
        "numa": {0: "ffff", 1: "ffff0000"},
    }
    with pytest.raises(TopoError, match=r"GPU 0000:53:00.0 \(NUMA 0\) and the NIC of its rail"):
        render_topo_xml(split)
    with pytest.raises(TopoError, match=r"no GPU in the PCI facts"):
        render_topo_xml({"devices": [d for d in pci["devices"] if d["kind"] == "nic"]})
