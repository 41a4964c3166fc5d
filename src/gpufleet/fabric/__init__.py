"""RDMA fabric: facts of the rail NICs, the NCCL configuration, RoCE QoS, fabric checks.

Pure functions, no I/O (issue 16, items 4 and 5). What the roles call, by module:

gpufleet.fabric.node (also inside library/gpufleet_fabric_facts.py, which runs it on nodes)
  parse_ibstat(text) -> {ca: {...,"ports": {n: {...}}}}
  parse_ibdev2netdev(text) -> [{"hca", "port", "netdev", "netdev_state", ...}]
  parse_ibv_devinfo(text) -> {hca: {..., "ports": {n: {...}}}}
  parse_topo_nics(text) -> {"gpus": {gpu: {hca: "PIX"|...}}, "nics": {...}}
  merge_ports(ibstat=, ibdev2netdev=, ibv_devinfo=, pci=) -> {"mlx5_0:1": {...}}
  disagreements(ports) -> [line per port the tools contradict each other on]
  select_rails(ports, fabric_type=, rails=, netdevs=, exclude_netdevs=, rate=, topo=)
      -> {"rails": [{"rail", "hca", "port", "netdev", "key"}], "excluded": [...], "order"}
  check_ports(node, ports, rails, rate=, link_layer=, pcie_width=, pcie_gen=)
      -> [{"check", "status", "node", "rail", "port", "seen", "expected", "message"}]
  failure_lines(results) -> [message, ...]
  read_pci_topology(root) -> {"devices": [GPU and fabric NIC with numa_node, link, bridges,
      hcas], "numa": {node: cpumap}} (the one reader of the node: sysfs)
  parse_cpuinfo(text) -> {"vendor", "family", "model"}
gpufleet.fabric.topo
  topo_file_needed(pci, mode) -> (bool, why): auto writes one only for a flat PCI tree
  render_topo_xml(pci, rails=, cpu=, gdr=) -> the NCCL_TOPO_FILE XML
  flat_devices(pci) -> [GPU/NIC addresses directly on a root bus]
gpufleet.fabric.nccl
  render_nccl_conf(rails, fabric_type=, nccl=, socket_ifname=, roce=, gid_index=, topo=,
                   topo_file=, gdr_across_cpu=, header=) -> the text of /etc/nccl.conf
  roce_v2_gid_index(gids) -> int (only for NCCL older than 2.21)
gpufleet.fabric.qos
  qos_settings(values) -> RoceQos (defaults + overrides, validated)
  render_qos(rails, qos, trust_command=) -> {"commands", "mkdirs", "writes"}
gpufleet.fabric.fleet
  check_firmware(fleet, rails=) -> [line per HCA off the fleet's firmware]
gpufleet.fabric.filters (Jinja filters for the roles: `from gpufleet.fabric.filters import
FilterModule` in a role's filter_plugins/)
  gpufleet_interface_of, gpufleet_nccl_conf, gpufleet_roce_qos, gpufleet_fabric_firmware,
  gpufleet_nccl_topo_needed, gpufleet_nccl_topo_xml

Every error is a ValueError subclass with a one-line message naming the input and the fix:
FabricParseError (tool and line), RailSelectionError, NcclConfigError, QosError, TopoError.
"""

from __future__ import annotations

from gpufleet.fabric.fleet import check_firmware
from gpufleet.fabric.nccl import NcclConfigError, render_nccl_conf, roce_v2_gid_index
from gpufleet.fabric.node import (
    FabricParseError,
    RailSelectionError,
    check_ports,
    disagreements,
    failure_lines,
    merge_ports,
    parse_cpuinfo,
    parse_ibdev2netdev,
    parse_ibstat,
    parse_ibv_devinfo,
    parse_topo_nics,
    read_pci_topology,
    select_rails,
)
from gpufleet.fabric.qos import QosError, RoceQos, qos_settings, render_qos
from gpufleet.fabric.topo import TopoError, flat_devices, render_topo_xml, topo_file_needed

__all__ = [
    "FabricParseError",
    "NcclConfigError",
    "QosError",
    "RailSelectionError",
    "RoceQos",
    "TopoError",
    "check_firmware",
    "check_ports",
    "disagreements",
    "failure_lines",
    "flat_devices",
    "merge_ports",
    "parse_cpuinfo",
    "parse_ibdev2netdev",
    "parse_ibstat",
    "parse_ibv_devinfo",
    "parse_topo_nics",
    "qos_settings",
    "read_pci_topology",
    "render_nccl_conf",
    "render_qos",
    "render_topo_xml",
    "roce_v2_gid_index",
    "select_rails",
    "topo_file_needed",
]
