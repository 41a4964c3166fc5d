"""Jinja filters over gpufleet.fabric, for the fabric roles (controller side).

A role uses them with a one-line filter plugin (roles/<role>/filter_plugins/fabric.py):

    from gpufleet.fabric.filters import FilterModule  # noqa: F401

Inputs are what a play has at hand: the fact `gpufleet_fabric` returned by
library/gpufleet_fabric_facts.py, the inventory's variables (gpufleet_fabric_type,
gpufleet_versions.nccl, gpufleet_fabric.roce, gpufleet_interfaces) and Ansible's own facts.
Outputs are plain strings, lists and dicts. Errors are the package's ValueErrors; Ansible
shows their one-line message as the task's failure.

  gpufleet_interface_of(address, ansible_facts) -> the interface holding that IPv4 address
      (the front end for NCCL_SOCKET_IFNAME and exclude_netdevs), or "" when none does.
  gpufleet_nccl_conf(fabric, fabric_type, nccl, socket_ifname, roce=None, gid_index=None,
      topo_file=None, gdr_across_cpu=False, header="") -> the text of /etc/nccl.conf
  gpufleet_roce_qos(rails, settings=None, trust_command=True) -> {"commands": [argv],
      "mkdirs": [path], "writes": [{"path", "value", "required", "why"}]}
  gpufleet_fabric_firmware(fabric_by_node) -> failure lines (node -> gpufleet_fabric fact)
  gpufleet_nccl_topo_needed(fabric, mode) -> whether the node gets an NCCL topology file
      (mode auto, always or never; gpufleet.fabric.topo.topo_file_needed)
  gpufleet_nccl_topo_xml(fabric, gdr=None) -> the NCCL topology XML of the node's GPUs and
      rail NICs (gpufleet.fabric.topo.render_topo_xml over the fact's pci, cpu and rails)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from gpufleet.fabric.fleet import check_firmware
from gpufleet.fabric.nccl import render_nccl_conf
from gpufleet.fabric.qos import qos_settings, render_qos
from gpufleet.fabric.topo import render_topo_xml, topo_file_needed


def gpufleet_interface_of(address: str, ansible_facts: Mapping[str, Any]) -> str:
    """The interface whose primary or secondary IPv4 address is `address` ("" if none).

    Reads Ansible's setup facts: `interfaces` (names) and per interface `ipv4` /
    `ipv4_secondaries` (names with '-' become '_' in the fact keys, as setup writes them).
    """
    for name in ansible_facts.get("interfaces", []):
        iface = ansible_facts.get(str(name).replace("-", "_")) or {}
        ipv4 = iface.get("ipv4")
        entries = ([ipv4] if isinstance(ipv4, Mapping) else list(ipv4 or [])) + list(
            iface.get("ipv4_secondaries") or []
        )
        if any(str(e.get("address")) == str(address) for e in entries):
            return str(iface.get("device") or name)
    return ""


def gpufleet_nccl_conf(
    fabric: Mapping[str, Any],
    fabric_type: str,
    nccl: str,
    socket_ifname: str,
    roce: Mapping[str, Any] | None = None,
    gid_index: int | str | None = None,
    topo_file: str | None = None,
    gdr_across_cpu: bool = False,
    header: str = "",
) -> str:
    """/etc/nccl.conf from the node's `gpufleet_fabric` fact (its rails and topology).

    gid_index may arrive as a string or "" (Ansible templating); "" means none.
    """
    return render_nccl_conf(
        fabric.get("rails") or [],
        fabric_type=fabric_type,
        nccl=nccl,
        socket_ifname=socket_ifname,
        roce=roce,
        gid_index=None if gid_index in (None, "") else int(gid_index),
        topo=fabric.get("topology"),
        topo_file=topo_file or None,
        gdr_across_cpu=bool(gdr_across_cpu),
        header=header,
    )


def gpufleet_roce_qos(
    rails: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any] | None = None,
    trust_command: bool = True,
) -> dict[str, Any]:
    """The QoS commands and writes of render_qos, as plain data for loops in tasks."""
    plan = render_qos(rails, qos_settings(settings), trust_command=bool(trust_command))
    return {**plan, "writes": [asdict(w) for w in plan["writes"]]}


def gpufleet_fabric_firmware(fabric_by_node: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Fleet firmware check over each node's `gpufleet_fabric` fact (its ports and rails)."""
    fleet = {node: f.get("ports") or {} for node, f in fabric_by_node.items()}
    rails = {node: f["rails"] for node, f in fabric_by_node.items() if f.get("rails")}
    return check_firmware(fleet, rails)


def gpufleet_nccl_topo_needed(fabric: Mapping[str, Any], mode: str) -> bool:
    """Whether to write an NCCL topology file for the node (its fact's PCI tree, the mode)."""
    return topo_file_needed(fabric.get("pci") or {}, mode)[0]


def gpufleet_nccl_topo_xml(fabric: Mapping[str, Any], gdr: bool | None = None) -> str:
    """The NCCL topology XML from the node's `gpufleet_fabric` fact: its PCI tree, its CPU and
    the rails (their HCAs in rail order)."""
    rails = [str(r["hca"]) for r in fabric.get("rails") or []]
    return render_topo_xml(
        fabric.get("pci") or {}, rails=rails or None, cpu=fabric.get("cpu") or {}, gdr=gdr
    )


class FilterModule:
    """Ansible's entry point for filter plugins."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "gpufleet_interface_of": gpufleet_interface_of,
            "gpufleet_nccl_conf": gpufleet_nccl_conf,
            "gpufleet_roce_qos": gpufleet_roce_qos,
            "gpufleet_fabric_firmware": gpufleet_fabric_firmware,
            "gpufleet_nccl_topo_needed": gpufleet_nccl_topo_needed,
            "gpufleet_nccl_topo_xml": gpufleet_nccl_topo_xml,
        }
