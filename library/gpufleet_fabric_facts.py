#!/usr/bin/python
"""Ansible module: RDMA fabric facts (ibstat, ibdev2netdev, ibv_devinfo, sysfs) and port checks.

Self-contained (Ansible ships this file alone to the node). The block between the BEGIN/END
markers is a verbatim copy of src/gpufleet/fabric/node.py (parsers, rail selection, port
checks; pure, tested there and here on outputs recorded on real H100 systems); refresh it
with `python -m gpufleet.fabric.embed library/gpufleet_fabric_facts.py`;
tests/unit/test_fabric_module.py fails when the copy and the source differ. Below the
block: reading the node (commands, sysfs) and main().
Read-only: it changes nothing, in check mode or not.
"""

from __future__ import annotations

# BEGIN gpufleet.fabric.node (copied verbatim into library/gpufleet_fabric_facts.py)
import re
from collections.abc import Mapping, Sequence
from typing import Any

Port = dict[str, Any]


class FabricParseError(ValueError):
    """Output a parser does not understand; the message names the tool and the line."""

    def __init__(self, tool: str, lineno: int, line: str, why: str) -> None:
        self.tool, self.lineno, self.line = tool, lineno, line
        super().__init__(f"{tool}: line {lineno}: {why}: {line.strip()!r}")


class RailSelectionError(ValueError):
    """The fabric rails cannot be told apart from the facts; the message says why and how."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _lines(text: str) -> list[str]:
    """Lines without CR (a recording kept CRLF endings) and without terminal escapes."""
    return [_ANSI.sub("", line.rstrip("\r")) for line in text.replace("\r\n", "\n").split("\n")]


def _number(value: str) -> int | float | None:
    """'400' -> 400, '2.5' -> 2.5 (SDR), anything else -> None."""
    v = value.strip()
    if re.fullmatch(r"\d+", v):
        return int(v)
    if re.fullmatch(r"\d+\.\d+", v):
        return float(v)
    return None


# --------------------------------------------------------------------------- ibstat

_IBSTAT_CA = re.compile(r"^CA '(?P<name>[^']+)'\s*$")
_IBSTAT_PORT = re.compile(r"^\s+Port (?P<num>\d+):\s*$")
_IBSTAT_KV = re.compile(r"^(?P<indent>\s+)(?P<key>[A-Za-z][A-Za-z ]*?):\s*(?P<value>.*?)\s*$")
_IBSTAT_KEYS = {
    "CA type": "ca_type",
    "Number of ports": "port_count",
    "Firmware version": "firmware",
    "Hardware version": "hardware_version",
    "Node GUID": "node_guid",
    "System image GUID": "system_image_guid",
    "State": "state",
    "Physical state": "physical_state",
    "Rate": "rate",
    "Base lid": "base_lid",
    "LMC": "lmc",
    "SM lid": "sm_lid",
    "Capability mask": "capability_mask",
    "Port GUID": "port_guid",
    "Link layer": "link_layer",
}


def _snake(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


def parse_ibstat(text: str) -> dict[str, dict[str, Any]]:
    """`ibstat` -> {CA name: {ca_type, firmware, ..., ports: {port number: {...}}}}.

    Rate is a number (Gb/s as ibstat prints it: 400 for NDR or 400GbE, 2.5 for SDR);
    port numbers are ints. Indentation may be tabs (rdma-core's ibstat) or spaces (the
    gpud fixture `ibstat.47.0.h100.all.active.2` as stored).
    """
    cas: dict[str, dict[str, Any]] = {}
    ca: dict[str, Any] | None = None
    port: dict[str, Any] | None = None
    for lineno, line in enumerate(_lines(text), 1):
        if not line.strip():
            continue
        m = _IBSTAT_CA.match(line)
        if m:
            ca = cas.setdefault(m["name"], {"ports": {}})
            port = None
            continue
        if ca is None:
            raise FabricParseError("ibstat", lineno, line, "expected a CA 'name' line first")
        m = _IBSTAT_PORT.match(line)
        if m:
            port = ca["ports"].setdefault(int(m["num"]), {})
            continue
        m = _IBSTAT_KV.match(line)
        if not m:
            raise FabricParseError("ibstat", lineno, line, "not a 'Key: value' line")
        key = _IBSTAT_KEYS.get(m["key"], _snake(m["key"]))
        value: Any = m["value"]
        if key in ("rate", "port_count", "base_lid", "lmc", "sm_lid"):
            number = _number(value)
            if number is None:
                raise FabricParseError("ibstat", lineno, line, f"{m['key']} is not a number")
            value = number
        (port if port is not None else ca)[key] = value
    return cas


# --------------------------------------------------------------------------- ibdev2netdev

_IBDEV_PLAIN = re.compile(
    r"^(?P<hca>\S+) port (?P<port>\d+) ==> (?P<netdev>\S+) \((?P<state>[^)]*)\)$"
)
# ibdev2netdev -v: PCI address, HCA, (CA type - part number), description, firmware, port state.
_IBDEV_VERBOSE = re.compile(
    r"^(?P<pci>[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]) (?P<hca>\S+)"
    r" \((?P<ca_type>[^ )]+)(?: - (?P<part>[^)]*))?\)(?P<description>.*?)"
    r" fw (?P<fw>\S+) port (?P<port>\d+) \((?P<port_state>[^)]*?)\s*\)"
    r" ==> (?P<netdev>\S+) \((?P<state>[^)]*)\)$"
)


def parse_ibdev2netdev(text: str) -> list[dict[str, Any]]:
    """`ibdev2netdev` or `ibdev2netdev -v` -> one dict per line, in the tool's order.

    Keys: hca, port, netdev, netdev_state (Up/Down as printed); from `-v` also pci_address
    (lower case), ca_type, part_number, description, firmware, port_state (ACTIVE, DOWN...).
    A netdev of `bond0` means the port is a member of that bond (RoCE LAG).
    """
    out: list[dict[str, Any]] = []
    for lineno, line in enumerate(_lines(text), 1):
        stripped = line.strip()
        if not stripped:
            continue
        m = _IBDEV_PLAIN.match(stripped)
        if m:
            out.append(
                {
                    "hca": m["hca"],
                    "port": int(m["port"]),
                    "netdev": m["netdev"],
                    "netdev_state": m["state"].strip(),
                }
            )
            continue
        m = _IBDEV_VERBOSE.match(stripped)
        if m:
            out.append(
                {
                    "hca": m["hca"],
                    "port": int(m["port"]),
                    "netdev": m["netdev"],
                    "netdev_state": m["state"].strip(),
                    "pci_address": m["pci"].lower(),
                    "ca_type": m["ca_type"],
                    "part_number": (m["part"] or "").strip() or None,
                    "description": m["description"].strip() or None,
                    "firmware": m["fw"],
                    "port_state": m["port_state"].strip(),
                }
            )
            continue
        raise FabricParseError(
            "ibdev2netdev", lineno, line, "expected 'HCA port N ==> NETDEV (State)'"
        )
    return out


# --------------------------------------------------------------------------- ibv_devinfo

_DEVINFO_HCA = re.compile(r"^hca_id:\s*(?P<hca>\S+)\s*$")
_DEVINFO_PORT = re.compile(r"^\s+port:\s*(?P<num>\d+)\s*$")
_DEVINFO_KV = re.compile(r"^\s+(?P<key>[A-Za-z_][A-Za-z0-9_ ]*?):\s*(?P<value>.*?)\s*$")


def parse_ibv_devinfo(text: str) -> dict[str, dict[str, Any]]:
    """`ibv_devinfo [-d DEV] [-v]` -> {hca: {fw_ver, vendor_part_id, ..., ports: {n: {...}}}}.

    Values stay as printed (`PORT_ACTIVE (4)`, `4096 (5)`); `state` and `link_layer` of a port
    are also given plainly as `state_name` (ACTIVE) and `link_layer`. Lines of `-v` that are
    not `key: value` (capability flag lists, GID lines) are skipped inside a device block.
    """
    out: dict[str, dict[str, Any]] = {}
    hca: dict[str, Any] | None = None
    port: dict[str, Any] | None = None
    for lineno, line in enumerate(_lines(text), 1):
        if not line.strip():
            continue
        m = _DEVINFO_HCA.match(line)
        if m:
            hca = out.setdefault(m["hca"], {"ports": {}})
            port = None
            continue
        if hca is None:
            if line.strip() == "No IB devices found":
                continue
            raise FabricParseError("ibv_devinfo", lineno, line, "expected 'hca_id:' first")
        m = _DEVINFO_PORT.match(line)
        if m:
            port = hca["ports"].setdefault(int(m["num"]), {})
            continue
        m = _DEVINFO_KV.match(line)
        if not m:
            if line[:1] in (" ", "\t"):
                continue  # -v: flag lists and GID tables under a key
            raise FabricParseError("ibv_devinfo", lineno, line, "not a 'key: value' line")
        key, value = m["key"].strip().replace(" ", "_"), m["value"]
        target = port if port is not None else hca
        target[key] = value
        if port is not None and key == "state":
            state = re.match(r"PORT_(\w+)", value)
            port["state_name"] = state.group(1) if state else value
    return out


# --------------------------------------------------------------------------- nvidia-smi topo -m

# Connection types of `nvidia-smi topo -m`, nearest first (its legend).
TOPO_LEVELS = ("PIX", "PXB", "PHB", "NODE", "SYS")


def parse_topo_nics(text: str) -> dict[str, Any]:
    """`nvidia-smi topo -m` -> {"gpus": {0: {"mlx5_0": "PIX", ...}}, "nics": {"NIC0": "mlx5_0"}}.

    Only the GPU rows and the NIC columns are read (NVLink and CPU affinity columns are
    skipped). NIC columns are named by the "NIC Legend" (NIC0: mlx5_0); without a legend
    (older drivers print the HCA name itself as the column header) the header is the name.
    A matrix without NIC columns gives no GPU-NIC links (a VM without fabric NICs).
    """
    lines = _lines(text)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    legend: dict[str, str] = {}
    for lineno, line in enumerate(lines, 1):
        if header is None:
            if line.strip() and line.startswith("\t") and "GPU0" in line:
                header = [c.strip() for c in line.split("\t")[1:]]
            continue
        m = re.match(r"^\s*(NIC\d+):\s*(\S+)\s*$", line)
        if m:
            legend[m.group(1)] = m.group(2)
            continue
        if re.match(r"^GPU\d+\t", line):
            rows.append((lineno, [c.strip() for c in line.split("\t")]))
    if header is None:
        raise FabricParseError(
            "nvidia-smi topo -m", 1, lines[0] if lines else "", "no GPU0 header row found"
        )
    nic_cols = [
        i for i, name in enumerate(header) if name.startswith(("NIC", "mlx")) or name in legend
    ]
    gpus: dict[int, dict[str, str]] = {}
    for lineno, cells in rows:
        gpu = int(cells[0][3:])
        links: dict[str, str] = {}
        for col in nic_cols:
            if col + 1 >= len(cells):
                raise FabricParseError(
                    "nvidia-smi topo -m", lineno, "\t".join(cells), "row shorter than the header"
                )
            value = cells[col + 1]
            if value not in TOPO_LEVELS:
                raise FabricParseError(
                    "nvidia-smi topo -m",
                    lineno,
                    "\t".join(cells),
                    f"GPU{gpu}-{header[col]} is {value!r}, not one of {', '.join(TOPO_LEVELS)}",
                )
            links[legend.get(header[col], header[col])] = value
        gpus[gpu] = links
    return {"gpus": gpus, "nics": {header[c]: legend.get(header[c], header[c]) for c in nic_cols}}


def nearest_gpu_nics(topo: Mapping[str, Any], hcas: Sequence[str]) -> dict[int, tuple[str, str]]:
    """Per GPU, the one HCA of `hcas` nearest to it and the link type; a GPU whose nearest
    HCAs tie is left out (its NIC cannot be named from the matrix)."""
    out: dict[int, tuple[str, str]] = {}
    for gpu, links in sorted((int(g), v) for g, v in topo.get("gpus", {}).items()):
        ranked = sorted(
            (TOPO_LEVELS.index(level), hca) for hca, level in links.items() if hca in hcas
        )
        if ranked and (len(ranked) == 1 or ranked[0][0] < ranked[1][0]):
            out[gpu] = (ranked[0][1], TOPO_LEVELS[ranked[0][0]])
    return out


# --------------------------------------------------------------------------- merged port facts


def _natural(name: str) -> list[Any]:
    """mlx5_2 before mlx5_10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def merge_ports(
    ibstat: Mapping[str, Any] | None = None,
    ibdev2netdev: Sequence[Mapping[str, Any]] | None = None,
    ibv_devinfo: Mapping[str, Any] | None = None,
    pci: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Port]:
    """One record per HCA port, keyed `hca:port` (mlx5_0:1), from the parsed outputs at hand.

    Record keys (None when no source printed it): hca, port, netdev, netdev_state, state
    (Active, Down...: ibstat's words; ibv_devinfo's PORT_ACTIVE becomes Active),
    physical_state, rate, link_layer, firmware, ca_type, pci_address, pcie (the dict given in
    `pci` for the HCA: width, speed, max_width, max_speed), sources (which tools saw it).
    `pci` maps HCA name -> {"address": ..., "width": 16, "speed": "32.0 GT/s PCIe", ...} as
    the module reads it from sysfs. Lines in `ibdev2netdev` may name their own source
    ("sysfs" when the module read the netdevs there).
    """
    ports: dict[str, Port] = {}

    def rec(hca: str, num: int, source: str) -> Port:
        key = f"{hca}:{num}"
        if key not in ports:
            ports[key] = {
                "hca": hca,
                "port": num,
                "netdev": None,
                "netdev_state": None,
                "state": None,
                "physical_state": None,
                "rate": None,
                "link_layer": None,
                "firmware": None,
                "ca_type": None,
                "pci_address": None,
                "pcie": None,
                "sources": [],
            }
        if source not in ports[key]["sources"]:
            ports[key]["sources"].append(source)
        return ports[key]

    for hca, ca in (ibstat or {}).items():
        for num, p in ca.get("ports", {}).items():
            r = rec(hca, int(num), "ibstat")
            r.update(
                state=p.get("state"),
                physical_state=p.get("physical_state"),
                rate=p.get("rate"),
                link_layer=p.get("link_layer"),
                firmware=ca.get("firmware"),
                ca_type=ca.get("ca_type"),
            )
    for hca, dev in (ibv_devinfo or {}).items():
        for num, p in dev.get("ports", {}).items():
            r = rec(hca, int(num), "ibv_devinfo")
            r["link_layer"] = r["link_layer"] or p.get("link_layer")
            r["firmware"] = r["firmware"] or dev.get("fw_ver")
            if r["state"] is None and p.get("state_name"):
                r["state"] = str(p["state_name"]).capitalize()
            if r["ca_type"] is None and dev.get("vendor_part_id"):
                r["ca_type"] = f"MT{dev['vendor_part_id']}"
    for line in ibdev2netdev or ():
        r = rec(str(line["hca"]), int(line["port"]), str(line.get("source", "ibdev2netdev")))
        r["netdev"] = line["netdev"]
        r["netdev_state"] = line["netdev_state"]
        r["pci_address"] = r["pci_address"] or line.get("pci_address")
        r["firmware"] = r["firmware"] or line.get("firmware")
        r["ca_type"] = r["ca_type"] or line.get("ca_type")
        if r["state"] is None and line.get("port_state"):
            r["state"] = str(line["port_state"]).capitalize()
    for r in ports.values():
        info = (pci or {}).get(r["hca"])
        if info:
            r["pci_address"] = info.get("address") or r["pci_address"]
            r["pcie"] = {k: v for k, v in info.items() if k != "address"} or None
    return dict(sorted(ports.items(), key=lambda kv: (_natural(kv[1]["hca"]), kv[1]["port"])))


# --------------------------------------------------------------------------- rail selection

# Link layer of each fabric type (ibstat's and ibv_devinfo's words).
LINK_LAYER = {"infiniband": "InfiniBand", "roce": "Ethernet"}


def link_layer_of(port: Mapping[str, Any]) -> tuple[str | None, str]:
    """The port's link layer and where it comes from.

    Printed by ibstat/ibv_devinfo; else inferred from the netdev name: the kernel names
    IPoIB interfaces ib* (ib0, or systemd's ibp24s0) and Ethernet ones en*/eth*; a bond
    carries Ethernet (RoCE LAG).
    """
    if port.get("link_layer"):
        return str(port["link_layer"]), "printed"
    netdev = str(port.get("netdev") or "")
    if netdev.startswith("ib"):
        return "InfiniBand", f"inferred from the IPoIB name {netdev}"
    if netdev.startswith(("en", "eth", "bond")):
        return "Ethernet", f"inferred from the Ethernet name {netdev}"
    return None, "unknown"


def disagreements(ports: Mapping[str, Port]) -> list[str]:
    """Where the tools that ran contradict each other, one line per port.

    On one machine ibstat, ibdev2netdev (or sysfs) and ibv_devinfo list the same ports; a port
    that only some of them list, or whose printed link layer contradicts its netdev's name (an
    IPoIB ib* name on an Ethernet port, an en*/eth* name on an InfiniBand one), means the
    outputs do not describe one machine (a stale tool, a device that vanished between two
    commands, replays recorded on different machines), and no selection on them can be trusted.
    """
    ran = sorted({s for p in ports.values() for s in p.get("sources", [])})
    lines: list[str] = []
    for key, p in ports.items():
        missing = [s for s in ran if s not in p.get("sources", [])]
        if missing:
            lines.append(
                f"{key} is listed by {', '.join(p.get('sources', []))}"
                f" but not by {', '.join(missing)}"
            )
        printed, netdev = p.get("link_layer"), str(p.get("netdev") or "")
        if netdev and printed:
            inferred, _ = link_layer_of({"netdev": netdev})
            if inferred and inferred != printed and not netdev.startswith("bond"):
                lines.append(
                    f"{key}: link layer {printed} (printed) but its netdev {netdev} has an"
                    f" {inferred} name"
                )
    return lines


def _is_up(port: Mapping[str, Any]) -> bool | None:
    if port.get("state") is not None:
        return str(port["state"]).lower() == "active"
    if port.get("netdev_state") is not None:
        return str(port["netdev_state"]).lower() == "up"
    return None


def _pci_key(address: str) -> tuple[int, ...]:
    return tuple(int(x, 16) for x in re.split(r"[:.]", address))


def select_rails(
    ports: Mapping[str, Port],
    *,
    fabric_type: str,
    rails: int,
    netdevs: Sequence[str] | None = None,
    exclude_netdevs: Sequence[str] = (),
    rate: int | float | None = None,
    topo: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Which HCA ports are the `rails` fabric rails, in rail order.

    `ports`: merge_ports() output. `fabric_type`: infiniband or roce. `netdevs`: the plan's
    interface names in rail order (profile fabric_netdevs), when it has them: then rail r is
    the port whose netdev is netdevs[r] and nothing is guessed. Otherwise candidates are
    narrowed step by step, each excluded port keeping its reason:
      1. link layer of the fabric (InfiniBand, or Ethernet for RoCE);
      2. not a front-end/storage interface (`exclude_netdevs`: the caller passes the
         interfaces holding the node's front-end and storage addresses), not a bond or bond
         member, not a LAG device (mlx5_bond_N): a bonded port is never a rail;
      3. only while more candidates than rails remain: drop ports that are down (the unused
         second port of a dual-port card); then ports below the profile `rate` (e.g. 100G
         front-end cards beside the 400G rails); then ports of another CA type than the ports
         at the profile rate (so a rail that trained slower stays a rail). A rail that is down
         or slow is kept when it is needed to make up the count, so the port checks report it
         instead of a rail going missing.
    The count must then equal `rails`, else RailSelectionError says what was found.
    Rail order: the plan's netdevs; else GPU affinity from `nvidia-smi topo -m` (rail r is
    the NIC nearest GPU r, NVIDIA's rail-optimized design) when it names one NIC per GPU;
    else the PCI address; else the HCA name in natural order (mlx5_2 before mlx5_10).

    Returns {"rails": [{"rail", "hca", "port", "netdev", "key"}], "excluded": [{"key",
    "why"}], "order": how the order was found}.
    """
    if fabric_type not in LINK_LAYER:
        raise RailSelectionError(
            f"fabric type {fabric_type!r} has no RDMA rails to select (infiniband or roce)"
        )
    if rails < 1:
        raise RailSelectionError(f"rails is {rails}: a fabric node has at least one rail")
    if netdevs:
        if len(netdevs) != rails:
            raise RailSelectionError(
                f"{len(netdevs)} rail interfaces named for {rails} rails: name one per rail"
            )
        by_netdev = {p.get("netdev"): k for k, p in ports.items() if p.get("netdev")}
        missing = [f"rail {r} ({n})" for r, n in enumerate(netdevs) if n not in by_netdev]
        if missing:
            seen = ", ".join(sorted(str(n) for n in by_netdev)) or "none"
            raise RailSelectionError(
                f"no RDMA port behind {', '.join(missing)}; ibdev2netdev shows netdevs: {seen}"
            )
        keys = [by_netdev[n] for n in netdevs]
        chosen = [
            {
                "rail": r,
                "hca": ports[k]["hca"],
                "port": ports[k]["port"],
                "netdev": ports[k]["netdev"],
                "key": k,
            }
            for r, k in enumerate(keys)
        ]
        others = [
            {"key": k, "why": "not a rail interface of the plan"} for k in ports if k not in keys
        ]
        return {"rails": chosen, "excluded": others, "order": "the plan's rail interfaces"}

    want = LINK_LAYER[fabric_type]
    excluded: list[dict[str, str]] = []
    candidates: list[str] = []
    skip = set(exclude_netdevs)
    for key, p in ports.items():
        layer, how = link_layer_of(p)
        netdev = p.get("netdev")
        if layer is None:
            excluded.append({"key": key, "why": "link layer unknown (no ibstat/ibv_devinfo)"})
        elif layer != want:
            excluded.append({"key": key, "why": f"link layer {layer} ({how}), fabric is {want}"})
        elif netdev and netdev in skip:
            excluded.append({"key": key, "why": f"{netdev} is the front-end/storage interface"})
        elif (netdev and netdev.startswith("bond")) or "bond" in str(p["hca"]):
            excluded.append({"key": key, "why": f"bonded ({netdev or p['hca']}): not a rail"})
        else:
            candidates.append(key)
    if len(candidates) > rails:
        down = [k for k in candidates if _is_up(ports[k]) is False]
        if len(candidates) - len(down) >= rails:
            for k in down:
                excluded.append({"key": k, "why": "down, and enough ports are up for the rails"})
            candidates = [k for k in candidates if k not in down]
    if len(candidates) > rails and rate is not None:
        slow = [
            k
            for k in candidates
            if isinstance(ports[k].get("rate"), (int, float)) and ports[k]["rate"] < rate
        ]
        if len(candidates) - len(slow) >= rails:
            for k in slow:
                excluded.append(
                    {"key": k, "why": f"rate {ports[k]['rate']} below the rails' {rate}"}
                )
            candidates = [k for k in candidates if k not in slow]
    if len(candidates) > rails and rate is not None:
        # A rail that trained slower is still a rail: the ports of the NIC model that runs at
        # the profile rate (ConnectX-7 MT4129 beside 100G ConnectX-6 Dx MT4125 cards).
        models = {ports[k].get("ca_type") for k in candidates if ports[k].get("rate") == rate}
        model = models.pop() if len(models) == 1 else None
        same = [k for k in candidates if model and ports[k].get("ca_type") == model]
        if len(same) == rails:
            for k in candidates:
                if k not in same:
                    why = f"CA type {ports[k].get('ca_type')}, the rails are {model}"
                    excluded.append({"key": k, "why": why})
            candidates = same
    if len(candidates) != rails:
        found = ", ".join(candidates) or "none"
        raise RailSelectionError(
            f"{len(candidates)} candidate {want} ports ({found}) for {rails} rails; excluded: "
            + ("; ".join(f"{e['key']}: {e['why']}" for e in excluded) or "none")
            + ". Name the rail interfaces in the profile (fabric_netdevs) or pass the"
            " front-end/storage interfaces to exclude"
        )

    order = "HCA name (natural order)"
    ranked = sorted(candidates, key=lambda k: (_natural(ports[k]["hca"]), ports[k]["port"]))
    if all(ports[k].get("pci_address") for k in candidates):
        ranked = sorted(candidates, key=lambda k: _pci_key(str(ports[k]["pci_address"])))
        order = "PCI address"
    if topo:
        nearest = nearest_gpu_nics(topo, [ports[k]["hca"] for k in candidates])
        hcas = [nearest[g][0] for g in sorted(nearest)]
        if len(nearest) == rails and len(set(hcas)) == rails:
            by_hca = {ports[k]["hca"]: k for k in candidates}
            ranked = [by_hca[h] for h in hcas]
            order = "GPU affinity (nvidia-smi topo -m: rail r is the NIC nearest GPU r)"
    chosen = [
        {
            "rail": r,
            "hca": ports[k]["hca"],
            "port": ports[k]["port"],
            "netdev": ports[k]["netdev"],
            "key": k,
        }
        for r, k in enumerate(ranked)
    ]
    return {"rails": chosen, "excluded": excluded, "order": order}


# --------------------------------------------------------------------------- port checks

PASS = "pass"
FAIL = "fail"
UNKNOWN = "unknown"

# PCIe transfer rate per lane -> generation (PCI-SIG; the kernel prints "32.0 GT/s PCIe").
_PCIE_GEN = {2.5: 1, 5.0: 2, 8.0: 3, 16.0: 4, 32.0: 5, 64.0: 6}


def pcie_generation(speed: Any) -> int | None:
    """'32.0 GT/s PCIe' (sysfs current_link_speed) -> 5; None when not a known rate."""
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*GT/s", str(speed or ""))
    return _PCIE_GEN.get(float(m.group(1))) if m else None


def check_ports(
    node: str,
    ports: Mapping[str, Port],
    rails: Sequence[Mapping[str, Any]],
    *,
    rate: int | float | None = None,
    link_layer: str | None = None,
    pcie_width: int | None = None,
    pcie_gen: int | None = None,
) -> list[dict[str, Any]]:
    """Every expected rail port judged; one result per rail and check.

    `rails`: select_rails()["rails"] or the same shape from the plan ({"rail", "hca",
    "port"}). `rate` in Gb/s as ibstat prints it (400 for NDR and 400GbE); `link_layer`
    InfiniBand or Ethernet; `pcie_width` (16) and `pcie_gen` (5), the NIC's current PCIe
    link (sysfs current_link_width/current_link_speed, merge_ports' `pci`), when given.
    A result: {"check", "status" (pass/fail/unknown), "node", "rail", "port" (hca:port),
    "seen", "expected", "message"}; `message` is set unless it passed, e.g.
    "gpu2 rail 3 mlx5_3:1: state Down (physical state Polling), expected Active/LinkUp".
    unknown: the facts do not hold the value (the tool that prints it was not run).
    """
    results: list[dict[str, Any]] = []

    def judge(
        rail: int, key: str, check: str, status: str, seen: Any, expected: Any, what: str = ""
    ) -> None:
        message = ""
        if status != PASS:
            message = f"{node} rail {rail} {key}: {what or check} {seen}, expected {expected}"
        results.append(
            {
                "check": check,
                "status": status,
                "node": node,
                "rail": rail,
                "port": key,
                "seen": seen,
                "expected": expected,
                "message": message,
            }
        )

    for r in rails:
        rail = int(r["rail"])
        key = f"{r['hca']}:{r.get('port', 1)}"
        p = ports.get(key)
        if p is None:
            seen = ", ".join(ports) or "no RDMA port at all"
            judge(rail, key, "present", FAIL, f"missing (ports seen: {seen})", "present", "port")
            continue
        judge(rail, key, "present", PASS, "present", "present")
        state, phys = p.get("state"), p.get("physical_state")
        if state is None and phys is None:
            judge(rail, key, "state", UNKNOWN, "not read", "Active/LinkUp", "state")
        elif state == "Active" and phys in ("LinkUp", None):
            judge(rail, key, "state", PASS, state, "Active/LinkUp")
        else:
            seen = f"{state} (physical state {phys})" if phys else str(state)
            judge(rail, key, "state", FAIL, seen, "Active/LinkUp", "state")
        if rate is not None:
            got = p.get("rate")
            if got is None:
                judge(rail, key, "rate", UNKNOWN, "not read", rate, "rate")
            else:
                judge(rail, key, "rate", PASS if got == rate else FAIL, got, rate, "rate")
        if link_layer is not None:
            got = p.get("link_layer")
            if got is None:
                judge(rail, key, "link_layer", UNKNOWN, "not read", link_layer, "link layer")
            else:
                status = PASS if got == link_layer else FAIL
                judge(rail, key, "link_layer", status, got, link_layer, "link layer")
        pcie = p.get("pcie") or {}
        if pcie_width is not None:
            got = pcie.get("width")
            if got is None:
                judge(rail, key, "pcie_width", UNKNOWN, "not read", pcie_width, "PCIe link width")
            else:
                status = PASS if str(got) == str(pcie_width) else FAIL
                judge(rail, key, "pcie_width", status, got, pcie_width, "PCIe link width")
        if pcie_gen is not None:
            speed = pcie.get("speed")
            gen = pcie_generation(speed)
            if gen is None:
                seen = "not read" if speed is None else f"unreadable ({speed!r})"
                judge(rail, key, "pcie_gen", UNKNOWN, seen, pcie_gen, "PCIe link generation")
            else:
                status = PASS if gen == int(pcie_gen) else FAIL
                judge(rail, key, "pcie_gen", status, f"{gen} ({speed})", pcie_gen, "PCIe link gen")
    return results


def failure_lines(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The message of every result that failed or could not be confirmed."""
    return [str(r["message"]) for r in results if r["status"] != PASS]


# --------------------------------------------------------------------------- PCI tree (sysfs)

# What the NCCL topology needs from the PCI tree (gpufleet.fabric.topo renders it): GPUs are
# NVIDIA (vendor 0x10de) 3D controllers (class 0x0302xx; an NVSwitch is an "other bridge",
# 0x0680xx, and is not a GPU); fabric NICs are NVIDIA/Mellanox (0x15b3) InfiniBand (0x0207xx) or
# Ethernet (0x0200xx) functions. PCI IDs and class codes: the PCI ID repository (pci-ids.ucw.cz).
PCI_GPU_VENDOR = "0x10de"
PCI_GPU_CLASSES = ("0x0302",)
PCI_NIC_VENDOR = "0x15b3"
PCI_NIC_CLASSES = ("0x0207", "0x0200")
_BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_HOST_BRIDGE = re.compile(r"^pci([0-9a-f]{4}:[0-9a-f]{2})$")


def _sysfs_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _pci_link(device_dir: str) -> dict[str, Any]:
    """class, vendor, device and the current PCIe link of one PCI function's sysfs directory."""
    import os

    out: dict[str, Any] = {}
    for name in ("class", "vendor", "device", "current_link_speed", "current_link_width"):
        value = _sysfs_text(os.path.join(device_dir, name))
        if value is not None:
            key = {"current_link_speed": "link_speed", "current_link_width": "link_width"}
            out[key.get(name, name)] = value
    return out


def read_pci_topology(root: str = "/sys") -> dict[str, Any]:
    """The GPUs and fabric NICs of the node with where they sit in the PCI tree, from sysfs.

    Per device (/sys/bus/pci/devices/ADDR, resolved to /sys/devices/pciDDDD:BB/.../ADDR):
    address, kind (gpu or nic), class, vendor, device, numa_node (-1 where the platform does
    not say, as in many VMs), link_speed ("32.0 GT/s PCIe") and link_width ("16"), host (the
    root bus DDDD:BB of its host bridge), bridges (the PCI bridges and switch ports from the
    root down to it, each with its own class and link), and for NICs hcas (the RDMA devices
    of the function: hca, and per port its rate in Gb/s from ports/N/rate) and netdevs.
    Also numa: {node: cpumap} from /sys/devices/system/node/nodeN/cpumap (the hex mask NCCL
    calls affinity). Missing files are left out; a node without sysfs gives empty lists.
    """
    import os

    devices: list[dict[str, Any]] = []
    bus = os.path.join(root, "bus", "pci", "devices")
    try:
        addresses = sorted(a for a in os.listdir(bus) if _BDF.match(a))
    except OSError:
        addresses = []
    for address in addresses:
        link = os.path.join(bus, address)
        info = _pci_link(link)
        vendor, klass = info.get("vendor", ""), info.get("class", "")
        if vendor == PCI_GPU_VENDOR and klass.startswith(PCI_GPU_CLASSES):
            kind = "gpu"
        elif vendor == PCI_NIC_VENDOR and klass.startswith(PCI_NIC_CLASSES):
            kind = "nic"
        else:
            continue
        real = os.path.realpath(link)
        parts = real.split(os.sep)
        host = next((m.group(1) for m in map(_HOST_BRIDGE.match, parts) if m), None)
        chain: list[dict[str, Any]] = []
        for i, part in enumerate(parts[:-1]):
            if _BDF.match(part):
                chain.append({"address": part, **_pci_link(os.sep.join(parts[: i + 1]))})
        node = _sysfs_text(os.path.join(link, "numa_node"))
        record: dict[str, Any] = {
            "address": address,
            "kind": kind,
            **info,
            "numa_node": int(node) if node and re.fullmatch(r"-?\d+", node) else -1,
            "host": host,
            "bridges": chain,
        }
        if kind == "nic":
            hcas = []
            ib = os.path.join(link, "infiniband")
            for hca in sorted(os.listdir(ib), key=_natural) if os.path.isdir(ib) else []:
                ports: dict[int, Any] = {}
                pdir = os.path.join(ib, hca, "ports")
                for port in sorted(os.listdir(pdir), key=_natural) if os.path.isdir(pdir) else []:
                    rate = _sysfs_text(os.path.join(pdir, port, "rate")) or ""
                    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*Gb/sec", rate)
                    ports[int(port)] = _number(m.group(1)) if m else None
                hcas.append({"hca": hca, "ports": ports})
            net = os.path.join(link, "net")
            record["hcas"] = hcas
            record["netdevs"] = sorted(os.listdir(net)) if os.path.isdir(net) else []
        devices.append(record)
    numa: dict[int, str] = {}
    nodes = os.path.join(root, "devices", "system", "node")
    for name in sorted(os.listdir(nodes)) if os.path.isdir(nodes) else []:
        m = re.fullmatch(r"node(\d+)", name)
        cpumap = _sysfs_text(os.path.join(nodes, name, "cpumap")) if m else None
        if m and cpumap:
            numa[int(m.group(1))] = cpumap
    return {"devices": devices, "numa": numa}


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """/proc/cpuinfo -> {"vendor", "family", "model"} of the first processor (x86: vendor_id,
    cpu family, model; on Arm these are absent and None). NCCL's <cpu> carries them."""
    out: dict[str, Any] = {"vendor": None, "family": None, "model": None}
    keys = {"vendor_id": "vendor", "cpu family": "family", "model": "model"}
    for line in _lines(text):
        if not line.strip():
            if any(v is not None for v in out.values()):
                break
            continue
        key, _, value = line.partition(":")
        name = keys.get(key.strip())
        if name and out[name] is None:
            value = value.strip()
            out[name] = int(value) if name != "vendor" and value.isdigit() else value
    return out


# END gpufleet.fabric.node


DOCUMENTATION = r"""
---
module: gpufleet_fabric_facts
short_description: RDMA fabric facts of a node, its rail HCAs in rail order, and port checks
description:
  - Runs C(ibstat), C(ibdev2netdev) and C(ibv_devinfo) (each where installed), reads each
    RDMA device's netdevs and PCI link from sysfs, and optionally C(nvidia-smi topo -m); merges
    them into one record per HCA port and returns them as the fact C(gpufleet_fabric).
  - Selects the fabric rails (link layer of O(fabric_type), front-end/storage/bonded ports
    excluded, then down ports, slower ports and ports of another NIC model while more
    candidates than O(rails) remain; order from O(netdevs), else GPU affinity, else PCI
    address, else HCA name). See gpufleet.fabric.node.select_rails and docs/fabric.md.
  - Judges every rail port (present, Active/LinkUp, O(rate), link layer, PCIe width and
    generation) and returns C(checks) and C(failures), one line per failed check naming the
    node, the rail, the HCA port, what was seen and what was expected. A missing tool, tools
    that contradict each other (a port only some list) or a rail selection that is not
    possible is a failure line with the reason, never a crash. The module itself never fails
    on a failed check; the caller decides.
  - Never changes anything (C(changed) is always false; safe in check mode).
options:
  fabric_type:
    description: The fabric of the rails (the inventory's C(gpufleet_fabric_type)).
    type: str
    required: true
    choices: [infiniband, roce]
  rails:
    description: How many rails the node has (the profile's C(fabric_nics)).
    type: int
    required: true
  netdevs:
    description: >-
      The rail interface names in rail order, where the plan knows them (the inventory's
      C(gpufleet_fabric_interfaces)); then nothing is inferred. Empty: infer.
    type: list
    elements: str
    default: []
  exclude_netdevs:
    description: >-
      Interfaces that are never rails: the front end and storage interfaces (those holding
      the node's front-end and storage addresses).
    type: list
    elements: str
    default: []
  rate:
    description: Expected rate of every rail port in Gb/s as ibstat prints it (400 for NDR and
      400GbE); 0 to skip the rate check.
    type: int
    default: 0
  pcie_width:
    description: Expected PCIe link width of every rail NIC (16); 0 to skip.
    type: int
    default: 0
  pcie_gen:
    description: Expected PCIe generation of every rail NIC's link (5 for Gen5, read from
      sysfs current_link_speed, 32.0 GT/s); 0 to skip.
    type: int
    default: 0
  topology:
    description: Also run C(nvidia-smi topo -m) and order the rails by GPU affinity, and read the
      PCI tree of the GPUs and fabric NICs and the CPU from sysfs and /proc/cpuinfo.
    type: bool
    default: false
  node_name:
    description: The name used in failure lines (the inventory hostname).
    type: str
    default: ""
  ibstat:
    description: Path or name of ibstat.
    type: str
    default: ibstat
  ibdev2netdev:
    description: Path or name of ibdev2netdev (NVIDIA OFED/DOCA only; sysfs is read without it).
    type: str
    default: ibdev2netdev
  ibv_devinfo:
    description: Path or name of ibv_devinfo.
    type: str
    default: ibv_devinfo
  nvidia_smi:
    description: Path or name of nvidia-smi (for O(topology)).
    type: str
    default: nvidia-smi
"""

RETURN = r"""
ansible_facts:
  description: >-
    C(gpufleet_fabric) with C(ports) (per C(hca:port): hca, port, netdev, netdev_state,
    state, physical_state, rate, link_layer, firmware, ca_type, pci_address, pcie, sources),
    C(rails) (rail, hca, port, netdev, key, in rail order; empty when the selection failed),
    C(excluded) (key, why), C(order) (how the rail order was found), C(tools) (per tool: ok
    or why it gave nothing), C(topology) (GPU-NIC links or null), C(pci) (with O(topology): the
    GPUs and fabric NICs in the PCI tree, their NUMA node, link and bridges, for an NCCL topology
    file; else null), C(cpu) (with O(topology): vendor, family, model, arch; else null).
  returned: always
  type: dict
checks:
  description: One result per rail and check (check, status pass/fail/unknown, node, rail,
    port, seen, expected, message).
  returned: always
  type: list
  elements: dict
failures:
  description: One line per failed or unconfirmed check, missing tool or selection problem.
  returned: always
  type: list
  elements: str
"""


# --------------------------------------------------------------------------- reading the node

# Which package brings each tool (Debian/Ubuntu names), for the failure line.
PACKAGES = {
    "ibstat": "infiniband-diags",
    "ibv_devinfo": "ibverbs-utils",
    "ibdev2netdev": "NVIDIA OFED/DOCA (mlnx-tools); sysfs is read instead",
    "nvidia-smi": "the NVIDIA driver",
}


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return None


def sysfs_rdma(root: str = "/sys") -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """From sysfs: netdevs of every RDMA device port (ibdev2netdev's shape) and PCI links.

    /sys/class/infiniband/HCA/device is the PCI function; its net/ directory holds the
    netdevs (operstate up/down), and the PCI device its current/max link width and speed.
    A bond over two ports (RoCE LAG) is not seen here: ibdev2netdev names it.
    """
    import os

    lines: list[dict[str, Any]] = []
    pci: dict[str, dict[str, Any]] = {}
    ib = os.path.join(root, "class", "infiniband")
    try:
        hcas = sorted(os.listdir(ib), key=_natural)
    except OSError:
        return lines, pci
    for hca in hcas:
        device = os.path.join(ib, hca, "device")
        address = os.path.basename(os.path.realpath(device))
        info: dict[str, Any] = {"address": address}
        for name, key in (
            ("current_link_width", "width"),
            ("current_link_speed", "speed"),
            ("max_link_width", "max_width"),
            ("max_link_speed", "max_speed"),
        ):
            value = _read(os.path.join(device, name))
            if value is not None:
                info[key] = int(value) if value.isdigit() else value
        pci[hca] = info
        try:
            netdevs = sorted(os.listdir(os.path.join(device, "net")))
            ports = sorted(os.listdir(os.path.join(ib, hca, "ports")), key=_natural)
        except OSError:
            continue
        for netdev in netdevs:
            dev_port = _read(os.path.join(device, "net", netdev, "dev_port")) or "0"
            index = int(dev_port) if dev_port.isdigit() else 0
            port = int(ports[index]) if index < len(ports) else 1
            state = _read(os.path.join(device, "net", netdev, "operstate")) or "unknown"
            lines.append(
                {
                    "hca": hca,
                    "port": port,
                    "netdev": netdev,
                    "netdev_state": "Up" if state == "up" else state.capitalize(),
                    "source": "sysfs",
                }
            )
    return lines, pci


def collect(
    params: Mapping[str, Any], run: Any, find: Any, root: str = "/sys", proc: str = "/proc"
) -> dict[str, Any]:
    """Everything the module returns, from the node's tools and sysfs.

    With `topology` (GPU nodes) also the PCI tree of the GPUs and fabric NICs
    (read_pci_topology) and the CPU (parse_cpuinfo of /proc/cpuinfo, the machine's
    architecture), which gpufleet.fabric.topo turns into an NCCL topology file.

    run(argv) -> (rc, stdout, stderr); find(name or path) -> an executable path or None
    (AnsibleModule's run_command and get_bin_path on the node; fakes in the unit tests).
    """
    tools: dict[str, str] = {}
    failures: list[str] = []
    node = params.get("node_name") or "this node"

    def output(name: str, argv: list[str]) -> str | None:
        path = find(argv[0])
        if not path:
            tools[name] = f"not found ({argv[0]}; package: {PACKAGES[name]})"
            return None
        rc, out, err = run([path, *argv[1:]])
        if rc != 0:
            tools[name] = f"failed (rc {rc}): {(err or out).strip()[:300] or 'no output'}"
            return None
        tools[name] = "ok"
        return out

    parsed: dict[str, Any] = {}
    for name, argv, parser in (
        ("ibstat", [params["ibstat"]], parse_ibstat),
        ("ibdev2netdev", [params["ibdev2netdev"]], parse_ibdev2netdev),
        ("ibv_devinfo", [params["ibv_devinfo"]], parse_ibv_devinfo),
    ):
        text = output(name, argv)
        if text is None:
            continue
        try:
            parsed[name] = parser(text)
        except FabricParseError as exc:
            tools[name] = f"unparsable: {exc}"
    sys_lines, pci = sysfs_rdma(root)
    links = parsed.get("ibdev2netdev")
    if links is None and sys_lines:
        links = sys_lines
        tools["sysfs"] = "ok (netdevs read from sysfs)"
    topo = None
    pci_tree: dict[str, Any] | None = None
    cpu: dict[str, Any] | None = None
    if params.get("topology"):
        import os

        pci_tree = read_pci_topology(root)
        cpu = {**parse_cpuinfo(_read(os.path.join(proc, "cpuinfo")) or ""), "arch": os.uname()[4]}
        text = output("nvidia-smi", [params["nvidia_smi"], "topo", "-m"])
        if text is not None:
            try:
                topo = parse_topo_nics(text)
            except FabricParseError as exc:
                tools["nvidia-smi"] = f"unparsable: {exc}"
    if "ibstat" not in parsed and "ibv_devinfo" not in parsed:
        failures.append(
            f"{node}: no port state, rate or link layer: ibstat {tools.get('ibstat')},"
            f" ibv_devinfo {tools.get('ibv_devinfo')}"
        )
    ports = merge_ports(
        ibstat=parsed.get("ibstat"),
        ibdev2netdev=links,
        ibv_devinfo=parsed.get("ibv_devinfo"),
        pci=pci,
    )
    failures += [f"{node}: tools disagree: {line}" for line in disagreements(ports)]
    selection: dict[str, Any] = {"rails": [], "excluded": [], "order": None}
    try:
        selection = select_rails(
            ports,
            fabric_type=params["fabric_type"],
            rails=int(params["rails"]),
            netdevs=params.get("netdevs") or None,
            exclude_netdevs=params.get("exclude_netdevs") or (),
            rate=params.get("rate") or None,
            topo=topo,
        )
    except RailSelectionError as exc:
        failures.append(f"{node}: rail selection: {exc}")
    checks = check_ports(
        node,
        ports,
        selection["rails"],
        rate=params.get("rate") or None,
        link_layer=LINK_LAYER[params["fabric_type"]],
        pcie_width=params.get("pcie_width") or None,
        pcie_gen=params.get("pcie_gen") or None,
    )
    return {
        "changed": False,
        "ansible_facts": {
            "gpufleet_fabric": {
                "ports": ports,
                "rails": selection["rails"],
                "excluded": selection["excluded"],
                "order": selection["order"],
                "tools": tools,
                "topology": topo,
                "pci": pci_tree,
                "cpu": cpu,
            }
        },
        "checks": checks,
        "failures": failures + failure_lines(checks),
    }


def main() -> None:  # pragma: no cover - runs on the node
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "fabric_type": {"type": "str", "required": True, "choices": ["infiniband", "roce"]},
            "rails": {"type": "int", "required": True},
            "netdevs": {"type": "list", "elements": "str", "default": []},
            "exclude_netdevs": {"type": "list", "elements": "str", "default": []},
            "rate": {"type": "int", "default": 0},
            "pcie_width": {"type": "int", "default": 0},
            "pcie_gen": {"type": "int", "default": 0},
            "topology": {"type": "bool", "default": False},
            "node_name": {"type": "str", "default": ""},
            "ibstat": {"type": "str", "default": "ibstat"},
            "ibdev2netdev": {"type": "str", "default": "ibdev2netdev"},
            "ibv_devinfo": {"type": "str", "default": "ibv_devinfo"},
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
        },
        supports_check_mode=True,
    )

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            rc, out, err = module.run_command(argv, handle_exceptions=False)
        except OSError as exc:  # e.g. not executable: a failed tool, not a failed module
            return 127, "", str(exc)
        return rc, out, err

    def find(name: str) -> str | None:
        import os

        if "/" in name:
            return name if os.access(name, os.X_OK) else None
        found = module.get_bin_path(name)
        return str(found) if found else None

    module.exit_json(**collect(module.params, run, find))


if __name__ == "__main__":
    main()
