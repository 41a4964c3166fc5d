"""sushy-emulator --fake with a Bios resource, for the BIOS provider tests.

The stock fake driver of sushy-tools raises NotSupported for BIOS, so its
systems have no Bios link. This launcher adds, to the same fake driver:
- current BIOS attributes (CONSTRUCTED_BIOS below, values invented for tests),
- pending attributes: a PATCH of /BIOS/Settings stages values, GET of
  /BIOS/Settings shows current + staged, and the next power-on applies them
  (as a real BMC applies them at the next boot),
- a BIOS version (CONSTRUCTED_BIOS_VERSION).
Everything else (routing, JSON, actions) is sushy-tools itself. Imported by
redfish_emulator.py (the tests' launcher) when GPUFLEET_EMU_BIOS=1.
"""

from __future__ import annotations

import json
from typing import Any

import flask
from sushy_tools.emulator import api_utils, main
from sushy_tools.emulator.resources.systems import fakedriver

# constructed: attribute names in the style of common server BIOSes, values for tests only
CONSTRUCTED_BIOS: dict[str, Any] = {
    "BootMode": "Uefi",
    "ProcTurboMode": "Enabled",
    "SriovGlobalEnable": "Disabled",
    "NumaNodesPerSocket": 1,
}
CONSTRUCTED_BIOS_VERSION = "1.2.3-test"

_Fake = fakedriver.FakeDriver
_original_set_power = _Fake.set_power_state


def _get_bios(self: Any, identity: str) -> dict[str, Any]:
    return dict(self._get(identity).get("bios") or CONSTRUCTED_BIOS)


def _set_bios(self: Any, identity: str, attributes: dict[str, Any]) -> None:
    system = self._get(identity)
    pending = dict(system.get("bios_pending") or {})
    pending.update(attributes)
    self._update(system, bios_pending=pending)


def _reset_bios(self: Any, identity: str) -> None:
    self._update(identity, bios=dict(CONSTRUCTED_BIOS), bios_pending={})


def _get_versions(self: Any, identity: str) -> dict[str, str]:
    return {"BiosVersion": CONSTRUCTED_BIOS_VERSION}


def _set_power_state(self: Any, identity: str, state: str) -> None:
    _original_set_power(self, identity, state)
    if "On" in state or "Restart" in state:
        system = self._get(identity)
        if system.get("bios_pending"):
            current = dict(system.get("bios") or CONSTRUCTED_BIOS)
            current.update(system["bios_pending"])
            self._update(system, bios=current, bios_pending={})


_Fake.get_bios = _get_bios
_Fake.set_bios = _set_bios
_Fake.reset_bios = _reset_bios
_Fake.get_versions = _get_versions
_Fake.set_power_state = _set_power_state


@api_utils.returns_json
def _bios_settings(identity: str) -> Any:
    app = main.app
    if flask.request.method == "PATCH":
        app.systems.set_bios(identity, flask.request.json.get("Attributes"))
        return "", 204
    system = app.systems._get(app.systems.uuid(identity))
    staged = {**_get_bios(app.systems, identity), **(system.get("bios_pending") or {})}
    return app.render_template(
        "bios_settings.json",
        identity=identity,
        bios_pending_attributes=json.dumps(staged, sort_keys=True, indent=6),
    )


main.app.view_functions["bios_settings"] = _bios_settings
