"""Pulumi dynamic providers that talk Redfish to one server's BMC (through gpufleet.infra.redfish).

One resource per concern, so a preview shows exactly what will change on a server:

| resource | create / update | delete |
|---|---|---|
| BootOverride    | sets BootSourceOverride target/enabled/mode | restores the override it found |
| PowerState      | resets On/Off, polls until reached; reads the system | nothing (see below) |
| BiosSettings    | stages the named attributes (pending until reboot) | nothing (see below) |
| VirtualMedia    | inserts the image into the virtual CD | ejects it if still inserted |

PowerState also records what the BMC reports about the system (make, model, serial,
BIOS version, CPU, memory, UUID) as one output object, `system`: the power resource
reads the system anyway, and a resource of its own per server for that read cost the
SDK, the engine and the provider work on every preview. SystemInventoryProvider stays
for the `<node>-inventory` resources of states written before.

Delete choices: the boot override and the virtual media are restored/ejected,
which is harmless. Power is left as it is: `pulumi destroy` means "stop
managing", and powering off a node would kill its workloads. BIOS settings are
left too: reverting firmware settings would silently change the node at its
next reboot; change them explicitly instead.

Every resource carries the connection as one object property, `bmc` (its keys
are CONNECTION; one property instead of nine keeps the per-resource work of the
SDK and the engine down at fleet scale). The BMC password is not in it:
`password_ref` says where it is (`{env: VAR}`, an environment variable of the
`pulumi` process, or `{secret: KEY}`, a secret of the stack's config, which
dynamic providers receive through `configure`), and the provider reads it when
it talks to the BMC. So no password is ever in the
state, and rotating one (`pulumi config set --secret`, or a new value of the
variable) changes no resource at all. A state written before password_ref
existed still carries an encrypted `password`; it is used until the next update
replaces it.

`diff` compares only the properties a resource manages (never the whole BIOS
or the BMC's live state) and the connection; a new `url` or `node` replaces the
resource. A change of the connection alone (username, TLS, timeouts, retries)
is an update that talks to no BMC: it only records the new values. `read`
(`pulumi refresh`, `pulumi up --refresh`) records what the BMC holds, so drift
shows and the next update repairs it.

Boot override and `Once`: a one-time override is armed when the resource is
created (a new server's first install), when its target, mode or `arm` token
changes (`nodes.<name>.reinstall` in the stack config), and never as a side
effect of anything else. Every write is preceded by a read and skipped when the
BMC already holds the override. Once the boot it was for has happened the BMC
reports `Disabled`, which `read` takes as "used", not as drift; an override
set by hand (anything else) is drift, and the next update repairs it: the
stack's `Continuous` override is written again, a used `Once` is cleared
rather than armed again.

The provider classes hold no state and import sushy only inside their methods,
so the SDK's dill serialization stores a reference to this module (tested).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
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
    "password_ref",
    "verify_tls",
    "ca_bundle",
    "timeout",
    "retries",
    "backoff",
)
REPLACE_ON = ("node", "url")
# The keys of SystemInventory's `system` object (gpufleet.infra.redfish.read_inventory).
INVENTORY = (
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

_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # pulumi.runtime.rpc.UNKNOWN


def _known(value: Any) -> bool:
    return bool(value != _UNKNOWN)


def connection(props: dict[str, Any]) -> dict[str, Any]:
    """The `bmc` object of a resource's properties (CONNECTION keys). States written before
    the connection became one object hold the same keys at the top level."""
    conn = props.get("bmc")
    if isinstance(conn, dict):
        return conn
    return {k: props[k] for k in (*CONNECTION, "password") if k in props}


def _check_connection(props: dict[str, Any]) -> list[CheckFailure]:
    conn = props.get("bmc")
    if not _known(conn):
        return []
    if not isinstance(conn, dict):
        return [CheckFailure("bmc", "bmc must be an object with the connection (url, node, ...)")]
    out: list[CheckFailure] = []
    url = conn.get("url")
    if _known(url):
        parts = urlsplit(str(url or ""))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            out.append(CheckFailure("bmc.url", f"{url!r} is not an http(s) URL"))
        elif not parts.path.rstrip("/").startswith("/redfish/v1/Systems/"):
            out.append(CheckFailure("bmc.url", f"{url!r} does not name /redfish/v1/Systems/<id>"))
    if not conn.get("node"):
        out.append(CheckFailure("bmc.node", "the node name is required"))
    for key, low in (("timeout", 1), ("retries", 0), ("backoff", 0)):
        value = conn.get(key)
        bad = not isinstance(value, int | float) or isinstance(value, bool) or value < low
        if _known(value) and value is not None and bad:
            why = f"{key} must be a number >= {low}, got {value!r}"
            out.append(CheckFailure(f"bmc.{key}", why))
    ca = conn.get("ca_bundle")
    if _known(ca) and ca is not None and not isinstance(ca, str):
        out.append(CheckFailure("bmc.ca_bundle", "ca_bundle must be a file path"))
    ref = conn.get("password_ref")
    if _known(ref) and ref is not None and not _is_ref(ref):
        out.append(
            CheckFailure("bmc.password_ref", "give {env: VARIABLE} or {secret: KEY}, one of them")
        )
    return out


def _is_ref(ref: Any) -> bool:
    return (
        isinstance(ref, dict)
        and len(ref) == 1
        and next(iter(ref)) in ("env", "secret")
        and isinstance(next(iter(ref.values())), str)
        and bool(next(iter(ref.values())))
    )


def _choice(props: dict[str, Any], key: str, choices: tuple[str, ...]) -> list[CheckFailure]:
    value = props.get(key)
    if _known(value) and value not in choices:
        return [CheckFailure(key, f"{key} {value!r} is not one of {', '.join(choices)}")]
    return []


class _RedfishProvider(ResourceProvider):
    """Shared check/diff and the BMC password; subclasses list what they manage in DESIRED."""

    DESIRED: ClassVar[tuple[str, ...]] = ()
    KIND: ClassVar[str] = ""
    # The provider captures no secret (the password is looked up when needed): no need
    # to encrypt its serialized form in every resource of the state.
    serialize_as_secret_always = False

    def configure(self, req: ConfigureRequest) -> None:
        """The stack's config, for `{secret: KEY}` passwords (called in the provider process)."""
        self._config = req.config

    def _password(self, props: dict[str, Any]) -> str | None:
        conn = connection(props)
        ref = conn.get("password_ref")
        node = conn.get("node")
        if not ref:
            return conn.get("password") or None  # a state written before password_ref
        if "env" in ref:
            value = os.environ.get(ref["env"])
            if not value:
                raise rf.BmcError(
                    str(node),
                    str(conn.get("url")),
                    f"the BMC password variable {ref['env']} is not set for the pulumi process",
                    f"export {ref['env']}=... before running pulumi",
                )
            return value
        config = getattr(self, "_config", None)
        value = config.get(ref["secret"]) if config is not None else None
        if not value:
            name = str(ref["secret"]).split(":", 1)[-1]
            raise rf.BmcError(
                str(node),
                str(conn.get("url")),
                f"the stack has no secret {name} for the BMC password",
                f"pulumi config set --secret {name}",
            )
        return str(value)

    def _endpoint(self, props: dict[str, Any]) -> rf.BmcEndpoint:
        return rf.endpoint_from_props(connection(props), password=self._password(props))

    def _check(self, props: dict[str, Any]) -> list[CheckFailure]:
        return []

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, _check_connection(news) + self._check(news))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in self.DESIRED if not _known(news.get(k)) or olds.get(k) != news.get(k)]
        old_conn = connection(olds)
        if not _known(news.get("bmc")):
            changed.append("bmc")
            moved = True
        else:
            new_conn = connection(news)
            conn_changed = [k for k in CONNECTION if old_conn.get(k) != new_conn.get(k)]
            moved = any(k in REPLACE_ON for k in conn_changed)
            if conn_changed or "bmc" not in olds:  # also: a state of the older flat shape
                changed.append("bmc")
        return DiffResult(
            changes=bool(changed),
            replaces=["bmc"] if moved else [],
            delete_before_replace=True,
        )

    def _adopted(self, props: dict[str, Any]) -> dict[str, Any]:
        """`adopt`: a running server comes under management by a read, nothing is written;
        what differs from the stack's values shows as drift at the next preview. (Pulumi's
        own import cannot reach a dynamic provider: its read gets no serialized provider.)"""
        return dict(self.read(self._id(props), props).outs or {})

    def _managed_changed(self, olds: dict[str, Any], news: dict[str, Any]) -> bool:
        """Whether an update has anything to do at the BMC (not only new connection values)."""
        return any(olds.get(k) != news.get(k) for k in self.DESIRED)

    def _id(self, props: dict[str, Any]) -> str:
        return f"{connection(props)['url']}#{self.KIND}"

    @staticmethod
    def _inputs(props: dict[str, Any]) -> dict[str, Any]:
        # The older flat connection keys and `password` only come from states written
        # before `bmc` and password_ref: drop them.
        legacy = ("__provider", "password", *CONNECTION) if "bmc" in props else ("__provider",)
        return {k: v for k, v in props.items() if k not in legacy}


class SystemInventoryProvider(_RedfishProvider):
    """The `<node>-inventory` resource of states written before PowerState carried `system`.

    The stack no longer declares it (the power resource reads the same system), so the next
    `pulumi up` deletes it, which changes nothing at the BMC. The class stays so that those
    states can still be refreshed and deleted: their resources name it as their provider.
    """

    KIND = "inventory"

    def _outs(self, props: dict[str, Any]) -> dict[str, Any]:
        return {**self._inputs(props), **rf.read_inventory(self._endpoint(props))}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(self._id(props), self._outs(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._outs(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, self._outs(props))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # reading changed nothing


class BootOverrideProvider(_RedfishProvider):
    """The boot source override; `Once` armed only on request (module docstring)."""

    KIND = "boot"
    DESIRED = ("target", "enabled", "mode", "arm")

    def _check(self, props: dict[str, Any]) -> list[CheckFailure]:
        out = (
            _choice(props, "target", rf.BOOT_TARGETS)
            + _choice(props, "enabled", rf.BOOT_ENABLED)
            + _choice(props, "mode", rf.BOOT_MODES)
        )
        arm = props.get("arm")
        if _known(arm) and arm is not None and not isinstance(arm, str):
            out.append(CheckFailure("arm", f"arm must be a string token, got {arm!r}"))
        return out

    @staticmethod
    def _wanted(props: dict[str, Any]) -> dict[str, str]:
        """What the stack asks for: target, enabled, mode and the arm token."""
        return {k: str(props.get(k) or "") for k in BootOverrideProvider.DESIRED}

    @staticmethod
    def _holds(live: dict[str, str], want: dict[str, str]) -> bool:
        """Whether the BMC holds the override asked for (its mode too, where it reports one)."""
        same = live["target"] == want["target"] and live["enabled"] == want["enabled"]
        return same and (not live["mode"] or not want["mode"] or live["mode"] == want["mode"])

    def _arm(self, ep: rf.BmcEndpoint, want: dict[str, str]) -> dict[str, str]:
        """Read, then write the override only if the BMC does not hold it yet; returns
        what the BMC held before."""
        live = rf.read_boot(ep)
        if not self._holds(live, want):
            rf.set_boot(ep, want["target"], want["enabled"], want["mode"] or None)
        return live

    def _outs(self, props: dict[str, Any], previous: Any, live: dict[str, str]) -> dict[str, Any]:
        want = self._wanted(props)
        return {**self._inputs(props), "previous": previous, "wanted": want, "live": live}

    def create(self, props: dict[str, Any]) -> CreateResult:
        if props.get("adopt"):
            outs = self._adopted(props)
            return CreateResult(self._id(props), {**outs, "previous": outs["live"]})
        ep = self._endpoint(props)
        previous = self._arm(ep, self._wanted(props))
        return CreateResult(self._id(props), self._outs(props, previous, rf.read_boot(ep)))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        want = self._wanted(news)
        before = olds.get("wanted") or self._wanted(olds)
        previous = olds.get("previous") or {}
        drift = any(olds.get(k) != before.get(k) for k in ("target", "enabled", "mode"))
        if want != before:
            # The stack asks for another override (or a reinstall): arm it.
            ep = self._endpoint(news)
            self._arm(ep, want)
            return UpdateResult(self._outs(news, previous, rf.read_boot(ep)))
        if drift:
            # `read` found an override the stack did not set: repair it.
            ep = self._endpoint(news)
            if want["enabled"] == "Continuous":
                self._arm(ep, want)
            elif rf.read_boot(ep)["enabled"] != "Disabled":
                rf.restore_boot(ep, {"enabled": "Disabled"})  # a used Once is not armed again
            return UpdateResult(self._outs(news, previous, rf.read_boot(ep)))
        # Only connection values changed: record them, leave the BMC alone.
        return UpdateResult(self._outs(news, previous, olds.get("live") or {}))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        live = rf.read_boot(self._endpoint(props))
        want = props.get("wanted") or self._wanted(props)
        outs = {**self._inputs(props), "wanted": want, "live": live}
        used_once = want.get("enabled") == "Once" and live["enabled"] == "Disabled"
        if not used_once and not self._holds(live, want):
            # Drift: shown as the BMC's values, repaired by the next update.
            outs.update(target=live["target"], enabled=live["enabled"], mode=live["mode"])
        else:
            outs.update({k: want.get(k, "") for k in ("target", "enabled", "mode")})
        return ReadResult(id_, outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        previous = props.get("previous")
        if previous:
            rf.restore_boot(self._endpoint(props), previous)


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
            self._endpoint(props),
            props["state"],
            timeout=float(props["power_timeout"]),
            poll_interval=float(props["poll_interval"]),
            off_action=props["off_action"],
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        if props.get("adopt"):
            outs = self._adopted(props)
            return CreateResult(self._id(props), {**outs, "previous_state": outs["reached"]})
        before, reached = self._apply(props)
        system = rf.read_inventory(self._endpoint(props))
        outs = {**self._inputs(props), "previous_state": before, "reached": reached}
        return CreateResult(self._id(props), {**outs, "system": system})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        previous = olds.get("previous_state") or ""
        if not self._managed_changed(olds, news):  # connection values only: no power action
            reached = olds.get("reached") or ""
            outs = {**self._inputs(news), "previous_state": previous, "reached": reached}
            return UpdateResult({**outs, "system": olds.get("system")})
        _before, reached = self._apply(news)
        system = rf.read_inventory(self._endpoint(news))
        outs = {**self._inputs(news), "previous_state": previous, "reached": reached}
        return UpdateResult({**outs, "system": system})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        system = rf.read_inventory(self._endpoint(props))
        live = system["power_state"]
        outs = {**self._inputs(props), "reached": live, "system": system}
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
        ep = self._endpoint(props)
        wanted = dict(props["attributes"])
        current, pending = rf.read_bios(ep, sorted(wanted))
        todo = {k: v for k, v in wanted.items() if current[k] != v and pending.get(k) != v}
        if todo:
            rf.set_bios(ep, todo)
            _, pending = rf.read_bios(ep, sorted(wanted))
        return {"current": current, "pending": pending}

    def create(self, props: dict[str, Any]) -> CreateResult:
        if props.get("adopt"):
            outs = self._adopted(props)
            return CreateResult(self._id(props), {**outs, "previous": outs["current"]})
        state = self._apply(props)
        outs = {**self._inputs(props), **state, "previous": state["current"]}
        return CreateResult(self._id(props), outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if not self._managed_changed(olds, news):  # connection values only: stage nothing
            state = {"current": olds.get("current"), "pending": olds.get("pending")}
        else:
            state = self._apply(news)
        return UpdateResult({**self._inputs(news), **state, "previous": olds.get("previous")})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Drift: an attribute the BMC holds, and has no change staged for, that is not
        the stack's value shows as the BMC's value; the next update stages it again."""
        wanted = dict(props.get("attributes") or {})
        current, pending = rf.read_bios(self._endpoint(props), sorted(wanted))
        seen = {
            k: current[k] if current.get(k) != v and pending.get(k) != v else v
            for k, v in wanted.items()
        }
        outs = {**self._inputs(props), "attributes": seen, "current": current, "pending": pending}
        return ReadResult(id_, outs)

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
        if props.get("adopt"):
            return CreateResult(self._id(props), self._adopted(props))
        media = rf.insert_media(self._endpoint(props), props["image"])
        return CreateResult(self._id(props), {**self._inputs(props), **media})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if not self._managed_changed(olds, news):  # connection values only
            media = {"device": olds.get("device"), "inserted": olds.get("inserted")}
            return UpdateResult({**self._inputs(news), **media})
        media = rf.insert_media(self._endpoint(news), news["image"])
        return UpdateResult({**self._inputs(news), **media})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Drift: another image, or none, in the virtual CD shows as that image."""
        media = rf.read_media(self._endpoint(props))
        image = media["image"] if media["inserted"] else ""
        return ReadResult(id_, {**self._inputs(props), **media, "image": image})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        rf.eject_media(self._endpoint(props), only_image=props.get("image"))


# --- the resources ---------------------------------------------------------------------------


class BootOverride(Resource, module="redfish", name="BootOverride"):
    target: pulumi.Output[str]
    enabled: pulumi.Output[str]
    mode: pulumi.Output[str]
    previous: pulumi.Output[dict[str, str]]
    live: pulumi.Output[dict[str, str]]  # what the BMC held at the last create, update or read

    def __init__(
        self,
        name: str,
        connection: dict[str, Any],
        *,
        target: str,
        enabled: str,
        mode: str,
        arm: str = "",
        adopt: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "bmc": dict(connection),
            "adopt": adopt,
            "target": target,
            "enabled": enabled,
            "mode": mode,
            "arm": arm,
            "previous": None,
            "wanted": None,
            "live": None,
        }
        super().__init__(BootOverrideProvider(), name, props, opts)


class PowerState(Resource, module="redfish", name="PowerState"):
    state: pulumi.Output[str]
    reached: pulumi.Output[str]
    previous_state: pulumi.Output[str]
    # What the BMC reports about the system (INVENTORY keys), read with the power state.
    system: pulumi.Output[dict[str, Any]]

    def __init__(
        self,
        name: str,
        connection: dict[str, Any],
        *,
        state: str,
        off_action: str,
        power_timeout: float,
        poll_interval: float,
        adopt: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "bmc": dict(connection),
            "adopt": adopt,
            "state": state,
            "off_action": off_action,
            "power_timeout": power_timeout,
            "poll_interval": poll_interval,
            "reached": None,
            "previous_state": None,
            "system": None,
        }
        super().__init__(PowerStateProvider(), name, props, opts)


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
        adopt: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "bmc": dict(connection),
            "adopt": adopt,
            "attributes": dict(attributes),
            "current": None,
            "pending": None,
            "previous": None,
        }
        super().__init__(BiosSettingsProvider(), name, props, opts)


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
        adopt: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "bmc": dict(connection),
            "adopt": adopt,
            "image": image,
            "device": None,
            "inserted": None,
        }
        super().__init__(VirtualMediaProvider(), name, props, opts)
