"""The NCCL topology file (NCCL_TOPO_FILE) from the node's PCI facts.

NCCL finds where GPUs and NICs sit by walking sysfs: the bridges above each device, the CPU
(NUMA node) its root port hangs off, and the PCIe links on the way. From that it decides which
NIC a GPU uses and whether GPUDirect RDMA is worth it (NCCL_NET_GDR_LEVEL, PXB by default). In a
virtual machine with passed-through GPUs and NICs the hypervisor usually shows a flat tree: every
device directly on a root bus, no switch above it, so NCCL sees every GPU-NIC pair as crossing
the CPU (PHB) and turns GPUDirect RDMA off. NCCL then reads the real layout from an XML file named
by NCCL_TOPO_FILE, in the format it writes itself with NCCL_TOPO_DUMP_FILE (NCCL source
src/graph/xml.cc and topo.cc; the files cloud providers ship for such VMs, e.g. Azure's ND
H100 v5 ndv5-topo.xml, group each GPU with its NIC under one made-up PCIe switch).

The format, as NCCL reads it:

    <system version="1">
      <cpu numaid="0" affinity="<cpumap>" arch="x86_64" vendor="GenuineIntel" familyid="6"
           modelid="143">
        <pci busid="<switch or root port>" class="0x060400" link_speed="32.0 GT/s PCIe"
             link_width="16">
          <pci busid="<GPU>" class="0x030200" link_speed=... link_width=.../>
          <pci busid="<NIC>" class="0x020700" ...>
            <nic><net name="mlx5_0" speed="400000" port="1"/></nic>
          </pci>
        </pci>
      </cpu>
    </system>

GPUs are given by their PCI function only: NCCL fills the <gpu> element (device index, SM
version, NVLinks) from NVML for the process that runs, since those differ per job. A NIC's <net>
names its HCA and port and the port's speed in Mb/s (NCCL's unit); NCCL keeps attributes it
finds and adds the rest (its device index, GUID, ...) for the devices it opens. `gdr` (GPUDirect
RDMA support) is written only when the caller knows it (the peer-memory module is loaded).

Pure functions, no I/O: the facts come from gpufleet.fabric.node.read_pci_topology on the node
(library/gpufleet_fabric_facts.py returns them as gpufleet_fabric.pci).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

MODES = ("auto", "always", "never")
# NCCL's names for the CPU architecture (src/graph/xml.cc, the cpu "arch" attribute).
_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64",
         "ppc64le": "ppc64", "ppc64": "ppc64"}  # fmt: skip
# The made-up switches above GPU-NIC pairs of a flat tree: domain ffff does not exist on the
# node (as in Azure's files), so NCCL cannot confuse them with a real device.
SYNTHETIC_DOMAIN = "ffff:ff"
BRIDGE_CLASS = "0x060400"
_BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


class TopoError(ValueError):
    """Facts the topology cannot be written from; the message names the device and the fix."""


def _devices(pci: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    found = [d for d in pci.get("devices") or [] if d.get("kind") == kind]
    for d in found:
        if not _BDF.match(str(d.get("address", ""))):
            raise TopoError(f"PCI address {d.get('address')!r} is not DDDD:BB:DD.F (lower case)")
    return sorted(found, key=lambda d: str(d["address"]))


def flat_devices(pci: Mapping[str, Any]) -> list[str]:
    """GPUs and NICs directly on a root bus (no bridge above them): where NCCL's detection sees
    no switch and every GPU-NIC path crosses the CPU."""
    return [
        str(d["address"])
        for d in _devices(pci, "gpu") + _devices(pci, "nic")
        if not d.get("bridges")
    ]


def topo_file_needed(pci: Mapping[str, Any], mode: str) -> tuple[bool, str]:
    """Whether the node gets an NCCL topology file, and why.

    never: no. always: yes (a GPU and a NIC must be in the facts). auto: only when the node has
    GPUs and fabric NICs and at least one of them sits directly on a root bus (a flat,
    virtualised tree); on bare metal NCCL reads the real tree itself and a file would only go
    stale when a card moves.
    """
    if mode not in MODES:
        raise TopoError(f"NCCL topology file mode {mode!r} is not one of {', '.join(MODES)}")
    if mode == "never":
        return False, "not asked for (never)"
    gpus, nics = _devices(pci, "gpu"), _devices(pci, "nic")
    if not gpus or not nics:
        what = "no GPU" if not gpus else "no fabric NIC"
        if mode == "always":
            raise TopoError(
                f"NCCL topology file asked for (always) but the PCI facts hold {what}: read them on"
                " the GPU node itself (gpufleet_fabric_facts with topology on)"
            )
        return False, f"{what} in the PCI facts"
    if mode == "always":
        return True, "asked for (always)"
    flat = flat_devices(pci)
    if flat:
        return True, f"flat PCI tree: {', '.join(flat)} directly on a root bus"
    return False, "every GPU and NIC sits below a PCI bridge: NCCL reads the tree itself"


def _numa(device: Mapping[str, Any], numa: Mapping[Any, str]) -> int:
    node = int(device.get("numa_node", -1))
    if node >= 0:
        return node
    if len(numa) <= 1:
        return 0  # one NUMA node (or none reported): the only CPU there is
    raise TopoError(
        f"{device['address']} reports no NUMA node (numa_node -1) on a node with {len(numa)} NUMA"
        " nodes: its CPU cannot be named; set the VM's NUMA topology so sysfs reports it"
    )


def _pci_attrs(d: Mapping[str, Any], busid: str | None = None) -> dict[str, str]:
    attrs = {"busid": busid or str(d["address"]), "class": str(d.get("class") or "")}
    if not attrs["class"]:
        raise TopoError(f"{attrs['busid']}: no PCI class in the facts")
    for key in ("link_speed", "link_width"):
        if d.get(key) not in (None, ""):
            attrs[key] = str(d[key])
    return attrs


def _nic_element(parent: ET.Element, nic: Mapping[str, Any], gdr: bool | None) -> None:
    pci = ET.SubElement(parent, "pci", _pci_attrs(nic))
    nets = [
        (h["hca"], int(port), rate)
        for h in nic.get("hcas") or []
        for port, rate in sorted((int(p), r) for p, r in (h.get("ports") or {1: None}).items())
    ]
    if not nets:
        return  # a NIC function without an RDMA device: NCCL places it by bus ID alone
    element = ET.SubElement(pci, "nic")
    for hca, port, rate in nets:
        attrs = {"name": str(hca)}
        if isinstance(rate, (int, float)) and rate > 0:
            attrs["speed"] = str(int(rate * 1000))  # Gb/s -> Mb/s
        attrs["port"] = str(port)
        if gdr is not None:
            attrs["gdr"] = "1" if gdr else "0"
        ET.SubElement(element, "net", attrs)


def _cpu_attrs(numaid: int, numa: Mapping[Any, str], cpu: Mapping[str, Any]) -> dict[str, str]:
    attrs = {"numaid": str(numaid)}
    cpumap = numa.get(numaid, numa.get(str(numaid)))
    if cpumap:
        attrs["affinity"] = str(cpumap)
    arch = _ARCH.get(str(cpu.get("arch") or ""))
    if arch:
        attrs["arch"] = arch
    if cpu.get("vendor"):
        attrs["vendor"] = str(cpu["vendor"])
    if cpu.get("family") is not None:
        attrs["familyid"] = str(cpu["family"])
    if cpu.get("model") is not None:
        attrs["modelid"] = str(cpu["model"])
    return attrs


def render_topo_xml(
    pci: Mapping[str, Any],
    *,
    rails: Sequence[str] | None = None,
    cpu: Mapping[str, Any] | None = None,
    gdr: bool | None = None,
) -> str:
    """The NCCL topology XML for the node's GPUs and fabric NICs.

    `pci`: read_pci_topology() output. `rails`: the rail HCAs in rail order (gpufleet_fabric
    rails' `hca`); only the NICs behind them are written, and on a flat tree GPU r (in PCI
    address order, the order NVML and nvidia-smi number them) is paired with the NIC of rail r,
    as a rail-optimized node is cabled (rail r is the NIC nearest GPU r); without `rails`
    every fabric NIC is written, paired in PCI address order. `cpu`: {"arch", "vendor",
    "family", "model"} (parse_cpuinfo plus the machine's architecture). `gdr`: write the
    GPUDirect RDMA flag on every net (None: leave it to NCCL).

    A device below real bridges is written under them (its chain from the root port down); a
    device directly on a root bus is grouped with its pair under a made-up switch
    (ffff:ff:NN.0). Raises TopoError on facts it cannot place.
    """
    cpu = cpu or {}
    numa = pci.get("numa") or {}
    gpus = _devices(pci, "gpu")
    nics = _devices(pci, "nic")
    if rails is not None:
        by_hca = {h["hca"]: n for n in nics for h in n.get("hcas") or []}
        missing = [h for h in rails if h not in by_hca]
        if missing:
            raise TopoError(
                f"rail HCA(s) {', '.join(missing)} not found behind any NIC in the PCI facts"
                f" (HCAs there: {', '.join(sorted(by_hca)) or 'none'})"
            )
        nics = []
        for hca in rails:
            if by_hca[hca] not in nics:
                nics.append(by_hca[hca])
    if not gpus:
        raise TopoError("no GPU in the PCI facts: there is no topology for NCCL to read")

    system = ET.Element("system", {"version": "1"})
    cpus: dict[int, ET.Element] = {}

    def cpu_of(node: int) -> ET.Element:
        if node not in cpus:
            cpus[node] = ET.Element("cpu", _cpu_attrs(node, numa, cpu))
        return cpus[node]

    # Real bridges, once each, nested as sysfs nests them.
    placed: dict[str, ET.Element] = {}

    def under_bridges(d: Mapping[str, Any]) -> ET.Element:
        parent = cpu_of(_numa(d, numa))
        for bridge in d.get("bridges") or []:
            key = str(bridge["address"])
            if key not in placed:
                placed[key] = ET.SubElement(parent, "pci", _pci_attrs(bridge, key))
            parent = placed[key]
        return parent

    flat_gpus = [g for g in gpus if not g.get("bridges")]
    flat_nics = [n for n in nics if not n.get("bridges")]
    for n, gpu in enumerate(flat_gpus):
        node = _numa(gpu, numa)
        switch_attrs = {
            "busid": f"{SYNTHETIC_DOMAIN}:{n + 1:02x}.0",
            "class": BRIDGE_CLASS,
            **{k: v for k, v in _pci_attrs(gpu).items() if k.startswith("link_")},
        }
        switch = ET.SubElement(cpu_of(node), "pci", switch_attrs)
        ET.SubElement(switch, "pci", _pci_attrs(gpu))
        if n < len(flat_nics):
            nic = flat_nics[n]
            if _numa(nic, numa) != node:
                raise TopoError(
                    f"GPU {gpu['address']} (NUMA {node}) and the NIC of its rail {nic['address']}"
                    f" (NUMA {_numa(nic, numa)}) are on different CPUs: they share no PCIe"
                    " switch; check the rail order (profile fabric_netdevs)"
                )
            _nic_element(switch, nic, gdr)
    for nic in flat_nics[len(flat_gpus) :]:
        _nic_element(cpu_of(_numa(nic, numa)), nic, gdr)
    for gpu in gpus:
        if gpu.get("bridges"):
            ET.SubElement(under_bridges(gpu), "pci", _pci_attrs(gpu))
    for nic in nics:
        if nic.get("bridges"):
            _nic_element(under_bridges(nic), nic, gdr)

    for node in sorted(cpus):
        system.append(cpus[node])
    ET.indent(system, space="  ")
    return ET.tostring(system, encoding="unicode") + "\n"
