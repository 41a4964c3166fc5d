"""Fleet-wide fabric checks: what no single node can judge alone.

check_firmware(fleet): the firmware of the rail HCAs must be the same on every node. NICs of
one model run one firmware in a healthy fleet (NVIDIA's DGX/HGX firmware bundles ship one
version per adapter model); a node left behind after an update is the usual cause of a
difference. Different models (ConnectX-7 MT4129 rails beside ConnectX-6 Dx MT4125 front-end
cards) legitimately differ, so versions are compared per CA type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any


def check_firmware(
    fleet: Mapping[str, Mapping[str, Mapping[str, Any]]],
    rails: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> list[str]:
    """One line per node HCA whose firmware differs from the fleet's most common version.

    fleet: node name -> merge_ports() output (the module's `ports` fact). rails: node name ->
    its selected rails ({"hca", "port"}); when given only those ports are compared, else
    every port. Per CA type (MT4129...), the version most nodes run is the reference; a tie
    picks the highest version string, and the line says how many nodes run each. A port
    whose firmware was not read is reported too (it cannot be confirmed equal).
    """
    seen: dict[str, list[tuple[str, str, str | None]]] = {}
    for node in sorted(fleet):
        ports = fleet[node]
        keys = (
            [f"{r['hca']}:{r.get('port', 1)}" for r in rails[node]]
            if rails is not None and node in rails
            else list(ports)
        )
        for key in keys:
            p = ports.get(key)
            if p is None:
                continue  # a missing port is check_ports' finding
            ca_type = str(p.get("ca_type") or "unknown CA type")
            seen.setdefault(ca_type, []).append((node, str(p["hca"]), p.get("firmware")))
    lines: list[str] = []
    for ca_type, entries in sorted(seen.items()):
        counts = Counter(fw for _, _, fw in entries if fw)
        if not counts:
            continue
        ref, ref_n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        nodes_with = Counter(fw for fw, _ in {(fw, n) for n, _, fw in entries if fw})
        for node, hca, fw in entries:
            if fw is None:
                lines.append(
                    f"{node} {hca} ({ca_type}): firmware not read, fleet runs {ref}"
                    f" ({ref_n} HCAs on {nodes_with[ref]} nodes)"
                )
            elif fw != ref:
                lines.append(
                    f"{node} {hca} ({ca_type}): firmware {fw}, fleet runs {ref}"
                    f" ({ref_n} HCAs on {nodes_with[ref]} nodes)"
                )
    return lines
