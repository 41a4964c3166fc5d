"""Lossless RoCE QoS as commands and file writes, rendered, never run here.

The kernel's own tools (issue 16, item 3): iproute2 `dcb` sets the NIC's trust mode, PFC
and DSCP-to-priority table; the rdma_cm configfs sets the default ToS of RDMA-CM queue
pairs. The role applies the result only where the profile says hardware; this module only
renders and validates.

Defaults, the values NVIDIA's RoCE QoS guides (lossless RoCE in DSCP-based QoS mode, and
"RoCE Congestion Control"/DCQCN, whose driver defaults for CNPs are DSCP 48 and priority 6)
and switch vendors' RoCE guides use (Dell OS10 maps DSCP 24/26 to traffic class 3 by
default):
- RoCE traffic: DSCP 26 on priority 3, PFC on priority 3 only, ECN marking on;
- CNPs (the congestion notifications DCQCN sends back): DSCP 48 on priority 6, outside
  PFC, so a congested lossless queue never holds back its own congestion signal.

Sources of the commands and paths:
- dcb-apptrust(8) (iproute2 6.1 and later): `dcb apptrust set dev DEV order dscp`;
- dcb-pfc(8): `dcb pfc set dev DEV prio-pfc 0:off ... 3:on ...`;
- dcb-app(8): `dcb app replace dev DEV dscp-prio 26:3 48:6`; mlx5 switches its trust state
  to DSCP when the first dscp-prio entry is added (Linux commit "net/mlx5e: Support DSCP
  trust state"), so older iproute2 without apptrust still gets DSCP trust;
- Linux Documentation/ABI/testing/configfs-rdma_cm: `mkdir /sys/kernel/config/rdma_cm/HCA`,
  then `ports/N/default_roce_tos` (0-255, kernel 4.11+);
- the CNP DSCP/priority and ECN enable files under /sys/class/net/DEV/ecn/ and the RDMA
  device traffic class /sys/class/infiniband/HCA/tc/N/traffic_class are written by the
  NVIDIA (MLNX_OFED/DOCA) driver only; they are rendered as optional writes (`required`
  False) that the role makes only where the file exists.
Nothing here was run on ConnectX hardware (docs/fabric.md, "RoCE QoS").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_NETDEV = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_HCA = re.compile(r"^[A-Za-z0-9_]+$")

CONFIGFS = "/sys/kernel/config/rdma_cm"


class QosError(ValueError):
    """A QoS setting out of range or in conflict; the message names it and the fix."""


@dataclass(frozen=True, slots=True)
class RoceQos:
    """The lossless class and its congestion notifications (every value overridable)."""

    pfc_priority: int = 3
    roce_dscp: int = 26
    ecn: bool = True
    cnp_dscp: int = 48
    cnp_priority: int = 6
    # The ToS byte RoCE traffic carries (NCCL_IB_TC, default_roce_tos); None: roce_dscp << 2.
    traffic_class: int | None = None

    @property
    def tos(self) -> int:
        return self.roce_dscp << 2 if self.traffic_class is None else self.traffic_class


def qos_settings(values: Mapping[str, Any] | None = None) -> RoceQos:
    """Defaults with `values` on top, validated; every problem in one QosError (one per line).

    Accepted keys: pfc_priority, roce_dscp (or dscp, the spec's name), ecn, cnp_dscp,
    cnp_priority, traffic_class. Values may be strings (Ansible templating): "3" -> 3.
    """
    values = dict(values or {})
    if "dscp" in values:
        if "roce_dscp" in values and values["roce_dscp"] != values["dscp"]:
            raise QosError("dscp and roce_dscp both given and different: give one")
        values["roce_dscp"] = values.pop("dscp")
    known = set(RoceQos.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    problems = [f"unknown setting {k!r} (known: {', '.join(sorted(known))})" for k in unknown]
    clean: dict[str, Any] = {}
    for key in known & set(values):
        raw = values[key]
        if key == "ecn":
            if isinstance(raw, bool):
                clean[key] = raw
            elif str(raw).lower() in ("true", "false", "yes", "no"):
                clean[key] = str(raw).lower() in ("true", "yes")
            else:
                problems.append(f"ecn {raw!r} is not true or false")
            continue
        if raw is None and key == "traffic_class":
            clean[key] = None
            continue
        try:
            if isinstance(raw, bool):
                raise ValueError(raw)
            clean[key] = int(str(raw).strip())
        except ValueError:
            problems.append(f"{key} {raw!r} is not a whole number")
    if problems:
        raise QosError("\n".join(problems))
    qos = RoceQos(**clean)
    for name, low, high in (
        ("pfc_priority", 0, 7),
        ("cnp_priority", 0, 7),
        ("roce_dscp", 0, 63),
        ("cnp_dscp", 0, 63),
    ):
        v = getattr(qos, name)
        if not low <= v <= high:
            problems.append(f"{name} {v} is outside {low}-{high}")
    if qos.traffic_class is not None:
        if not 0 <= qos.traffic_class <= 255:
            problems.append(f"traffic_class {qos.traffic_class} is outside 0-255 (a ToS byte)")
        elif qos.traffic_class >> 2 != qos.roce_dscp:
            problems.append(
                f"traffic_class {qos.traffic_class} carries DSCP {qos.traffic_class >> 2}, not"
                f" roce_dscp {qos.roce_dscp}: use {qos.roce_dscp << 2} or"
                f" {(qos.roce_dscp << 2) | 2} (ECN-capable)"
            )
    if qos.cnp_dscp == qos.roce_dscp:
        problems.append(
            f"cnp_dscp {qos.cnp_dscp} equals roce_dscp: CNPs must not queue behind the traffic"
            " they slow down (default cnp_dscp 48)"
        )
    if qos.cnp_priority == qos.pfc_priority:
        problems.append(
            f"cnp_priority {qos.cnp_priority} is the PFC priority: a paused queue would hold"
            " back its own congestion notifications (default cnp_priority 6)"
        )
    if problems:
        raise QosError("\n".join(problems))
    return qos


@dataclass(frozen=True, slots=True)
class FileWrite:
    """Write `value` to `path`; `required` False: only where the driver provides the file."""

    path: str
    value: str
    required: bool
    why: str


def render_qos(
    rails: Sequence[Mapping[str, Any]], qos: RoceQos | None = None, *, trust_command: bool = True
) -> dict[str, Any]:
    """The commands and writes that put every RoCE rail into the lossless class.

    rails: [{"hca", "port", "netdev"}] (select_rails()["rails"]); every rail needs its
    netdev. Returns {"commands": [[argv...]], "mkdirs": [path], "writes": [FileWrite]}:
    per rail, `dcb apptrust` (unless trust_command is False: iproute2 older than 6.1),
    `dcb pfc`, `dcb app replace`; the configfs directory of each HCA and its
    default_roce_tos; the optional driver files (CNP DSCP/priority, ECN enable on the PFC
    priority, RDMA device traffic class).
    """
    qos = qos or RoceQos()
    if not rails:
        raise QosError("no rail to configure")
    commands: list[list[str]] = []
    mkdirs: list[str] = []
    writes: list[FileWrite] = []
    for r in rails:
        netdev, hca, port = r.get("netdev"), str(r.get("hca", "")), int(r.get("port", 1))
        if not netdev or not _NETDEV.match(str(netdev)):
            raise QosError(f"rail {r.get('rail')} ({hca}) has no valid netdev: {netdev!r}")
        if not _HCA.match(hca):
            raise QosError(f"rail {r.get('rail')}: HCA name {hca!r} is not an RDMA device name")
        if trust_command:
            commands.append(["dcb", "apptrust", "set", "dev", str(netdev), "order", "dscp"])
        pfc = [f"{p}:{'on' if p == qos.pfc_priority else 'off'}" for p in range(8)]
        commands.append(["dcb", "pfc", "set", "dev", str(netdev), "prio-pfc", *pfc])
        commands.append(
            [
                "dcb",
                "app",
                "replace",
                "dev",
                str(netdev),
                "dscp-prio",
                f"{qos.roce_dscp}:{qos.pfc_priority}",
                f"{qos.cnp_dscp}:{qos.cnp_priority}",
            ]
        )
        mkdirs.append(f"{CONFIGFS}/{hca}")
        writes.append(
            FileWrite(
                f"{CONFIGFS}/{hca}/ports/{port}/default_roce_tos",
                str(qos.tos),
                True,
                f"RDMA-CM queue pairs carry ToS {qos.tos} (DSCP {qos.roce_dscp})",
            )
        )
        ecn = f"/sys/class/net/{netdev}/ecn"
        writes += [
            FileWrite(
                f"{ecn}/roce_np/cnp_dscp",
                str(qos.cnp_dscp),
                False,
                f"CNPs sent with DSCP {qos.cnp_dscp}",
            ),
            FileWrite(
                f"{ecn}/roce_np/cnp_802p_prio",
                str(qos.cnp_priority),
                False,
                f"CNPs sent on priority {qos.cnp_priority}",
            ),
        ]
        if qos.ecn:
            for side in ("roce_np", "roce_rp"):
                writes.append(
                    FileWrite(
                        f"{ecn}/{side}/enable/{qos.pfc_priority}",
                        "1",
                        False,
                        f"ECN/DCQCN {side} on priority {qos.pfc_priority}",
                    )
                )
        writes.append(
            FileWrite(
                f"/sys/class/infiniband/{hca}/tc/{port}/traffic_class",
                str(qos.tos),
                False,
                f"the RDMA device's default traffic class {qos.tos}",
            )
        )
    return {"commands": commands, "mkdirs": mkdirs, "writes": writes}


def render_qos_script(plan: Mapping[str, Any]) -> str:
    """render_qos() as shell lines (for review and docs; the role runs the argv lists)."""
    lines = [" ".join(argv) for argv in plan["commands"]]
    lines += [f"mkdir -p {d}" for d in plan["mkdirs"]]
    for w in plan["writes"]:
        line = f"echo {w.value} > {w.path}"
        lines.append(line if w.required else f"[ -e {w.path} ] && {line}")
    return "\n".join(lines) + "\n"
