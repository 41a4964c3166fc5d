"""/etc/nccl.conf from the node's selected rails and the locked NCCL version.

NCCL reads `/etc/nccl.conf` (NAME=value lines) as system-wide defaults that the environment
overrides (NCCL documentation, "Environment Variables"). Every value rendered here comes with
its reason, written as a comment above it, so the file on a node says why it holds what it
holds. Sources, all in NVIDIA's NCCL "Environment Variables" documentation (checked for
2.23.4) unless said otherwise:

- NCCL_IB_HCA: `=` before the list makes every entry an exact name; without it each entry
  is a prefix, so `mlx5_1` would also select `mlx5_10` and `mlx5_11` (on the recorded H100
  systems those are other rails or Ethernet ports). `:1` pins the port.
- NCCL_SOCKET_IFNAME: the interfaces for NCCL's bootstrap and socket traffic; `=` again
  means exactly this name. The front end, never a rail or storage port.
- NCCL_IB_GID_INDEX: NCCL before 2.21 used GID index 0 unless told (on RoCE that is the
  RoCE v1 link-local GID, so RoCE v2 traffic needs the index of the IPv4 RoCE v2 GID). From
  2.21 its default is -1: NCCL picks the RoCE v2 GID matching its address family itself
  (NCCL source src/transport/net_ib: IB_GID_INDEX defaults to -1; the version, 2.21, as
  Juniper's AI data center validated design states it, appendix "How to Run NCCL Tests Using
  Autoconfigured IPv6 Address"), and a fixed index would defeat that, so none is written.
- NCCL_IB_TC: the traffic class NCCL puts in the GRH of its queue pairs; on RoCE v2 it is
  the IP ToS byte: DSCP in the upper six bits (DSCP 26 -> 104), ECN in the lower two. It
  must carry the DSCP that the switches and the NIC's app table put on the lossless
  priority (NVIDIA's RoCE QoS guides: DSCP 26 on priority 3). InfiniBand has no DSCP:
  nothing is written there.
- NCCL_NET_GDR_LEVEL: the farthest GPU-NIC PCI distance at which NCCL uses GPUDirect RDMA
  (LOC, PIX, PXB, PHB, SYS; NCCL's default is PXB: src/graph/paths.cc, ncclTopoCheckGdr).
  Derived from `nvidia-smi topo -m`: GPU r and the NIC of rail r. When every pair is PIX or
  PXB (an HGX H100: each GPU behind the PCIe switch of its NIC) PXB is written, NCCL's own
  default made explicit. A pair farther away (NODE, PHB, SYS) would silently run without
  GPUDirect RDMA, so rendering stops with the GPU and NIC named, unless the caller accepts
  GPUDirect across the CPU (`gdr_across_cpu`): then PHB (same NUMA node) or SYS is written.
  Without a matrix nothing is written.
- NCCL_TOPO_FILE: only when the caller gives one: the file gpufleet.fabric.topo wrote from the
  node's PCI facts where NCCL's own detection sees a flat tree (VMs), or one asked for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from gpufleet.fabric.node import TOPO_LEVELS

# NCCL_NET_GDR_LEVEL names (NCCL "Environment Variables", NCCL_P2P_LEVEL/NCCL_NET_GDR_LEVEL):
# topo -m's NODE (across host bridges within a NUMA node) is NCCL's PHB ("same NUMA node").
_GDR_NAME = {"PIX": "PIX", "PXB": "PXB", "PHB": "PHB", "NODE": "PHB", "SYS": "SYS"}
# NCCL's default GPUDirect RDMA level (src/graph/paths.cc, ncclTopoCheckGdr: PATH_PXB).
GDR_DEFAULT = "PXB"

# The first NCCL that selects the RoCE v2 GID itself (NCCL_IB_GID_INDEX default -1).
AUTO_GID_SINCE = (2, 21)

_NETDEV = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_HCA = re.compile(r"^[A-Za-z0-9_]+$")


class NcclConfigError(ValueError):
    """An input the renderer cannot turn into a sound nccl.conf; the message says which."""


def nccl_version(version: str) -> tuple[int, int, int]:
    """'2.21.5-1+cuda12.4' (the lock's libnccl2 version) -> (2, 21, 5)."""
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)", str(version).strip())
    if not m:
        raise NcclConfigError(
            f"NCCL version {version!r} is not MAJOR.MINOR.PATCH[-BUILD][+cudaX.Y], e.g. 2.21.5-1"
        )
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def traffic_class(dscp: int, ecn: bool = False) -> int:
    """The IP ToS byte for a DSCP: DSCP << 2, plus ECN-capable (0b10) when asked."""
    if not 0 <= dscp <= 63:
        raise NcclConfigError(f"DSCP {dscp} is outside 0-63")
    return (dscp << 2) | (0b10 if ecn else 0)


def roce_v2_gid_index(gids: Sequence[Mapping[str, Any]]) -> int:
    """The index of the first RoCE v2 GID holding an IPv4 address (::ffff:a.b.c.d).

    `gids`: [{"index": 3, "gid": "0000:...:ffff:0ac8:010a" or "::ffff:10.200.1.10",
    "type": "RoCE v2"}], as sysfs gid_attrs/types and gids give them.
    """
    for g in sorted(gids, key=lambda g: int(g["index"])):
        gid = str(g.get("gid", "")).lower()
        v4 = gid.startswith("::ffff:") or gid.replace(":", "").startswith("0" * 20 + "ffff")
        if str(g.get("type", "")).replace(" ", "").lower() == "rocev2" and v4:
            return int(g["index"])
    raise NcclConfigError("no RoCE v2 GID with an IPv4 address: is the rail address configured?")


def gdr_level(
    topo: Mapping[str, Any], rails: Sequence[Mapping[str, Any]], *, across_cpu: bool = False
) -> tuple[str, str] | None:
    """(NCCL_NET_GDR_LEVEL, why) from the link between GPU r and the NIC of rail r.

    None when the matrix does not hold those pairs (no GPU rows or no NIC columns).
    Raises NcclConfigError when a pair is beyond PXB and across_cpu is False.
    """
    gpus = {int(g): links for g, links in topo.get("gpus", {}).items()}
    pairs = []
    for r in rails:
        links = gpus.get(int(r["rail"]))
        if links is None or str(r["hca"]) not in links:
            return None
        pairs.append((int(r["rail"]), str(r["hca"]), links[str(r["hca"])]))
    if not pairs:
        return None
    worst = max(pairs, key=lambda p: TOPO_LEVELS.index(p[2]))
    if TOPO_LEVELS.index(worst[2]) <= TOPO_LEVELS.index(GDR_DEFAULT):
        return GDR_DEFAULT, (
            f"every GPU-to-own-rail link in nvidia-smi topo -m is PIX or PXB (worst {worst[2]});"
            " NCCL's default made explicit"
        )
    far = ", ".join(f"GPU{g}-{h} {lv}" for g, h, lv in pairs if lv not in ("PIX", "PXB"))
    if not across_cpu:
        raise NcclConfigError(
            f"GPUDirect RDMA would be off for {far} (NCCL enables it up to PXB): check the"
            " rail cabling/slots, or pass gdr_across_cpu to allow it across the CPU"
        )
    return _GDR_NAME[worst[2]], f"asked to allow GPUDirect RDMA across the CPU for {far}"


def render_nccl_conf(
    rails: Sequence[Mapping[str, Any]],
    *,
    fabric_type: str,
    nccl: str,
    socket_ifname: str,
    roce: Mapping[str, Any] | None = None,
    gid_index: int | None = None,
    topo: Mapping[str, Any] | None = None,
    topo_file: str | None = None,
    gdr_across_cpu: bool = False,
    header: str = "",
) -> str:
    """The text of /etc/nccl.conf, every setting under a comment with its reason.

    rails: select_rails()["rails"] ({"rail", "hca", "port"}), in rail order.
    fabric_type: infiniband or roce (the inventory's gpufleet_fabric_type).
    nccl: the locked libnccl2 version (gpufleet_versions.nccl, e.g. "2.21.5-1+cuda12.4").
    socket_ifname: the front-end interface (the one holding the node's front-end address).
    roce: the spec's RoCE class (gpufleet_fabric.roce: dscp, traffic_class, ecn); required on
      RoCE. NCCL_IB_TC is its traffic_class when given (it must carry the DSCP), else
      DSCP << 2 (26 -> 104).
    gid_index: on RoCE with NCCL < 2.21, the RoCE v2 GID index (roce_v2_gid_index()); it is
      required there and refused from 2.21 on, where NCCL picks the GID itself.
    topo: parse_topo_nics() output, for NCCL_NET_GDR_LEVEL (rails in rail order: GPU r is
      paired with rail r); gdr_across_cpu: accept GPU-NIC pairs beyond PXB (see gdr_level).
    topo_file: NCCL_TOPO_FILE path, written only when given.
    header: first lines (e.g. Ansible's managed marker), written as comments.
    Raises NcclConfigError on inconsistent input.
    """
    if fabric_type not in ("infiniband", "roce"):
        raise NcclConfigError(f"fabric type {fabric_type!r}: nccl.conf is for infiniband or roce")
    if not rails:
        raise NcclConfigError("no rail HCA selected: NCCL would fall back to sockets")
    if not _NETDEV.match(socket_ifname or ""):
        raise NcclConfigError(f"socket_ifname {socket_ifname!r} is not an interface name")
    hcas = [f"{r['hca']}:{int(r.get('port', 1))}" for r in rails]
    for r in rails:
        if not _HCA.match(str(r["hca"])):
            raise NcclConfigError(f"HCA name {r['hca']!r} is not an RDMA device name")
    if len(set(hcas)) != len(hcas):
        raise NcclConfigError(f"an HCA port is listed twice: {', '.join(hcas)}")
    if any(r.get("netdev") == socket_ifname for r in rails):
        raise NcclConfigError(
            f"socket_ifname {socket_ifname} is a rail interface, not the front end"
        )
    version = nccl_version(nccl)

    out: list[str] = [f"# {line}" if line else "#" for line in header.splitlines()]
    out += [
        '# NCCL system defaults written by gpufleet (docs/fabric.md, "NCCL settings");',
        "# the environment of a job overrides them.",
        "",
        f"# The {len(rails)} fabric rails in rail order (rail r = {hcas[0]} ...), exact names",
        "# ('=' prefix: without it mlx5_1 would also match mlx5_10 and mlx5_11).",
        f"NCCL_IB_HCA={'=' + ','.join(hcas)}",
        "",
        "# Bootstrap and socket traffic on the front-end interface only, never a rail or storage.",
        f"NCCL_SOCKET_IFNAME=={socket_ifname}",
    ]
    if fabric_type == "roce":
        if roce is None or roce.get("dscp") is None:
            raise NcclConfigError("a RoCE fabric needs its QoS class (roce.dscp) for NCCL_IB_TC")
        dscp = int(roce["dscp"])
        tc_given = roce.get("traffic_class")
        tc = traffic_class(dscp) if tc_given is None else int(tc_given)
        if not 0 <= tc <= 255 or tc >> 2 != dscp:
            raise NcclConfigError(
                f"traffic class {tc} carries DSCP {tc >> 2}, not the lossless DSCP {dscp}"
            )
        why = "the spec's traffic_class" if tc_given is not None else f"DSCP {dscp} << 2"
        out += [
            "",
            f"# RoCE: NCCL's queue pairs carry ToS {tc} ({why}: DSCP {dscp},"
            f" ECN bits {tc & 3:02b}),",
            "# the DSCP the NIC and switches map to the lossless PFC priority.",
            f"NCCL_IB_TC={tc}",
        ]
        if version[:2] >= AUTO_GID_SINCE:
            if gid_index is not None:
                raise NcclConfigError(
                    f"NCCL {nccl} selects the RoCE v2 GID itself (since 2.21); a fixed"
                    " gid_index would override that: leave it out"
                )
            out += [
                "",
                f"# NCCL_IB_GID_INDEX not set: NCCL {'.'.join(map(str, version))} (2.21 and later)"
                " picks the RoCE v2 GID itself.",
            ]
        else:
            if gid_index is None:
                raise NcclConfigError(
                    f"NCCL {nccl} is older than 2.21 and uses GID index 0 (RoCE v1) unless told:"
                    " pass gid_index (roce_v2_gid_index() of the rail's GID table)"
                )
            out += [
                "",
                f"# NCCL {'.'.join(map(str, version))} predates automatic GID selection (2.21):"
                " the IPv4 RoCE v2 GID.",
                f"NCCL_IB_GID_INDEX={int(gid_index)}",
            ]
    elif roce is not None or gid_index is not None:
        raise NcclConfigError("RoCE settings (roce, gid_index) given for an InfiniBand fabric")
    gdr = gdr_level(topo, rails, across_cpu=gdr_across_cpu) if topo else None
    if gdr is not None:
        out += [
            "",
            f"# GPUDirect RDMA up to {gdr[0]}: {gdr[1]}.",
            f"NCCL_NET_GDR_LEVEL={gdr[0]}",
        ]
    if topo_file:
        if not topo_file.startswith("/") or any(c.isspace() for c in topo_file):
            raise NcclConfigError(f"topo_file {topo_file!r} is not an absolute path")
        why = "# The PCI topology NCCL cannot read from sysfs here, written from the node's facts."
        out += ["", why, f"NCCL_TOPO_FILE={topo_file}"]
    return "\n".join(out) + "\n"


def nccl_settings(conf: str) -> dict[str, str]:
    """NAME=value lines of an nccl.conf text (comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for line in conf.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out
