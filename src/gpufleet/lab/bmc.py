"""The lab's Redfish BMCs: sushy-tools' emulator with a driver backed by podman.

Each lab node is a system (`/redfish/v1/Systems/<node>`). Power actions really
stop and start that node's container; boot source override and boot mode are
kept in a JSON file so they persist across emulator restarts, as a BMC's
settings persist across power cycles, and a `Once` override is used up by the
next boot (gpufleet.lab.boot_override). Run with `python -m gpufleet.lab.bmc
--state-dir DIR --port PORT --lab NAME`; `gpufleet lab up` starts it.

sushy-tools chooses its systems driver from a fixed list (libvirt, nova,
ironic, fake); the emulator's Flask app is a module-level object, so this
module installs its driver by overriding the app's `systems` property before
serving. Everything else (routing, JSON rendering, actions) is sushy-tools.
"""

from __future__ import annotations

import argparse
import json
import threading
import uuid
from pathlib import Path
from typing import Any

from sushy_tools import error
from sushy_tools.emulator.resources.systems.base import AbstractSystemsDriver

from gpufleet.lab import boot_override
from gpufleet.lab import podman as pm

_NAMESPACE = uuid.UUID("6f1f0c1e-3b1e-4c8e-9d8a-0a6b2f6c9e10")
BOOT_DEVICES = ("Pxe", "Hdd", "Cd", "UefiHttp")


class PodmanSystemsDriver(AbstractSystemsDriver):  # type: ignore[misc]  # sushy-tools: untyped
    """Systems are the lab's node containers, named `<lab>-<node>`."""

    def __init__(self, lab: str, nodes: dict[str, dict[str, Any]], state_file: Path) -> None:
        super().__init__()
        self._lab = lab
        self._nodes = nodes  # node name -> {"mac": ..., "memory_gib": ..., "cpus": ...}
        self._state_file = state_file
        self._lock = threading.Lock()

    @property
    def driver(self) -> str:
        return "<podman>"

    # identities -----------------------------------------------------------
    def _name(self, identity: str) -> str:
        if identity in self._nodes:
            return identity
        for name in self._nodes:
            if str(uuid.uuid5(_NAMESPACE, name)) == identity:
                return name
        raise error.NotFound(f"no lab system {identity}")

    def _container(self, identity: str) -> str:
        return f"{self._lab}-{self._name(identity)}"

    @property
    def systems(self) -> list[str]:
        return [str(uuid.uuid5(_NAMESPACE, n)) for n in sorted(self._nodes)]

    def uuid(self, identity: str) -> str:
        return str(uuid.uuid5(_NAMESPACE, self._name(identity)))

    def name(self, identity: str) -> str:
        return self._name(identity)

    # persisted settings ---------------------------------------------------
    def _load(self) -> dict[str, dict[str, Any]]:
        if self._state_file.exists():
            settings: dict[str, dict[str, Any]] = json.loads(self._state_file.read_text())
            return settings
        return {}

    def _setting(self, identity: str, key: str, default: Any) -> Any:
        with self._lock:
            return self._load().get(self._name(identity), {}).get(key, default)

    def _set(self, identity: str, key: str, value: Any) -> None:
        with self._lock:
            state = self._load()
            state.setdefault(self._name(identity), {})[key] = value
            tmp = self._state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
            tmp.replace(self._state_file)

    # power ----------------------------------------------------------------
    def get_power_state(self, identity: str) -> str:
        return "On" if pm.is_running(self._container(identity)) else "Off"

    def set_power_state(self, identity: str, state: str) -> None:
        name = self._container(identity)
        if not pm.container_exists(name):
            raise error.NotFound(f"container {name} does not exist: run gpufleet lab up")
        if state in ("On", "ForceOn"):
            if not pm.is_running(name):
                pm.podman("start", name)
        elif state in ("ForceOff", "GracefulShutdown", "PushPowerButton", "Nmi"):
            if state == "PushPowerButton" and not pm.is_running(name):
                pm.podman("start", name)
            elif pm.is_running(name):
                timeout = "0" if state == "ForceOff" else "10"
                pm.podman("stop", "-t", timeout, name)
        elif state in ("ForceRestart", "GracefulRestart"):
            pm.podman("restart", "-t", "0" if state == "ForceRestart" else "10", name)
        else:
            raise error.BadRequest(f"unknown reset type {state}")

    # boot -----------------------------------------------------------------
    def get_boot_device(self, identity: str) -> str:
        return str(self._setting(identity, "boot_device", "Hdd"))

    def set_boot_device(self, identity: str, boot_source: str) -> None:
        if boot_source not in BOOT_DEVICES:
            known = ", ".join(BOOT_DEVICES)
            raise error.BadRequest(f"boot source {boot_source} not one of {known}")
        self._set(identity, "boot_device", boot_source)

    def get_boot_mode(self, identity: str) -> str:
        return str(self._setting(identity, "boot_mode", "UEFI"))

    def set_boot_mode(self, identity: str, boot_mode: str) -> None:
        if boot_mode not in ("UEFI", "Legacy"):
            raise error.BadRequest(f"boot mode {boot_mode} not UEFI or Legacy")
        self._set(identity, "boot_mode", boot_mode)

    def get_secure_boot(self, identity: str) -> bool:
        return bool(self._setting(identity, "secure_boot", False))

    def set_secure_boot(self, identity: str, secure: bool) -> None:
        self._set(identity, "secure_boot", bool(secure))

    # inventory ------------------------------------------------------------
    def get_total_memory(self, identity: str) -> int:
        return int(self._nodes[self._name(identity)].get("memory_gib", 4))

    def get_total_cpus(self, identity: str) -> int:
        return int(self._nodes[self._name(identity)].get("cpus", 2))

    def get_nics(self, identity: str) -> list[dict[str, str]]:
        mac = self._nodes[self._name(identity)].get("mac")
        return [{"id": mac, "mac": mac}] if mac else []


def serve(
    lab: str, nodes: dict[str, dict[str, Any]], state_dir: Path, host: str, port: int
) -> None:
    from sushy_tools.emulator import main as emulator

    driver = PodmanSystemsDriver(lab, nodes, state_dir / "bmc-settings.json")
    emulator.Application.systems = property(lambda _self: driver)
    # BootSourceOverrideEnabled as a BMC keeps it: Once is used up by the next boot.
    boot_override.install(emulator.app, state_dir / "bmc-boot-override.json")
    emulator.app.configure(
        extra_config={
            "SUSHY_EMULATOR_FEATURE_SET": "full",
            # HTTP basic auth as on a real BMC; the file holds bcrypt hashes only.
            "SUSHY_EMULATOR_AUTH_FILE": str(state_dir / "bmc-htpasswd"),
        }
    )
    emulator.app.run(host=host, port=port, threaded=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The lab's Redfish BMC emulator (podman-backed)")
    parser.add_argument("--lab", required=True, help="lab name (container name prefix)")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    nodes = json.loads((args.state_dir / "bmc-nodes.json").read_text())
    serve(args.lab, nodes, args.state_dir, args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
