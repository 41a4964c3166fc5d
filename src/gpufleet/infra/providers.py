"""Pulumi dynamic providers that talk Redfish to one server's BMC (through gpufleet.infra.redfish).

One resource per concern, so a preview shows exactly what will change on a server:

| resource | create / update | delete |
|---|---|---|
| SystemInventory | reads make, model, serial, BIOS version, CPU, memory, power | nothing |
| BootOverride    | sets BootSourceOverride target/enabled/mode | restores the override it found |
| PowerState      | resets On/Off, polls until reached or timeout | nothing (see below) |
| BiosSettings    | stages the named attributes (pending until reboot) | nothing (see below) |
| VirtualMedia    | inserts the image into the virtual CD | ejects it if still inserted |

Delete choices: the boot override and the virtual media are restored/ejected,
which is harmless. Power is left as it is: `pulumi destroy` means "stop
managing", and powering off a node would kill its workloads. BIOS settings are
left too: reverting firmware settings would silently change the node at its
next reboot; change them explicitly instead.

Every resource carries the connection properties (CONNECTION). The password
is a Pulumi secret input and a secret output (`additional_secret_outputs`), so
it is encrypted in the state and available to `delete`; it is never put into
any other output or message. `diff` compares only the properties a resource
manages (never the whole BIOS or the BMC's live state); a new `url` or `node`
replaces the resource, anything else is an in-place update. `read` (`pulumi
refresh`, `pulumi up --refresh`) records the live power state, so drift is
corrected by the next update.

The provider classes hold no state and import sushy only inside their methods,
so the SDK's dill serialization stores a reference to this module (tested).
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from gpufleet.infra import redfish as rf

CONNECTION = (
    "node",
    "url",
    "username",
    "password",
    "verify_tls",
    "ca_bundle",
    "timeout",
    "retries",
    "backoff",
)
REPLACE_ON = ("node", "url")
SECRET_OUTPUTS = ["password"]

_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # pulumi.runtime.rpc.UNKNOWN


def _known(value: Any) -> bool:
    return bool(value != _UNKNOWN)


def _check_connection(props: dict[str, Any]) -> list[CheckFailure]:
    out: list[CheckFailure] = []
    url = props.get("url")
    if _known(url):
        parts = urlsplit(str(url or ""))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            out.append(CheckFailure("url", f"{url!r} is not an http(s) URL"))
        elif not parts.path.rstrip("/").startswith("/redfish/v1/Systems/"):
            out.append(CheckFailure("url", f"{url!r} does not name /redfish/v1/Systems/<id>"))
    if not props.get("node"):
        out.append(CheckFailure("node", "the node name is required"))
    for key, low in (("timeout", 1), ("retries", 0), ("backoff", 0)):
        value = props.get(key)
        bad = not isinstance(value, int | float) or isinstance(value, bool) or value < low
        if _known(value) and value is not None and bad:
            out.append(CheckFailure(key, f"{key} must be a number >= {low}, got {value!r}"))
    ca = props.get("ca_bundle")
    if _known(ca) and ca is not None and not isinstance(ca, str):
        out.append(CheckFailure("ca_bundle", "ca_bundle must be a file path"))
    return out


def _choice(props: dict[str, Any], key: str, choices: tuple[str, ...]) -> list[CheckFailure]:
    value = props.get(key)
    if _known(value) and value not in choices:
        return [CheckFailure(key, f"{key} {value!r} is not one of {', '.join(choices)}")]
    return []


class _RedfishProvider(ResourceProvider):
    """Shared check/diff; subclasses list the properties they manage in DESIRED."""

    DESIRED: ClassVar[tuple[str, ...]] = ()
    KIND: ClassVar[str] = ""
    # The provider captures no secret (the password is a property): no need to
    # encrypt its serialized form in every resource of the state.
    serialize_as_secret_always = False

    def _check(self, props: dict[str, Any]) -> list[CheckFailure]:
        return []

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, _check_connection(news) + self._check(news))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [
            k
            for k in (*CONNECTION, *self.DESIRED)
            if not _known(news.get(k)) or olds.get(k) != news.get(k)
        ]
        return DiffResult(
            changes=bool(changed),
            replaces=[k for k in changed if k in REPLACE_ON],
            delete_before_replace=True,
        )

    def _id(self, props: dict[str, Any]) -> str:
        return f"{props['url']}#{self.KIND}"

    @staticmethod
    def _inputs(props: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in props.items() if k != "__provider"}


class SystemInventoryProvider(_RedfishProvider):
    KIND = "inventory"

    def create(self, props: dict[str, Any]) -> CreateResult:
        inv = rf.read_inventory(rf.endpoint_from_props(props))
        return CreateResult(self._id(props), {**self._inputs(props), **inv})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        inv = rf.read_inventory(rf.endpoint_from_props(news))
        return UpdateResult({**self._inputs(news), **inv})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        inv = rf.read_inventory(rf.endpoint_from_props(props))
        return ReadResult(id_, {**self._inputs(props), **inv})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # reading changed nothing


class BootOverrideProvider(_RedfishProvider):
    KIND = "boot"
    DESIRED = ("target", "enabled", "mode")

    def _check(self, props: dict[str, Any]) -> list[CheckFailure]:
        return (
            _choice(props, "target", rf.BOOT_TARGETS)
            + _choice(props, "enabled", rf.BOOT_ENABLED)
            + _choice(props, "mode", rf.BOOT_MODES)
        )

    def _apply(self, props: dict[str, Any]) -> dict[str, str]:
        ep = rf.endpoint_from_props(props)
        return rf.set_boot(ep, props["target"], props["enabled"], props.get("mode"))

    def create(self, props: dict[str, Any]) -> CreateResult:
        previous = self._apply(props)
        return CreateResult(self._id(props), {**self._inputs(props), "previous": previous})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._apply(news)
        return UpdateResult({**self._inputs(news), "previous": olds.get("previous") or {}})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        previous = props.get("previous")
        if previous:
            rf.restore_boot(rf.endpoint_from_props(props), previous)


class PowerStateProvider(_RedfishProvider):
    KIND = "power"
    DESIRED = ("state", "off_action", "power_timeout", "poll_interval")

    def _check(self, props: dict[str, Any]) -> list[CheckFailure]:
        out = _choice(props, "state", rf.POWER_STATES) + _choice(
            props, "off_action", rf.OFF_ACTIONS
        )
        for key in ("power_timeout", "poll_interval"):
            value = props.get(key)
            if _known(value) and (
                not isinstance(value, int | float) or isinstance(value, bool) or value <= 0
            ):
                out.append(CheckFailure(key, f"{key} must be a positive number, got {value!r}"))
        return out

    def _apply(self, props: dict[str, Any]) -> tuple[str, str]:
        return rf.set_power(
            rf.endpoint_from_props(props),
            props["state"],
            timeout=float(props["power_timeout"]),
            poll_interval=float(props["poll_interval"]),
            off_action=props["off_action"],
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        before, reached = self._apply(props)
        outs = {**self._inputs(props), "previous_state": before, "reached": reached}
        return CreateResult(self._id(props), outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        _before, reached = self._apply(news)
        previous = olds.get("previous_state") or ""
        return UpdateResult({**self._inputs(news), "previous_state": previous, "reached": reached})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        live = rf.read_power(rf.endpoint_from_props(props))
        outs = {**self._inputs(props), "reached": live}
        if live in rf.POWER_STATES:
            outs["state"] = live  # drift: the next update drives it back
        return ReadResult(id_, outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # leave the server powered as it is (module docstring)


class BiosSettingsProvider(_RedfishProvider):
    KIND = "bios"
    DESIRED = ("attributes",)

    def _check(self, props: dict[str, Any]) -> list[CheckFailure]:
        attrs = props.get("attributes")
        if not _known(attrs):
            return []
        if not isinstance(attrs, dict) or not attrs:
            return [CheckFailure("attributes", "give at least one BIOS attribute: {Name: value}")]
        bad = [k for k, v in attrs.items() if not isinstance(v, str | int | float | bool)]
        if bad:
            return [CheckFailure("attributes", f"not a scalar value: {', '.join(sorted(bad))}")]
        return []

    def _apply(self, props: dict[str, Any]) -> dict[str, Any]:
        ep = rf.endpoint_from_props(props)
        wanted = dict(props["attributes"])
        current, pending = rf.read_bios(ep, sorted(wanted))
        todo = {k: v for k, v in wanted.items() if current[k] != v and pending.get(k) != v}
        if todo:
            rf.set_bios(ep, todo)
            _, pending = rf.read_bios(ep, sorted(wanted))
        return {"current": current, "pending": pending}

    def create(self, props: dict[str, Any]) -> CreateResult:
        state = self._apply(props)
        outs = {**self._inputs(props), **state, "previous": state["current"]}
        return CreateResult(self._id(props), outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        state = self._apply(news)
        return UpdateResult({**self._inputs(news), **state, "previous": olds.get("previous")})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # leave firmware settings as they are (module docstring)


class VirtualMediaProvider(_RedfishProvider):
    KIND = "media"
    DESIRED = ("image",)

    def _check(self, props: dict[str, Any]) -> list[CheckFailure]:
        image = props.get("image")
        if _known(image) and urlsplit(str(image or "")).scheme not in ("http", "https", "nfs"):
            return [CheckFailure("image", f"{image!r} is not an http(s) or nfs URL")]
        return []

    def create(self, props: dict[str, Any]) -> CreateResult:
        media = rf.insert_media(rf.endpoint_from_props(props), props["image"])
        return CreateResult(self._id(props), {**self._inputs(props), **media})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        media = rf.insert_media(rf.endpoint_from_props(news), news["image"])
        return UpdateResult({**self._inputs(news), **media})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        rf.eject_media(rf.endpoint_from_props(props), only_image=props.get("image"))


# --- the resources ---------------------------------------------------------------------------


def _with_secret_password(opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions.merge(
        opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)
    )


class SystemInventory(Resource, module="redfish", name="SystemInventory"):
    manufacturer: pulumi.Output[str]
    model: pulumi.Output[str]
    serial_number: pulumi.Output[str]
    bios_version: pulumi.Output[str]
    cpu_count: pulumi.Output[int | None]
    cpu_model: pulumi.Output[str]
    memory_gib: pulumi.Output[int | None]
    power_state: pulumi.Output[str]

    OUTPUTS: ClassVar[tuple[str, ...]] = (
        "manufacturer",
        "model",
        "serial_number",
        "bios_version",
        "cpu_count",
        "cpu_model",
        "memory_gib",
        "power_state",
        "system_id",
        "system_uuid",
    )

    def __init__(
        self, name: str, connection: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props = {**connection, **dict.fromkeys(self.OUTPUTS)}
        super().__init__(SystemInventoryProvider(), name, props, _with_secret_password(opts))


class BootOverride(Resource, module="redfish", name="BootOverride"):
    target: pulumi.Output[str]
    enabled: pulumi.Output[str]
    mode: pulumi.Output[str]
    previous: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        name: str,
        connection: dict[str, Any],
        *,
        target: str,
        enabled: str,
        mode: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {**connection, "target": target, "enabled": enabled, "mode": mode, "previous": None}
        super().__init__(BootOverrideProvider(), name, props, _with_secret_password(opts))


class PowerState(Resource, module="redfish", name="PowerState"):
    state: pulumi.Output[str]
    reached: pulumi.Output[str]
    previous_state: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        connection: dict[str, Any],
        *,
        state: str,
        off_action: str,
        power_timeout: float,
        poll_interval: float,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            **connection,
            "state": state,
            "off_action": off_action,
            "power_timeout": power_timeout,
            "poll_interval": poll_interval,
            "reached": None,
            "previous_state": None,
        }
        super().__init__(PowerStateProvider(), name, props, _with_secret_password(opts))


class BiosSettings(Resource, module="redfish", name="BiosSettings"):
    attributes: pulumi.Output[dict[str, Any]]
    current: pulumi.Output[dict[str, Any]]
    pending: pulumi.Output[dict[str, Any]]

    def __init__(
        self,
        name: str,
        connection: dict[str, Any],
        *,
        attributes: dict[str, Any],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            **connection,
            "attributes": dict(attributes),
            "current": None,
            "pending": None,
            "previous": None,
        }
        super().__init__(BiosSettingsProvider(), name, props, _with_secret_password(opts))


class VirtualMedia(Resource, module="redfish", name="VirtualMedia"):
    image: pulumi.Output[str]
    device: pulumi.Output[str]
    inserted: pulumi.Output[bool]

    def __init__(
        self,
        name: str,
        connection: dict[str, Any],
        *,
        image: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {**connection, "image": image, "device": None, "inserted": None}
        super().__init__(VirtualMediaProvider(), name, props, _with_secret_password(opts))
