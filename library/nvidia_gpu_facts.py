#!/usr/bin/python
"""Ansible module: NVIDIA GPU facts from nvidia-smi, and the node checks built on them.

Self-contained (Ansible ships this file alone to the node). Everything below the
documentation strings up to `main()` is pure parsing or judging, importable by
pytest and tested on outputs recorded on real H100 systems (tests/data/hardware).

Inputs it understands:
- `nvidia-smi -q -x` (XML; preferred) and `nvidia-smi -q` (text), per GPU: model,
  VBIOS, persistence, ECC mode, remapped rows, retired pages, PCIe generation and
  width (current and max), Fabric state/status, clocks event (throttle) reasons;
- `nvidia-smi topo -m`: the connection matrix, CPU/NUMA affinity and, per GPU,
  the closest NICs;
- `nvidia-smi nvlink -s`: per GPU and link, speed or inactive;
- `systemctl status nvidia-fabricmanager` / journal lines: running or not, and the
  "driver interface version ... don't match" failure.

Both query paths are tested on outputs recorded on real H100s; the XML and text forms of one
recording (a lent H100 VM, driver 580.159.04) must give the same facts.
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
      persistence (bool), ecc (bool), pcie_gen, pcie_width, peermem (bool), nvlink (bool).
      A key left out is not checked.
    type: dict
    default: {}
"""

RETURN = r"""
ansible_facts:
  description: C(nvidia_gpu) with driver_version, cuda_version, gpu_count, gpus, topology,
    nvlink, fabricmanager, peermem_loaded, query_format.
  returned: always
  type: dict
failures:
  description: One line per failed check (empty when all pass or nothing was expected).
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
    return {
        "bus_id": bus_id or _str(_get(g, "PCI", "Bus Id")),
        "product_name": _str(g.get("Product Name")),
        "architecture": _str(g.get("Product Architecture")),
        "uuid": _str(g.get("GPU UUID")),
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
        gpus.append(
            {
                "bus_id": g.get("id"),
                "product_name": _str(_xt(g, "product_name")),
                "architecture": _str(_xt(g, "product_architecture")),
                "uuid": _str(_xt(g, "uuid")),
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
    return {"gpus": gpus}


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


def check_node(facts: dict[str, Any], expect: dict[str, Any]) -> list[str]:
    """Judge the facts against expectations: one line per failure, `check: seen X, expected Y`."""
    out: list[str] = []
    gpus = facts.get("gpus") or []
    expect = {k: _coerce(v) for k, v in expect.items()}

    def fail(check: str, seen: Any, expected: Any) -> None:
        out.append(f"{check}: seen {seen}, expected {expected}")

    def bad_gpus(pred: Any) -> list[str]:
        return [f"{g.get('bus_id') or i}" for i, g in enumerate(gpus) if pred(g)]

    if expect.get("gpu_count") is not None and facts.get("gpu_count") != expect["gpu_count"]:
        fail("gpu_count", facts.get("gpu_count"), expect["gpu_count"])
    if expect.get("driver_version") and facts.get("driver_version") != expect["driver_version"]:
        fail("driver_version", facts.get("driver_version"), expect["driver_version"])
    if expect.get("fabric_manager"):
        fm = facts.get("fabricmanager") or {}
        if fm.get("active_state") != "active":
            seen = fm.get("active_state") or "unknown"
            mm = fm.get("version_mismatch")
            if mm:
                seen += (
                    f" (journal: Fabric Manager {mm['fabric_manager']} does not match"
                    f" driver {mm['driver']})"
                )
            fail("fabric_manager", seen, "active")
        not_done = [
            f"{g.get('bus_id') or i}={(g.get('fabric') or {}).get('state')}"
            for i, g in enumerate(gpus)
            if (g.get("fabric") or {}).get("state") != "Completed"
        ]
        if not_done:
            fail("fabric_state", ", ".join(not_done), "Completed on every GPU")
        failed = bad_gpus(
            lambda g: (
                (g.get("fabric") or {}).get("state") == "Completed"
                and (g.get("fabric") or {}).get("status") != "Success"
            )
        )
        if failed:
            fail("fabric_status", f"not Success on {', '.join(failed)}", "Success")
    if expect.get("persistence"):
        off = bad_gpus(lambda g: g.get("persistence_mode") is not True)
        if off:
            fail("persistence_mode", f"off on {', '.join(off)}", "Enabled")
    if expect.get("ecc"):
        off = bad_gpus(lambda g: (g.get("ecc_mode") or {}).get("current") is not True)
        if off:
            fail("ecc_mode", f"off on {', '.join(off)}", "Enabled")
    if expect.get("remaps", True) and gpus:
        pending = bad_gpus(
            lambda g: (
                bool((g.get("remapped_rows") or {}).get("pending"))
                or bool((g.get("retired_pages") or {}).get("pending"))
            )
        )
        if pending:
            fail("pending_remaps", f"pending on {', '.join(pending)}", "none (reset the GPU)")
        failed = bad_gpus(lambda g: bool((g.get("remapped_rows") or {}).get("failure")))
        if failed:
            fail("remapping_failure", f"occurred on {', '.join(failed)}", "none (replace the GPU)")
    for key, field in (("pcie_gen", "gen_current"), ("pcie_width", "width_current")):
        want = expect.get(key)
        if want:
            low = [
                f"{g.get('bus_id') or i}={(g.get('pcie') or {}).get(field)}"
                for i, g in enumerate(gpus)
                if ((g.get("pcie") or {}).get(field) or 0) < want
            ]
            if low:
                fail(key, ", ".join(low), f"{want} on every GPU")
    if expect.get("nvlink"):
        down = [
            f"GPU{idx} link {ln}"
            for idx, g in sorted((facts.get("nvlink") or {}).get("gpus", {}).items())
            for ln in g.get("links_down", [])
        ]
        if down:
            fail("nvlink", f"down: {', '.join(down)}", "all links up")
    if expect.get("peermem") and not facts.get("peermem_loaded"):
        fail("nvidia_peermem", "not loaded", "loaded (GPUDirect RDMA)")
    return out


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
    if p["nvlink"]:
        rc, out, _ = module.run_command([smi, "nvlink", "-s"])
        facts["nvlink"] = parse_nvlink_status(out) if rc == 0 else None
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
    module.exit_json(
        changed=False,
        ansible_facts={"nvidia_gpu": facts},
        failures=check_node(facts, p["expect"]),
    )


if __name__ == "__main__":
    main()
