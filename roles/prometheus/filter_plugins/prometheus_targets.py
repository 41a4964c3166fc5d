"""Scrape targets of the prometheus role from the inventory's hosts.

`prometheus_scrape_targets` turns the host variables of the generated inventory (one mapping
per node: inventory_hostname, gpufleet_interfaces, gpufleet_role, gpufleet_hardware_checks)
into the role's `prometheus_targets`: {name, address, role, dcgm}, sorted by name. A node
without a front-end address is an error that names it, not a target left out in silence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def prometheus_scrape_targets(hosts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """{name, address, role, dcgm} per host; dcgm: a GPU node with hardware checks (the
    dcgm-exporter of roles/dcgm runs there)."""
    targets = []
    for host in hosts:
        name = str(host["inventory_hostname"])
        try:
            address = str(host["gpufleet_interfaces"]["frontend"]["address"])
        except (KeyError, TypeError) as exc:
            raise AnsibleFilterError(
                f"prometheus_scrape_targets: {name} has no gpufleet_interfaces.frontend.address"
                " (regenerate the inventory: gpufleet inventory SITE --write)"
            ) from exc
        role = str(host.get("gpufleet_role", ""))
        dcgm = role == "gpu" and bool(host.get("gpufleet_hardware_checks", False))
        targets.append({"name": name, "address": address, "role": role, "dcgm": dcgm})
    return sorted(targets, key=lambda t: t["name"])


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"prometheus_scrape_targets": prometheus_scrape_targets}
