#!/usr/bin/python
"""Ansible module: NVIDIA GPU facts from nvidia-smi, and the node checks built on them.

Self-contained (Ansible ships this file alone to the node). Everything below the
documentation strings up to `main()` is pure parsing or judging, importable by
pytest and tested on outputs recorded on real H100 systems (tests/data/hardware).

Inputs it understands:
- `nvidia-smi -q -x` (XML; preferred) and `nvidia-smi -q` (text), per GPU: model,
  VBIOS, serial number (or why there is none), board/GPU/FRU part numbers, module id,
  persistence, ECC mode and ECC error counters (volatile and aggregate, SRAM and DRAM as
  printed), remapped rows and remap bank availability, retired pages, PCIe generation and
  width (current and max), clocks (current and max), temperatures and their limits, power
  draw and limits, framebuffer memory use, Fabric state/status, clocks event reasons;
- `nvidia-smi topo -m`: the connection matrix, CPU/NUMA affinity and, per GPU,
  the closest NICs;
- `nvidia-smi nvlink -s`: per GPU and link, speed or inactive; a failed run is kept as
  an error with nvidia-smi's words;
- `systemctl status nvidia-fabricmanager` / journal lines: running or not, and the
  "driver interface version ... don't match" failure.

Both query paths are tested on outputs recorded on real H100s (driver branches 535, 565, 580,
590; an A100 on 510 for non-zero ECC counters and a pending remap); the XML and text forms of
one recording (a lent H100 VM, driver 580.159.04) must give the same facts, the power readings
sampled a moment apart excepted.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from typing import Any

DOCUMENTATION = r"""
---
module: nvidia_gpu_facts
short_description: GPU, topology, NVLink and Fabric Manager facts from nvidia-smi; node checks
description:
  - Runs C(nvidia-smi -q -x) (falling back to the text form C(nvidia-smi -q)),
    C(nvidia-smi topo -m), C(nvidia-smi nvlink -s) and reads the Fabric Manager unit state
    and journal, and returns them as the fact C(nvidia_gpu).
  - With O(expect) it also judges the node and returns C(failures), one line per failed
    check naming the check, the value seen and the value expected. It never fails by itself
    on a failed check; the caller decides (see roles/nvidia_driver/tasks/validate.yml).
options:
  nvidia_smi:
    description: Path or name of nvidia-smi.
    type: str
    default: nvidia-smi
  query_format:
    description: C(auto) tries XML first and falls back to text.
    type: str
    choices: [auto, xml, text]
    default: auto
  topology:
    description: Also run C(nvidia-smi topo -m).
    type: bool
    default: true
  nvlink:
    description: Also run C(nvidia-smi nvlink -s).
    type: bool
    default: true
  fabricmanager_unit:
    description: Systemd unit of Fabric Manager to inspect; empty to skip.
    type: str
    default: nvidia-fabricmanager
  expect:
    description: >-
      Expected values; keys gpu_count, driver_version, fabric_manager (bool),
      persistence (bool), ecc (bool), ecc_errors (bool: no uncorrectable ECC error since the
      last reset), remaps (bool; checked by default, but a GPU without a readable Remapped
      Rows state fails only when given explicitly), pcie_gen, pcie_width, peermem (bool),
      nvlink (bool: C(nvlink -s) ran and every listed link is up), nvlink_links_per_gpu (int:
      links up on every GPU of C(-q), 18 on an H100 SXM), serial (bool: every GPU reports a
      serial number). A key left out is not checked.
    type: dict
    default: {}
"""

RETURN = r"""
ansible_facts:
  description: C(nvidia_gpu) with driver_version, cuda_version, gpu_count, gpus, topology,
    nvlink, fabricmanager, peermem_loaded, query_format.
  returned: always
  type: dict
checks:
  description: >-
    Every check by name with C(status) (pass, fail, unknown, no_data, not_checked) and
    C(detail) (C(seen X, expected Y) unless it passed). C(unknown): the value was not printed
    or unreadable, so the expectation cannot be confirmed; it is a failure too.
  returned: always
  type: dict
failures:
  description: One line per check that failed or is unknown (empty when all pass).
  returned: always
  type: list
  elements: str
"""

# --------------------------------------------------------------------------- text -q


_KV = re.compile(r"^(?P<indent> *)(?P<key>[^:\s][^:]*?)\s+: ?(?P<value>.*?)\s*$")
_GPU_HEADER = re.compile(r"^GPU (?P<bus>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\s*$")


def _tree(lines: list[str]) -> dict[str, Any]:
    """Indented `Key : value` lines and bare section headers -> nested dict."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    for raw in lines:
        line = raw.rstrip("\n").expandtabs()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        match = _KV.match(line)
        if match:
            parent.setdefault(match["key"].strip(), match["value"])
            continue
        section: dict[str, Any] = {}
        parent.setdefault(line.strip(), section)
        stack.append((indent, section))
    return root


def _get(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _flag(value: Any) -> bool | None:
    """Enabled/Yes/Active -> True, Disabled/No/Not Active -> False, else None."""
    if not isinstance(value, str):
        return None
    v = value.strip().lower()
    if v in ("enabled", "yes", "active", "true"):
        return True
    if v in ("disabled", "no", "not active", "false", "inactive"):
        return False
    return None


def _int(value: Any) -> int | None:
    if value is None:
        return None
    match = re.match(r"^\s*(\d+)", str(value))
    return int(match.group(1)) if match else None


def _str(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    v = value.strip()
    return None if v in ("", "N/A") else v


def _num(value: Any) -> float | None:
    """A number before its unit ("67.74 W" -> 67.74, "-8 C" -> -8.0); N/A and prose -> None."""
    if not isinstance(value, str):
        return None
    match = re.match(r"^\s*(-?\d+(?:\.\d+)?)", value)
    return float(match.group(1)) if match else None


def _whole(value: Any) -> int | None:
    """Signed whole numbers with a unit: "81559 MiB", "1980 MHz", "-8 C"."""
    number = _num(value)
    return None if number is None else int(number)


def _serial(raw: Any) -> tuple[str | None, str | None]:
    """(serial, None) or (None, why there is no usable serial): the vendor needs it for an RMA."""
    if not isinstance(raw, str):
        return (
            None,
            "not in the nvidia-smi output (partial output or a driver that does not print it)",
        )
    value = raw.strip()
    if value in ("", "N/A"):
        return None, (
            f"nvidia-smi printed {value or 'an empty value'}: the board does not report it; "
            "read it from the board label or the BMC"
        )
    if set(value) == {"0"}:
        return None, (
            "all zeros: masked (by a hypervisor or collector) or never programmed; "
            "read it from the board label or the BMC"
        )
    if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z-]*", value):
        return None, f"unreadable: nvidia-smi printed {value!r}"
    return value, None


def _key(name: str) -> str:
    """Text label to XML element name: "SRAM Uncorrectable SEC-DED" -> sram_uncorrectable_secded."""
    return re.sub(r"[^a-z0-9]+", "_", re.sub(r"[-.]", "", name.lower())).strip("_")


def _normalized(node: Any) -> Any:
    if isinstance(node, dict):
        return {_key(k): _normalized(v) for k, v in node.items()}
    return node


def _element_tree(el: ET.Element) -> dict[str, Any]:
    """An XML element as the same nested dict the text form gives (tag -> text or children)."""
    return {
        child.tag: _element_tree(child) if len(child) else (child.text or "").strip()
        for child in el
    }


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (node or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "_"))
        else:
            out[name] = value
    return out


def _is_counter(name: str) -> bool:
    return "correctable" in name or name.startswith(("single_bit", "double_bit"))


def _uncorrectable(name: str) -> bool:
    return "uncorrectable" in name or name.startswith("double_bit")


def _total(counters: dict[str, int | None], uncorrectable: bool) -> int | None:
    """Sum of one kind; None when nvidia-smi printed none of that kind or any of them unreadable."""
    values = [v for k, v in counters.items() if _uncorrectable(k) == uncorrectable]
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


def _ecc_errors(section: Any) -> dict[str, Any] | None:
    """ECC error counters, whatever the branch prints.

    535 to 590 on Hopper: SRAM Correctable, SRAM Uncorrectable Parity, SRAM Uncorrectable SEC-DED,
    DRAM Correctable, DRAM Uncorrectable per scope, plus SRAM Threshold Exceeded and the sources
    of aggregate uncorrectable SRAM errors; 580 and later add Channel/TPC Repair Pending and
    Unrepairable Memory. Ampere on older branches prints SRAM/DRAM Correctable/Uncorrectable.
    Counters keep the element names of the XML form; an unreadable counter (N/A) is None.
    """
    if not isinstance(section, dict):
        return None
    ecc = _normalized(section)
    out: dict[str, Any] = {}
    for scope in ("volatile", "aggregate"):
        flat = _flat(ecc.get(scope) if isinstance(ecc.get(scope), dict) else {})
        counters = {k: _whole(v) for k, v in flat.items() if _is_counter(k)}
        out[scope] = counters
        out[f"{scope}_correctable"] = _total(counters, uncorrectable=False)
        out[f"{scope}_uncorrectable"] = _total(counters, uncorrectable=True)
    sources = ecc.get("aggregate_uncorrectable_sram_sources")
    out["aggregate_uncorrectable_sram_sources"] = (
        {k: _whole(v) for k, v in sources.items()} if isinstance(sources, dict) else None
    )
    aggregate = ecc.get("aggregate") if isinstance(ecc.get("aggregate"), dict) else {}
    out["sram_threshold_exceeded"] = _flag(aggregate.get("sram_threshold_exceeded"))
    for flag in ("channel_repair_pending", "tpc_repair_pending", "unrepairable_memory"):
        out[flag] = _flag(ecc.get(flag))
    return out


# Per field, the places nvidia-smi prints it, first match wins: the text form's section path and
# the XML form's element path. Layouts differ by driver branch (checked on recordings of 510, 535,
# 565, 580 and 590): 580/590 print "Average Power Draw" and "Instantaneous Power Draw" where
# 535/565 print "Power Draw"; 565 and later move Module Id under "Platform Info".
_FIELDS: dict[str, dict[str, tuple[list[tuple[str, ...]], list[str]]]] = {
    "identity": {
        "board_part_number": ([("Board Part Number",)], ["board_part_number"]),
        "gpu_part_number": ([("GPU Part Number",)], ["gpu_part_number"]),
        "fru_part_number": ([("FRU Part Number",)], ["gpu_fru_part_number"]),
        "module_id": (
            [("Module ID",), ("Platform Info", "Module Id")],
            ["module_id", "platformInfo/module_id"],
        ),
    },
    "clocks": {
        "graphics_mhz": ([("Clocks", "Graphics")], ["clocks/graphics_clock"]),
        "sm_mhz": ([("Clocks", "SM")], ["clocks/sm_clock"]),
        "memory_mhz": ([("Clocks", "Memory")], ["clocks/mem_clock"]),
        "video_mhz": ([("Clocks", "Video")], ["clocks/video_clock"]),
        "max_graphics_mhz": ([("Max Clocks", "Graphics")], ["max_clocks/graphics_clock"]),
        "max_sm_mhz": ([("Max Clocks", "SM")], ["max_clocks/sm_clock"]),
        "max_memory_mhz": ([("Max Clocks", "Memory")], ["max_clocks/mem_clock"]),
        "max_video_mhz": ([("Max Clocks", "Video")], ["max_clocks/video_clock"]),
    },
    # 535 and later print limits as T.Limit values (degrees of headroom, the thresholds relative
    # to the GPU's own limit, e.g. shutdown -8 C); older branches print absolute thresholds.
    "temperature": {
        "gpu_c": ([("Temperature", "GPU Current Temp")], ["temperature/gpu_temp"]),
        "memory_c": ([("Temperature", "Memory Current Temp")], ["temperature/memory_temp"]),
        "tlimit_c": ([("Temperature", "GPU T.Limit Temp")], ["temperature/gpu_temp_tlimit"]),
        "shutdown_tlimit_c": (
            [("Temperature", "GPU Shutdown T.Limit Temp")],
            ["temperature/gpu_temp_max_tlimit_threshold"],
        ),
        "slowdown_tlimit_c": (
            [("Temperature", "GPU Slowdown T.Limit Temp")],
            ["temperature/gpu_temp_slow_tlimit_threshold"],
        ),
        "max_operating_tlimit_c": (
            [("Temperature", "GPU Max Operating T.Limit Temp")],
            ["temperature/gpu_temp_max_gpu_tlimit_threshold"],
        ),
        "memory_max_operating_tlimit_c": (
            [("Temperature", "Memory Max Operating T.Limit Temp")],
            ["temperature/gpu_temp_max_mem_tlimit_threshold"],
        ),
        "shutdown_c": (
            [("Temperature", "GPU Shutdown Temp")],
            ["temperature/gpu_temp_max_threshold"],
        ),
        "slowdown_c": (
            [("Temperature", "GPU Slowdown Temp")],
            ["temperature/gpu_temp_slow_threshold"],
        ),
        "max_operating_c": (
            [("Temperature", "GPU Max Operating Temp")],
            ["temperature/gpu_temp_max_gpu_threshold"],
        ),
        "memory_max_operating_c": (
            [("Temperature", "Memory Max Operating Temp")],
            ["temperature/gpu_temp_max_mem_threshold"],
        ),
        "target_c": (
            [("Temperature", "GPU Target Temperature")],
            ["temperature/gpu_target_temperature"],
        ),
    },
    "power": {
        "draw_w": (
            [
                ("GPU Power Readings", "Average Power Draw"),
                ("GPU Power Readings", "Power Draw"),
                ("Power Readings", "Power Draw"),
            ],
            [
                "gpu_power_readings/average_power_draw",
                "gpu_power_readings/power_draw",
                "power_readings/power_draw",
            ],
        ),
        "instant_draw_w": (
            [("GPU Power Readings", "Instantaneous Power Draw")],
            ["gpu_power_readings/instant_power_draw"],
        ),
        "limit_w": (
            [
                ("GPU Power Readings", "Current Power Limit"),
                ("Power Readings", "Enforced Power Limit"),
            ],
            ["gpu_power_readings/current_power_limit", "power_readings/enforced_power_limit"],
        ),
        "requested_limit_w": (
            [("GPU Power Readings", "Requested Power Limit"), ("Power Readings", "Power Limit")],
            ["gpu_power_readings/requested_power_limit", "power_readings/power_limit"],
        ),
        "default_limit_w": (
            [
                ("GPU Power Readings", "Default Power Limit"),
                ("Power Readings", "Default Power Limit"),
            ],
            ["gpu_power_readings/default_power_limit", "power_readings/default_power_limit"],
        ),
        "min_limit_w": (
            [("GPU Power Readings", "Min Power Limit"), ("Power Readings", "Min Power Limit")],
            ["gpu_power_readings/min_power_limit", "power_readings/min_power_limit"],
        ),
        "max_limit_w": (
            [("GPU Power Readings", "Max Power Limit"), ("Power Readings", "Max Power Limit")],
            ["gpu_power_readings/max_power_limit", "power_readings/max_power_limit"],
        ),
        "memory_draw_w": (
            [
                ("GPU Memory Power Readings", "Average Power Draw"),
                ("GPU Memory Power Readings", "Power Draw"),
            ],
            [
                "gpu_memory_power_readings/average_power_draw",
                "gpu_memory_power_readings/power_draw",
            ],
        ),
    },
    "fb_memory": {
        "total_mib": ([("FB Memory Usage", "Total")], ["fb_memory_usage/total"]),
        "reserved_mib": ([("FB Memory Usage", "Reserved")], ["fb_memory_usage/reserved"]),
        "used_mib": ([("FB Memory Usage", "Used")], ["fb_memory_usage/used"]),
        "free_mib": ([("FB Memory Usage", "Free")], ["fb_memory_usage/free"]),
    },
    "remap_banks": {
        "max": (
            [("Remapped Rows", "Bank Remap Availability Histogram", "Max")],
            ["remapped_rows/row_remapper_histogram/row_remapper_histogram_max"],
        ),
        "high": (
            [("Remapped Rows", "Bank Remap Availability Histogram", "High")],
            ["remapped_rows/row_remapper_histogram/row_remapper_histogram_high"],
        ),
        "partial": (
            [("Remapped Rows", "Bank Remap Availability Histogram", "Partial")],
            ["remapped_rows/row_remapper_histogram/row_remapper_histogram_partial"],
        ),
        "low": (
            [("Remapped Rows", "Bank Remap Availability Histogram", "Low")],
            ["remapped_rows/row_remapper_histogram/row_remapper_histogram_low"],
        ),
        "none": (
            [("Remapped Rows", "Bank Remap Availability Histogram", "None")],
            ["remapped_rows/row_remapper_histogram/row_remapper_histogram_none"],
        ),
    },
}


def _details(lookup: Any, form: int) -> dict[str, Any]:
    """Serial, part numbers, clocks, temperatures, power, memory and remap banks of one GPU.

    `lookup(path)` returns the printed value or None when the form has no such field; `form` is
    0 for text paths, 1 for XML paths. A section with none of its fields printed is None.
    """
    out: dict[str, Any] = {}
    for group, fields in _FIELDS.items():
        values: dict[str, Any] = {}
        printed = False
        for name, paths in fields.items():
            raw = next((v for v in map(lookup, paths[form]) if v is not None), None)
            printed = printed or raw is not None
            if group == "identity":
                values[name] = _whole(raw) if name == "module_id" else _str(raw)
            elif group == "power":
                values[name] = _num(raw)
            else:
                values[name] = _whole(raw)
        out[group] = values if printed or group == "identity" else None
    identity = out.pop("identity")
    return {**identity, **out}


def _reasons(section: Any) -> dict[str, bool]:
    """Clock event reasons, flattened (nested HW Slowdown children included)."""
    out: dict[str, bool] = {}
    if not isinstance(section, dict):
        return out
    for key, value in section.items():
        if isinstance(value, dict):
            out.update(_reasons(value))
        else:
            flag = _flag(value)
            if flag is not None:
                out[key] = flag
    return out


def _gpu_from_text_tree(bus_id: str | None, g: dict[str, Any]) -> dict[str, Any]:
    link = _get(g, "PCI", "GPU Link Info") or {}
    reasons = _reasons(g.get("Clocks Event Reasons") or g.get("Clocks Throttle Reasons"))
    remap = g.get("Remapped Rows") if isinstance(g.get("Remapped Rows"), dict) else None
    retired = g.get("Retired Pages") if isinstance(g.get("Retired Pages"), dict) else None
    serial, serial_problem = _serial(g.get("Serial Number"))

    def lookup(path: tuple[str, ...]) -> str | None:
        value = _get(g, *path)
        return value if isinstance(value, str) else None

    return {
        "bus_id": bus_id or _str(_get(g, "PCI", "Bus Id")),
        "product_name": _str(g.get("Product Name")),
        "architecture": _str(g.get("Product Architecture")),
        "uuid": _str(g.get("GPU UUID")),
        "serial_number": serial,
        "serial_number_problem": serial_problem,
        **_details(lookup, 0),
        "ecc_errors": _ecc_errors(g.get("ECC Errors")),
        "minor_number": _int(g.get("Minor Number")),
        "vbios_version": _str(g.get("VBIOS Version")),
        "persistence_mode": _flag(g.get("Persistence Mode")),
        "ecc_mode": {
            "current": _flag(_get(g, "ECC Mode", "Current")),
            "pending": _flag(_get(g, "ECC Mode", "Pending")),
        },
        "remapped_rows": None
        if remap is None
        else {
            "correctable": _int(remap.get("Correctable Error")),
            "uncorrectable": _int(remap.get("Uncorrectable Error")),
            "pending": _flag(remap.get("Pending")),
            "failure": _flag(remap.get("Remapping Failure Occurred")),
        },
        "retired_pages": None
        if retired is None
        else {
            "single_bit": _int(_get(retired, "Single Bit ECC")),
            "double_bit": _int(_get(retired, "Double Bit ECC")),
            "pending": _flag(retired.get("Pending Page Blacklist"))
            if "Pending Page Blacklist" in retired
            else _flag(retired.get("Pending Page Retirement")),
        },
        "pcie": {
            "gen_current": _int(_get(link, "PCIe Generation", "Current")),
            "gen_max": _int(_get(link, "PCIe Generation", "Max")),
            "width_current": _int(_get(link, "Link Width", "Current")),
            "width_max": _int(_get(link, "Link Width", "Max")),
        },
        "fabric": {
            "state": _str(_get(g, "Fabric", "State")),
            "status": _str(_get(g, "Fabric", "Status")),
        },
        "clocks_event_reasons": reasons,
        "clocks_event_reasons_active": sorted(k for k, v in reasons.items() if v),
    }


def parse_smi_query_text(text: str) -> dict[str, Any]:
    """Parse `nvidia-smi -q` (text). A grep excerpt without GPU headers yields one GPU."""
    header: list[str] = []
    blocks: list[tuple[str | None, list[str]]] = []
    for line in text.splitlines():
        match = _GPU_HEADER.match(line)
        if match:
            blocks.append((match["bus"], []))
        elif blocks:
            blocks[-1][1].append(line)
        else:
            header.append(line)
    top = _tree([line for line in header if not line.startswith("=")])
    if not blocks:
        # Partial output (e.g. `nvidia-smi -q -i 0 | grep -A2 Fabric`): one unnamed GPU.
        body = {k: v for k, v in top.items() if isinstance(v, dict)}
        gpus = [_gpu_from_text_tree(None, body)] if body else []
    else:
        gpus = [_gpu_from_text_tree(bus, _tree(lines)) for bus, lines in blocks]
    return {
        "driver_version": _str(top.get("Driver Version")),
        "cuda_version": _str(top.get("CUDA Version")),
        "attached_gpus": _int(top.get("Attached GPUs")),
        "gpu_count": len(gpus),
        "gpus": gpus,
    }


# --------------------------------------------------------------------------- XML -q -x


def _xt(el: ET.Element | None, path: str) -> str | None:
    if el is None:
        return None
    found = el.find(path)
    return None if found is None or found.text is None else found.text.strip()


def parse_smi_query_xml(text: str) -> dict[str, Any]:
    """Parse `nvidia-smi -q -x`. Element names follow NVIDIA's nvsmi DTD (unproven on an H100)."""
    root = ET.fromstring(text.strip())
    gpus = []
    for g in root.findall("gpu"):
        reasons_el = g.find("clocks_event_reasons")
        if reasons_el is None:
            reasons_el = g.find("clocks_throttle_reasons")
        reasons: dict[str, bool] = {}
        for child in list(reasons_el) if reasons_el is not None else []:
            name = re.sub(r"^clocks_(event|throttle)_reason_", "", child.tag)
            flag = _flag(child.text)
            if flag is not None:
                reasons[name] = flag
        remap = g.find("remapped_rows")
        retired = g.find("retired_pages")
        ecc_errors = g.find("ecc_errors")
        serial, serial_problem = _serial(_xt(g, "serial"))
        gpus.append(
            {
                "bus_id": g.get("id"),
                "product_name": _str(_xt(g, "product_name")),
                "architecture": _str(_xt(g, "product_architecture")),
                "uuid": _str(_xt(g, "uuid")),
                "serial_number": serial,
                "serial_number_problem": serial_problem,
                **_details(lambda path, g=g: _xt(g, path), 1),
                "ecc_errors": None
                if ecc_errors is None
                else _ecc_errors(_element_tree(ecc_errors)),
                "minor_number": _int(_xt(g, "minor_number")),
                "vbios_version": _str(_xt(g, "vbios_version")),
                "persistence_mode": _flag(_xt(g, "persistence_mode")),
                "ecc_mode": {
                    "current": _flag(_xt(g, "ecc_mode/current_ecc")),
                    "pending": _flag(_xt(g, "ecc_mode/pending_ecc")),
                },
                "remapped_rows": None
                if remap is None
                else {
                    "correctable": _int(_xt(remap, "remapped_row_corr")),
                    "uncorrectable": _int(_xt(remap, "remapped_row_unc")),
                    "pending": _flag(_xt(remap, "remapped_row_pending")),
                    "failure": _flag(_xt(remap, "remapped_row_failure")),
                },
                "retired_pages": None
                if retired is None
                else {
                    "single_bit": _int(
                        _xt(retired, "multiple_single_bit_retirement/retired_count")
                    ),
                    "double_bit": _int(_xt(retired, "double_bit_retirement/retired_count")),
                    "pending": _flag(_xt(retired, "pending_blacklist"))
                    if retired.find("pending_blacklist") is not None
                    else _flag(_xt(retired, "pending_retirement")),
                },
                "pcie": {
                    "gen_current": _int(_xt(g, "pci/pci_gpu_link_info/pcie_gen/current_link_gen")),
                    "gen_max": _int(_xt(g, "pci/pci_gpu_link_info/pcie_gen/max_link_gen")),
                    "width_current": _int(
                        _xt(g, "pci/pci_gpu_link_info/link_widths/current_link_width")
                    ),
                    "width_max": _int(_xt(g, "pci/pci_gpu_link_info/link_widths/max_link_width")),
                },
                "fabric": {
                    "state": _str(_xt(g, "fabric/state")),
                    "status": _str(_xt(g, "fabric/status")),
                },
                "clocks_event_reasons": reasons,
                "clocks_event_reasons_active": sorted(k for k, v in reasons.items() if v),
            }
        )
    return {
        "driver_version": _str(_xt(root, "driver_version")),
        "cuda_version": _str(_xt(root, "cuda_version")),
        "attached_gpus": _int(_xt(root, "attached_gpus")),
        "gpu_count": len(gpus),
        "gpus": gpus,
    }


# --------------------------------------------------------------------------- default table

_TABLE_HEAD = re.compile(
    r"NVIDIA-SMI (?P<smi>\S+)\s+Driver Version: (?P<driver>\S+)\s+CUDA Version: (?P<cuda>\S+)"
)
_TABLE_ROW1 = re.compile(
    r"^\|\s*(?P<index>\d+)\s+(?P<name>.+?)\s+(?P<persistence>On|Off)\s*"
    r"\|\s*(?P<bus>[0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+\.\d)\s+(?P<disp>\S+)\s*"
    r"\|\s*(?P<ecc>\S+)\s*\|\s*$"
)
_TABLE_ROW2 = re.compile(
    r"^\|\s*(?P<fan>\S+)\s+(?P<temp>\S+)\s+(?P<perf>\S+)\s+(?P<draw>\S+)\s*/\s*(?P<cap>\S+)\s*"
    r"\|\s*(?P<used>\S+)\s*/\s*(?P<total>\S+)\s*\|\s*(?P<util>\S+)\s+(?P<compute>.+?)\s*\|\s*$"
)
_TABLE_ROW3 = re.compile(r"^\|\s*\|\s*\|\s*(?P<mig>.+?)\s*\|\s*$")


def parse_smi_table(text: str) -> dict[str, Any]:
    """Parse the default `nvidia-smi` table: per GPU temperature, power draw and cap, memory
    use, volatile uncorrectable ECC count, persistence, utilization.

    It carries less than `-q`; it is what exists of some driver branches (the recordings of
    550 and 570 are tables) and what operators paste into tickets.
    """
    head = _TABLE_HEAD.search(text)
    gpus: list[dict[str, Any]] = []
    rows = text.splitlines()
    for i, line in enumerate(rows):
        first = _TABLE_ROW1.match(line)
        second = _TABLE_ROW2.match(rows[i + 1]) if first and i + 1 < len(rows) else None
        if not (first and second):
            continue
        third = _TABLE_ROW3.match(rows[i + 2]) if i + 2 < len(rows) else None
        gpus.append(
            {
                "index": int(first["index"]),
                "name": first["name"],
                "persistence_mode": first["persistence"] == "On",
                "bus_id": first["bus"],
                "display_active": _flag({"On": "yes", "Off": "no"}.get(first["disp"])),
                "ecc_volatile_uncorrectable": _whole(first["ecc"]),
                "fan_pct": _whole(second["fan"]),
                "temperature_c": _whole(second["temp"]),
                "performance_state": _str(second["perf"]),
                "power_draw_w": _num(second["draw"]),
                "power_cap_w": _num(second["cap"]),
                "memory_used_mib": _whole(second["used"]),
                "memory_total_mib": _whole(second["total"]),
                "utilization_pct": _whole(second["util"]),
                "compute_mode": second["compute"],
                "mig_mode": _str(third["mig"]) if third else None,
            }
        )
    return {
        "driver_version": head["driver"] if head else None,
        "cuda_version": head["cuda"] if head else None,
        "gpu_count": len(gpus),
        "gpus": gpus,
    }


# --------------------------------------------------------------------------- topo -m

# Closest first (nvidia-smi topo -m legend).
_LINK_RANK = {"X": 0, "PIX": 1, "PXB": 2, "PHB": 3, "NODE": 4, "SYS": 5}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_topo_matrix(text: str) -> dict[str, Any]:
    """Parse `nvidia-smi topo -m`: matrix, NIC names, affinities, closest NICs per GPU.

    nvidia-smi underlines the header row with ANSI escapes even when its output is not a
    terminal (seen with driver 580.159.04); they are removed first.
    """
    text = _ANSI.sub("", text)
    lines = text.splitlines()
    head_idx = next((i for i, line in enumerate(lines) if line.startswith("\tGPU")), None)
    if head_idx is None:
        return {"devices": [], "matrix": {}, "nics": {}, "gpus": {}}
    columns = [c.strip() for c in lines[head_idx].split("\t")[1:]]
    devices = [c for c in columns if re.fullmatch(r"(GPU|NIC)\d+", c)]
    extra = [c for c in columns if c and c not in devices]
    matrix: dict[str, dict[str, str]] = {}
    affinity: dict[str, dict[str, str | None]] = {}
    for line in lines[head_idx + 1 :]:
        fields = line.split("\t")
        name = fields[0].strip()
        if not re.fullmatch(r"(GPU|NIC)\d+", name):
            if not line.strip():
                continue
            break
        cells = [c.strip() for c in fields[1 : 1 + len(devices)]]
        matrix[name] = dict(zip(devices, cells, strict=False))
        trailing = [c.strip() for c in fields[1 + len(devices) :] if c.strip()]
        affinity[name] = {
            key: (trailing[i] if i < len(trailing) else None) for i, key in enumerate(extra)
        }
    nics = dict(re.findall(r"^\s*(NIC\d+):\s*(\S+)\s*$", text, flags=re.MULTILINE))
    gpus: dict[str, Any] = {}
    for dev in devices:
        if not dev.startswith("GPU"):
            continue
        row = matrix.get(dev, {})
        nic_links = {n: row.get(n, "") for n in devices if n.startswith("NIC")}
        ranks = {n: _LINK_RANK.get(v, 9) for n, v in nic_links.items()}
        best = min(ranks.values(), default=9)
        closest = sorted((n for n, r in ranks.items() if r == best and best < 9), key=_natural)
        gpus[dev] = {
            "nvlink_peers": {
                p: int(v[2:]) for p, v in row.items() if p.startswith("GPU") and v.startswith("NV")
            },
            "cpu_affinity": affinity.get(dev, {}).get("CPU Affinity"),
            "numa_affinity": affinity.get(dev, {}).get("NUMA Affinity"),
            "closest_nics": [nics.get(n, n) for n in closest],
            "closest_nic_link": nic_links[closest[0]] if closest else None,
        }
    return {"devices": devices, "matrix": matrix, "nics": nics, "gpus": gpus}


def _natural(name: str) -> tuple[str, int]:
    match = re.match(r"(\D+)(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else (name, 0)


# --------------------------------------------------------------------------- nvlink -s

_NVLINK_GPU = re.compile(r"^GPU (\d+): (.*?)(?: \(UUID: (\S+)\))?\s*$")
_NVLINK_LINK = re.compile(r"^\s+Link (\d+): (.*?)\s*$")


def parse_nvlink_status(text: str) -> dict[str, Any]:
    """Parse `nvidia-smi nvlink -s`: per GPU index, per link: up and speed in GB/s."""
    gpus: dict[int, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        g = _NVLINK_GPU.match(line)
        if g:
            current = {"name": g.group(2), "uuid": g.group(3), "links": {}}
            gpus[int(g.group(1))] = current
            continue
        link = _NVLINK_LINK.match(line)
        if link and current is not None:
            speed = re.match(r"([\d.]+) GB/s", link.group(2))
            current["links"][int(link.group(1))] = {
                "up": speed is not None,
                "speed_gbps": float(speed.group(1)) if speed else None,
                "raw": link.group(2),
            }
    for gpu in gpus.values():
        gpu["links_down"] = sorted(i for i, lk in gpu["links"].items() if not lk["up"])
        gpu["links_up"] = sum(1 for lk in gpu["links"].values() if lk["up"])
    return {"gpus": gpus, "error": None}


def nvlink_facts(rc: int, out: str, err: str) -> dict[str, Any]:
    """The NVLink fact from one run of `nvidia-smi nvlink -s`: parsed, or why there is none.

    A failed run is kept as an error with nvidia-smi's own words, so the check can say why
    (it used to leave None, and the check passed without a word).
    """
    if rc != 0:
        said = next((line.strip() for line in (err or out).splitlines() if line.strip()), "")
        return {
            "gpus": {},
            "error": f"nvidia-smi nvlink -s failed (rc {rc}): {said or 'no output'}",
        }
    return parse_nvlink_status(out)


# --------------------------------------------------------------------------- Fabric Manager

_FM_MISMATCH = re.compile(
    r"fabric manager NVIDIA GPU driver interface version (?P<fm>\d+(?:\.\d+)*) don't match "
    r"with driver version (?P<driver>\d+(?:\.\d+)*)"
)


def parse_fabricmanager_status(text: str) -> dict[str, Any]:
    """Parse `systemctl status nvidia-fabricmanager` and/or its journal lines."""
    active = re.search(r"^\s*Active: (\S+) \(([^)]*)\)", text, flags=re.MULTILINE)
    mismatch = _FM_MISMATCH.search(text)
    return {
        "active_state": active.group(1) if active else None,
        "sub_state": active.group(2) if active else None,
        "version_mismatch": None
        if mismatch is None
        else {"fabric_manager": mismatch["fm"], "driver": mismatch["driver"]},
        "start_failed": bool(re.search(r"status=\d+/FAILURE|Failed to start", text)),
        "nvswitches_configured": "Successfully configured all the available NVSwitches" in text,
        "nvswitch_errors": [
            {"kind": kind, "code": int(code)}
            for kind, code in re.findall(r"detected NVSwitch (non-fatal|fatal) error (\d+)", text)
        ],
    }


# --------------------------------------------------------------------------- checks


def _coerce(value: Any) -> Any:
    """Values templated by Ansible may arrive as strings: "8" -> 8, "True" -> True."""
    if isinstance(value, str):
        if value.strip().lower() in ("true", "yes"):
            return True
        if value.strip().lower() in ("false", "no", ""):
            return False
        if value.strip().isdigit():
            return int(value)
    return value


# Check statuses (see judge_node).
PASS = "pass"
FAIL = "fail"
UNKNOWN = "unknown"
NO_DATA = "no_data"
NOT_CHECKED = "not_checked"

# The order of the failure lines.
CHECKS = (
    "gpu_count",
    "driver_version",
    "fabric_manager",
    "fabric_state",
    "fabric_status",
    "persistence_mode",
    "ecc_mode",
    "ecc_errors",
    "pending_remaps",
    "remapping_failure",
    "pcie_gen",
    "pcie_width",
    "nvlink",
    "nvlink_links",
    "nvidia_peermem",
    "serial_number",
)


def _on(bad: list[str], unknown: list[str], what: str) -> str:
    """The GPUs that failed (`off on A, B`), then those that could not be read."""
    parts = [f"{what} on {', '.join(bad)}"] if bad else []
    if unknown:
        parts.append(f"unknown on {', '.join(unknown)} (not printed or unreadable)")
    return "; ".join(parts)


def _nvlink_problem(nv: Any) -> str | None:
    """Why there is no NVLink link status to judge, or None when there is."""
    if nv is None:
        return "no link status (nvidia-smi nvlink -s was not run: module option nvlink is false)"
    if nv.get("error"):
        return str(nv["error"])
    if not nv.get("gpus"):
        return "no GPU in the output of nvidia-smi nvlink -s"
    return None


def judge_node(facts: dict[str, Any], expect: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Every check with its status and, unless it passed or was not asked for, what was seen.

    Statuses: pass; fail (the facts contradict the expectation); unknown (nvidia-smi did not
    print the value or printed it unreadably, so an expected value cannot be confirmed: this
    fails too); no_data (the default remap checks on output without those fields, e.g. a grep
    excerpt: reported, not failed, unless `remaps` is expected explicitly); not_checked (nothing
    expected). `detail` reads `seen X, expected Y`.
    """
    results: dict[str, dict[str, str]] = {c: {"status": NOT_CHECKED, "detail": ""} for c in CHECKS}
    gpus = facts.get("gpus") or []
    expect = {k: _coerce(v) for k, v in expect.items()}
    names = [str(g.get("bus_id") or i) for i, g in enumerate(gpus)]

    def done(check: str, status: str, seen: Any = "", expected: Any = "") -> None:
        detail = "" if status == PASS else f"seen {seen}, expected {expected}"
        results[check] = {"status": status, "detail": detail}

    def split(value_of: Any, bad: Any) -> tuple[list[str], list[str]]:
        """GPUs whose value is bad, and GPUs whose value is None."""
        values = [value_of(g) for g in gpus]
        return (
            [n for n, v in zip(names, values, strict=True) if v is not None and bad(v)],
            [n for n, v in zip(names, values, strict=True) if v is None],
        )

    if expect.get("gpu_count") is not None:
        seen = facts.get("gpu_count")
        done("gpu_count", PASS if seen == expect["gpu_count"] else FAIL, seen, expect["gpu_count"])
    if expect.get("driver_version"):
        seen = facts.get("driver_version")
        status = UNKNOWN if seen is None else PASS if seen == expect["driver_version"] else FAIL
        done("driver_version", status, seen or "none (not printed)", expect["driver_version"])

    if expect.get("fabric_manager"):
        fm = facts.get("fabricmanager") or {}
        if fm.get("active_state") == "active":
            done("fabric_manager", PASS)
        else:
            seen = fm.get("active_state") or "unknown"
            mm = fm.get("version_mismatch")
            if mm:
                seen += (
                    f" (journal: Fabric Manager {mm['fabric_manager']} does not match"
                    f" driver {mm['driver']})"
                )
            status = UNKNOWN if fm.get("active_state") is None and not mm else FAIL
            done("fabric_manager", status, seen, "active")
        states = [(g.get("fabric") or {}).get("state") for g in gpus]
        not_done = [
            f"{n}={s or 'unknown'}" for n, s in zip(names, states, strict=True) if s != "Completed"
        ]
        if not_done:
            status = FAIL if any(s is not None for s in states if s != "Completed") else UNKNOWN
            done("fabric_state", status, ", ".join(not_done), "Completed on every GPU")
        else:
            done("fabric_state", PASS)
        failed = [
            n
            for n, g in zip(names, gpus, strict=True)
            if (g.get("fabric") or {}).get("state") == "Completed"
            and (g.get("fabric") or {}).get("status") != "Success"
        ]
        if failed:
            done("fabric_status", FAIL, f"not Success on {', '.join(failed)}", "Success")
        else:
            done("fabric_status", PASS)

    for key, check, value_of in (
        ("persistence", "persistence_mode", lambda g: g.get("persistence_mode")),
        ("ecc", "ecc_mode", lambda g: (g.get("ecc_mode") or {}).get("current")),
    ):
        if expect.get(key):
            off, unknown = split(value_of, lambda v: v is False)
            if off or unknown:
                done(check, FAIL if off else UNKNOWN, _on(off, unknown, "off"), "Enabled")
            else:
                done(check, PASS)

    if expect.get("ecc_errors"):
        bad: list[str] = []
        unknown: list[str] = []
        for n, g in zip(names, gpus, strict=True):
            ecc = g.get("ecc_errors")
            if ecc is None or ecc.get("volatile_uncorrectable") is None:
                unknown.append(n)
                continue
            why = []
            if ecc["volatile_uncorrectable"]:
                why.append(f"{ecc['volatile_uncorrectable']} uncorrectable since the last reset")
            if ecc.get("sram_threshold_exceeded"):
                why.append("SRAM error threshold exceeded")
            if ecc.get("unrepairable_memory"):
                why.append("unrepairable memory")
            if why:
                bad.append(f"{n} ({', '.join(why)})")
        if bad or unknown:
            done(
                "ecc_errors",
                FAIL if bad else UNKNOWN,
                _on(bad, unknown, "errors"),
                "no uncorrectable ECC error (drain the node, reset the GPU, run DCGM diagnostics)",
            )
        else:
            done("ecc_errors", PASS)

    if expect.get("remaps", True):
        # No value is a failure only when the caller asked for this check explicitly: the
        # default check also runs on excerpts that carry no Remapped Rows section.
        missing = UNKNOWN if "remaps" in expect else NO_DATA

        def rows(g: dict[str, Any]) -> dict[str, Any] | None:
            return g.get("remapped_rows")

        pending = [
            n
            for n, g in zip(names, gpus, strict=True)
            if bool((rows(g) or {}).get("pending"))
            or bool((g.get("retired_pages") or {}).get("pending"))
        ]
        pending_unknown = [
            n
            for n, g in zip(names, gpus, strict=True)
            if n not in pending and (rows(g) or {}).get("pending") is None
        ]
        if pending:
            done(
                "pending_remaps",
                FAIL,
                _on(pending, pending_unknown, "pending"),
                "none (reset the GPU)",
            )
        elif pending_unknown or not gpus:
            seen = _on([], pending_unknown, "") if gpus else "no GPU"
            done("pending_remaps", missing, seen, "none (reset the GPU)")
        else:
            done("pending_remaps", PASS)
        failed, failure_unknown = split(
            lambda g: (rows(g) or {}).get("failure"), lambda v: v is True
        )
        if failed:
            done(
                "remapping_failure",
                FAIL,
                _on(failed, failure_unknown, "occurred"),
                "none (replace the GPU)",
            )
        elif failure_unknown or not gpus:
            seen = _on([], failure_unknown, "") if gpus else "no GPU"
            done("remapping_failure", missing, seen, "none (replace the GPU)")
        else:
            done("remapping_failure", PASS)

    for key, field in (("pcie_gen", "gen_current"), ("pcie_width", "width_current")):
        want = expect.get(key)
        if want:
            values = [(g.get("pcie") or {}).get(field) for g in gpus]
            low = [
                f"{n}={'unknown' if v is None else v}"
                for n, v in zip(names, values, strict=True)
                if v is None or v < want
            ]
            if low:
                status = FAIL if any(v is not None and v < want for v in values) else UNKNOWN
                done(key, status, ", ".join(low), f"{want} on every GPU")
            else:
                done(key, PASS)

    nv = facts.get("nvlink")
    problem = _nvlink_problem(nv)
    if expect.get("nvlink"):
        if problem:
            done("nvlink", UNKNOWN if nv is None else FAIL, problem, "all links up")
        else:
            down = [
                f"GPU{idx} link {ln}"
                for idx, g in sorted((int(k), v) for k, v in nv["gpus"].items())
                for ln in g.get("links_down", [])
            ]
            done("nvlink", FAIL if down else PASS, f"down: {', '.join(down)}", "all links up")
    want = expect.get("nvlink_links_per_gpu")
    if want:
        expected = f"{want} links up on every GPU"
        if problem:
            # One cause, one line: the nvlink check already names it when it is expected.
            status = NO_DATA if expect.get("nvlink") else (UNKNOWN if nv is None else FAIL)
            done("nvlink_links", status, problem, expected)
        else:
            listed = {int(k): v for k, v in nv["gpus"].items()}
            indexes = sorted(set(range(int(facts.get("gpu_count") or 0))) | set(listed))
            wrong = []
            for idx in indexes:
                links = (listed.get(idx) or {}).get("links")
                if links is None:
                    wrong.append(f"GPU{idx}=not listed")
                else:
                    up = sum(1 for lk in links.values() if lk.get("up"))
                    if up != want:
                        wrong.append(f"GPU{idx}={up}")
            done("nvlink_links", FAIL if wrong else PASS, ", ".join(wrong), expected)

    if expect.get("peermem"):
        loaded = facts.get("peermem_loaded")
        if loaded:
            done("nvidia_peermem", PASS)
        elif loaded is None:
            done("nvidia_peermem", UNKNOWN, "unknown (not read)", "loaded (GPUDirect RDMA)")
        else:
            done("nvidia_peermem", FAIL, "not loaded", "loaded (GPUDirect RDMA)")

    if expect.get("serial"):
        missing_serials = [
            f"{n} ({g.get('serial_number_problem') or 'not read'})"
            for n, g in zip(names, gpus, strict=True)
            if not g.get("serial_number")
        ]
        if missing_serials:
            done(
                "serial_number",
                FAIL,
                f"none on {', '.join(missing_serials)}",
                "a serial number on every GPU (the vendor asks for it in an RMA)",
            )
        else:
            done("serial_number", PASS)
    return results


def failure_lines(checks: dict[str, dict[str, str]]) -> list[str]:
    """One line per check that failed or could not be confirmed: `check: seen X, expected Y`."""
    return [
        f"{check}: {result['detail']}"
        for check, result in checks.items()
        if result["status"] in (FAIL, UNKNOWN)
    ]


def check_node(facts: dict[str, Any], expect: dict[str, Any]) -> list[str]:
    return failure_lines(judge_node(facts, expect))


# --------------------------------------------------------------------------- module


def main() -> None:  # pragma: no cover - runs on the node
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
            "query_format": {
                "type": "str",
                "choices": ["auto", "xml", "text"],
                "default": "auto",
            },
            "topology": {"type": "bool", "default": True},
            "nvlink": {"type": "bool", "default": True},
            "fabricmanager_unit": {"type": "str", "default": "nvidia-fabricmanager"},
            "expect": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    p = module.params
    smi = module.get_bin_path(p["nvidia_smi"]) if "/" not in p["nvidia_smi"] else p["nvidia_smi"]
    if not smi:
        module.fail_json(msg=f"nvidia_gpu_facts: {p['nvidia_smi']} not found in PATH")
    facts: dict[str, Any] | None = None
    used = None
    if p["query_format"] in ("auto", "xml"):
        rc, out, err = module.run_command([smi, "-q", "-x"])
        if rc == 0:
            try:
                facts, used = parse_smi_query_xml(out), "xml"
            except ET.ParseError as exc:
                if p["query_format"] == "xml":
                    module.fail_json(msg=f"nvidia-smi -q -x: unparsable XML: {exc}")
        elif p["query_format"] == "xml":
            module.fail_json(msg=f"nvidia-smi -q -x failed (rc {rc}): {err.strip()}")
    if facts is None:
        rc, out, err = module.run_command([smi, "-q"])
        if rc != 0:
            module.fail_json(msg=f"nvidia-smi -q failed (rc {rc}): {(err or out).strip()}")
        facts, used = parse_smi_query_text(out), "text"
    facts["query_format"] = used
    if p["topology"]:
        rc, out, _ = module.run_command([smi, "topo", "-m"])
        facts["topology"] = parse_topo_matrix(out) if rc == 0 else None
    facts["nvlink"] = None
    if p["nvlink"]:
        facts["nvlink"] = nvlink_facts(*module.run_command([smi, "nvlink", "-s"]))
    facts["fabricmanager"] = None
    unit = p["fabricmanager_unit"]
    if unit:
        _, status, _ = module.run_command(["systemctl", "status", "--no-pager", "-n", "0", unit])
        _, journal, _ = module.run_command(
            ["journalctl", "-u", unit, "-b", "--no-pager", "-n", "200", "-o", "short"]
        )
        _, state, _ = module.run_command(["systemctl", "is-active", unit])
        fm = parse_fabricmanager_status(status + "\n" + journal)
        fm["active_state"] = state.strip() or fm["active_state"]
        facts["fabricmanager"] = fm
    facts["peermem_loaded"] = os.path.isdir("/sys/module/nvidia_peermem")
    checks = judge_node(facts, p["expect"])
    module.exit_json(
        changed=False,
        ansible_facts={"nvidia_gpu": facts},
        checks=checks,
        failures=failure_lines(checks),
    )


if __name__ == "__main__":
    main()
