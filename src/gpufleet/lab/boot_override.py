"""A real BMC's boot source override for sushy-tools' emulator: `Once` is used up by a boot.

sushy-tools stores only the override's target and mode and reports every
override as `Continuous` (its libvirt heritage), so a one-time PXE boot could
never be seen being consumed, and a PATCH that only clears the override
(`BootSourceOverrideEnabled: Disabled`) is refused for lacking a target. This
module adds, to any systems driver (the lab's podman driver, the fake driver of
the tests), what Redfish BMCs do:

- `BootSourceOverrideEnabled` is kept per system (`Disabled` until set), in a
  JSON file so that it survives emulator restarts as a BMC's setting survives
  power cycles, and reported by GET of the system;
- a PATCH that sets only `BootSourceOverrideEnabled` is answered here;
- a boot (a reset that powers the system on from off, or restarts it) turns a
  `Once` override into `Disabled`: the one boot it was for has happened.

`install(app, state_file)` wires this into the emulator's Flask app with
request hooks; routing, rendering and the driver stay sushy-tools'. Basic
authentication (the lab's htpasswd) runs before these hooks.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import flask

ENABLED = ("Disabled", "Once", "Continuous")
# Reset types that boot the system: always for restarts, for the others only when it was off.
_RESTARTS = frozenset({"ForceRestart", "GracefulRestart", "PowerCycle"})
_POWER_ON = frozenset({"On", "ForceOn", "PushPowerButton"})
_SYSTEM = re.compile(r"^/redfish/v1/Systems/(?P<id>[^/]+)/?$")
_RESET = re.compile(r"^/redfish/v1/Systems/(?P<id>[^/]+)/Actions/ComputerSystem\.Reset/?$")


class BootOverrides:
    """The `BootSourceOverrideEnabled` of each system, and the hooks that keep it."""

    def __init__(self, app: Any, state_file: Path) -> None:
        self._app = app
        self._file = state_file
        self._lock = threading.Lock()

    # state ----------------------------------------------------------------
    def _key(self, identity: str) -> str:
        return str(self._app.systems.uuid(identity))

    def _load(self) -> dict[str, str]:
        if not self._file.exists():
            return {}
        data: dict[str, str] = json.loads(self._file.read_text())
        return data

    def get(self, identity: str) -> str:
        with self._lock:
            return self._load().get(self._key(identity), "Disabled")

    def set(self, identity: str, enabled: str) -> None:
        with self._lock:
            data = self._load()
            data[self._key(identity)] = enabled
            tmp = self._file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
            tmp.replace(self._file)

    # hooks ----------------------------------------------------------------
    def before(self) -> Any:
        req = flask.request
        system = _SYSTEM.match(req.path)
        if system and req.method == "PATCH":
            body = req.get_json(silent=True) or {}
            boot = body.get("Boot") or {}
            enabled = boot.get("BootSourceOverrideEnabled")
            if enabled is None:
                return None
            if enabled not in ENABLED:
                known = ", ".join(ENABLED)
                return f"BootSourceOverrideEnabled {enabled} is not one of {known}", 400
            if set(body) == {"Boot"} and set(boot) == {"BootSourceOverrideEnabled"}:
                self.set(system["id"], enabled)  # sushy-tools refuses a PATCH without a target
                return "", 204
            flask.g.boot_enabled = enabled  # kept once sushy-tools has accepted the rest
            return None
        reset = _RESET.match(req.path)
        if reset and req.method == "POST":
            flask.g.was_on = self._app.systems.get_power_state(reset["id"]) == "On"
        return None

    def after(self, response: flask.Response) -> flask.Response:
        req = flask.request
        system = _SYSTEM.match(req.path)
        if system and req.method == "PATCH" and response.status_code < 300:
            enabled = flask.g.get("boot_enabled")
            if enabled is not None:
                self.set(system["id"], enabled)
        elif system and req.method == "GET" and response.status_code == 200:
            body = response.get_json(silent=True)
            if isinstance(body, dict) and isinstance(body.get("Boot"), dict):
                body["Boot"]["BootSourceOverrideEnabled"] = self.get(system["id"])
                response.set_data(json.dumps(body, indent=4))
        reset = _RESET.match(req.path)
        if reset and req.method == "POST" and response.status_code < 300:
            kind = (req.get_json(silent=True) or {}).get("ResetType", "")
            booted = kind in _RESTARTS or (kind in _POWER_ON and not flask.g.get("was_on", True))
            if booted and self.get(reset["id"]) == "Once":
                self.set(reset["id"], "Disabled")
        return response


def install(app: Any, state_file: Path) -> BootOverrides:
    """Keep `BootSourceOverrideEnabled` as a BMC does, in `state_file`, for this Flask app."""
    overrides = BootOverrides(app, state_file)
    app.before_request(overrides.before)
    app.after_request(overrides.after)
    return overrides
