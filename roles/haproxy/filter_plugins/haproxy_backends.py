"""Model backends of the haproxy role from the inventory.

`haproxy_model_backends` turns the inventory's `gpufleet_serving.models` (each with the GPU
nodes that serve it) and the hosts' variables into the role's `haproxy_models`: {name, port,
servers: [{name, address}]}, each server at its node's front-end address. A node without one
is an error that names it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def haproxy_model_backends(
    models: Iterable[Mapping[str, Any]], hostvars: Mapping[str, Any]
) -> list[dict[str, Any]]:
    out = []
    for model in models:
        servers = []
        for node in model["nodes"]:
            try:
                address = hostvars[node]["gpufleet_interfaces"]["frontend"]["address"]
            except (KeyError, TypeError) as exc:
                raise AnsibleFilterError(
                    f"haproxy_model_backends: {node} (serving {model['name']}) has no"
                    " gpufleet_interfaces.frontend.address in the inventory"
                ) from exc
            servers.append({"name": str(node), "address": str(address)})
        out.append({"name": model["name"], "port": int(model["port"]), "servers": servers})
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"haproxy_model_backends": haproxy_model_backends}
