"""Redfish operations on one server's BMC, through sushy (the OpenStack Redfish client).

Every function takes a `BmcEndpoint` (where and how to reach one ComputerSystem)
and raises `BmcError`, whose message names the node and the URL, for anything
that goes wrong. Transient faults (connection refused or reset, timeouts, HTTP
5xx) are retried with exponential backoff up to `retries` extra attempts; a TLS
failure, a 4xx answer or a missing resource is reported at once.

Nothing here is Pulumi-specific: the dynamic providers in `gpufleet.infra.providers`
call these functions, and any Redfish BMC (a real one, sushy-tools' emulator,
the lab's podman-backed emulator) works the same way.

sushy is imported inside the functions: this module is imported by the Pulumi
program, and the dynamic providers are pickled with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

BOOT_TARGETS = ("Pxe", "UefiHttp", "Cd", "Hdd")
BOOT_ENABLED = ("Once", "Continuous")
BOOT_MODES = ("UEFI", "Legacy")
POWER_STATES = ("On", "Off")
OFF_ACTIONS = ("GracefulShutdown", "ForceOff")


class BmcError(Exception):
    """A BMC could not do what was asked. The message names the node and the URL."""

    def __init__(self, node: str, url: str, message: str, hint: str = "") -> None:
        self.node = node
        self.url = url
        text = f"node {node} (BMC {url}): {message}"
        super().__init__(f"{text} (fix: {hint})" if hint else text)


@dataclass(frozen=True)
class BmcEndpoint:
    """One Redfish ComputerSystem and how to talk to its BMC."""

    node: str
    url: str  # https://10.0.0.11/redfish/v1/Systems/1
    username: str | None = None
    password: str | None = None
    verify_tls: bool = True
    ca_bundle: str | None = None  # PEM file with the CA (or self-signed cert) of the BMC
    timeout: float = 30.0  # seconds per HTTP request
    retries: int = 4  # extra attempts after a transient fault
    backoff: float = 0.5  # first wait; doubles each attempt, capped at 8 s

    @property
    def base_url(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def system_path(self) -> str:
        return urlsplit(self.url).path.rstrip("/")

    @property
    def verify(self) -> bool | str:
        """What requests takes as `verify`: a CA bundle path wins over the flag."""
        if self.ca_bundle:
            return self.ca_bundle
        return self.verify_tls

    def __repr__(self) -> str:  # never print the password
        return f"BmcEndpoint(node={self.node!r}, url={self.url!r})"


def endpoint_from_props(props: Mapping[str, Any], password: str | None = None) -> BmcEndpoint:
    """Build the endpoint from a dynamic resource's properties (see providers.CONNECTION)
    and the password the provider looked up for them."""
    return BmcEndpoint(
        node=str(props["node"]),
        url=str(props["url"]),
        username=props.get("username") or None,
        password=password,
        verify_tls=bool(props.get("verify_tls", True)),
        ca_bundle=props.get("ca_bundle") or None,
        timeout=float(props.get("timeout") or 30.0),
        retries=int(retries) if (retries := props.get("retries")) is not None else 4,
        backoff=float(props.get("backoff") or 0.5),
    )


# --- faults and retries -----------------------------------------------------------------


def _is_tls_failure(exc: BaseException) -> bool:
    text = str(exc).upper()
    return "SSL" in text or "CERTIFICATE" in text


def _classify(exc: BaseException) -> tuple[bool, str, str]:
    """(transient?, what happened, hint) for an exception raised while talking Redfish."""
    from sushy import exceptions as sx

    if isinstance(exc, sx.ConnectionError):
        if _is_tls_failure(exc):
            return (
                False,
                f"TLS verification failed: {exc}",
                "give the BMC's CA certificate with caBundle (self-signed BMCs need it)",
            )
        return True, f"unreachable: {exc}", "check the BMC address, cabling and that it is up"
    if isinstance(exc, sx.ServerSideError):
        return True, f"server error HTTP {exc.status_code}: {exc}", "check the BMC's health"
    if isinstance(exc, sx.AccessError):
        return (
            False,
            f"access denied (HTTP {exc.status_code})",
            "check the BMC username and password",
        )
    if isinstance(exc, sx.ResourceNotFoundError):
        return False, f"not found: {exc}", "check the system id at the end of the BMC URL"
    if isinstance(exc, sx.HTTPError):
        return False, f"HTTP {exc.status_code}: {exc}", ""
    return False, f"{type(exc).__name__}: {exc}", ""


def call(
    ep: BmcEndpoint, what: str, fn: Callable[[], T], sleep: Callable[[float], None] = time.sleep
) -> T:
    """Run fn (some Redfish requests), retrying transient faults with backoff and a bound."""
    from sushy import exceptions as sx

    attempt = 0
    while True:
        try:
            return fn()
        except BmcError:
            raise
        except (sx.SushyError, OSError, ValueError) as exc:
            transient, message, hint = _classify(exc)
            if transient and attempt < ep.retries:
                sleep(min(ep.backoff * (2**attempt), 8.0))
                attempt += 1
                continue
            tries = f" after {attempt + 1} attempts" if attempt else ""
            raise BmcError(ep.node, ep.url, f"{what}: {message}{tries}", hint) from exc


def _connect(ep: BmcEndpoint) -> Any:
    import sushy
    from sushy import auth

    # Basic auth: each operation is a short burst of requests, and Redfish
    # sessions would have to be closed again and count against the BMC's
    # session limit. server_side_retries=1: sushy then makes one connection
    # attempt and at most one immediate retry of a 5xx GET; the backoff and
    # the bound live in `call` above.
    return sushy.Sushy(
        ep.base_url,
        auth=auth.BasicAuth(ep.username or "", ep.password or ""),
        verify=ep.verify,
        server_side_retries=1,
        server_side_retries_delay=0,
        read_timeout=int(max(1, ep.timeout)),
        connect_timeout=int(max(1, min(ep.timeout, 10))),
    )


def system(ep: BmcEndpoint) -> Any:
    """The sushy System of the endpoint (one connection, retried on transient faults)."""
    return call(ep, "connect", lambda: _connect(ep).get_system(ep.system_path))


# --- inventory --------------------------------------------------------------------------


def _value(v: Any) -> Any:
    return getattr(v, "value", v)


def read_inventory(ep: BmcEndpoint) -> dict[str, Any]:
    """Manufacturer, model, serial, BIOS version, CPU and memory summary, power state."""
    sys_ = system(ep)

    def read() -> dict[str, Any]:
        doc = sys_.json or {}
        cpus = doc.get("ProcessorSummary") or {}
        mem = sys_.memory_summary
        return {
            "manufacturer": sys_.manufacturer or "",
            "model": sys_.model or "",
            "serial_number": sys_.serial_number or "",
            "bios_version": sys_.bios_version or "",
            "cpu_count": cpus.get("Count"),
            "cpu_model": cpus.get("Model") or "",
            "memory_gib": mem.size_gib if mem is not None else None,
            "power_state": _value(sys_.power_state) or "",
            "system_id": sys_.identity,
            "system_uuid": sys_.uuid or "",
        }

    return call(ep, "read inventory", read)


# --- boot source override ------------------------------------------------------------------


def read_boot(ep: BmcEndpoint) -> dict[str, str]:
    sys_ = system(ep)
    boot = sys_.boot
    return {
        "target": _value(boot.target) or "None",
        "enabled": _value(boot.enabled) or "Disabled",
        "mode": _value(boot.mode) or "",
    }


def set_boot(ep: BmcEndpoint, target: str, enabled: str, mode: str | None) -> dict[str, str]:
    """Set the boot source override; returns what the BMC reported before."""
    sys_ = system(ep)
    before = {
        "target": _value(sys_.boot.target) or "None",
        "enabled": _value(sys_.boot.enabled) or "Disabled",
        "mode": _value(sys_.boot.mode) or "",
    }
    allowed = sys_.boot.allowed_values
    if allowed and target not in allowed and target != "None":
        raise BmcError(
            ep.node,
            ep.url,
            f"boot target {target} is not offered by this BMC",
            f"use one of {', '.join(allowed)}",
        )

    def patch() -> None:
        import sushy

        sys_.set_system_boot_options(
            target=sushy.BootSource(target),
            enabled=sushy.BootSourceOverrideEnabled(enabled),
            mode=sushy.BootSourceOverrideMode(mode) if mode else None,
        )

    call(ep, f"set boot override {target}/{enabled}", patch)
    return before


def restore_boot(ep: BmcEndpoint, previous: Mapping[str, str]) -> None:
    """Put back an override read by set_boot (Disabled clears it)."""
    sys_ = system(ep)
    target = previous.get("target") or "None"
    enabled = previous.get("enabled") or "Disabled"

    def patch() -> None:
        import sushy

        if enabled == "Disabled" or target == "None":
            sys_.set_system_boot_options(enabled=sushy.BootSourceOverrideEnabled.DISABLED)
        else:
            mode = previous.get("mode")
            sys_.set_system_boot_options(
                target=sushy.BootSource(target),
                enabled=sushy.BootSourceOverrideEnabled(enabled),
                mode=sushy.BootSourceOverrideMode(mode) if mode else None,
            )

    call(ep, "restore boot override", patch)


# --- power ------------------------------------------------------------------------------------


def read_power(ep: BmcEndpoint) -> str:
    sys_ = system(ep)
    return str(_value(sys_.power_state) or "")


def set_power(
    ep: BmcEndpoint,
    state: str,
    *,
    timeout: float,
    poll_interval: float = 1.0,
    off_action: str = "GracefulShutdown",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, str]:
    """Drive the system to On/Off and poll until it gets there; (before, reached).

    Raises BmcError when the state is not reached within `timeout` seconds.
    """
    sys_ = system(ep)
    before = str(_value(sys_.power_state) or "")
    if before == state:
        return before, state
    action = "On" if state == "On" else off_action

    def reset() -> None:
        import sushy

        sys_.reset_system(sushy.ResetType(action))

    call(ep, f"power {action}", reset)
    deadline = clock() + timeout
    current = before
    while True:
        call(ep, "read power state", lambda: sys_.refresh(force=True))
        current = str(_value(sys_.power_state) or "")
        if current == state:
            return before, current
        if clock() >= deadline:
            hint = "raise powerTimeout" + (
                " or use powerOffAction ForceOff" if state == "Off" else ""
            )
            raise BmcError(
                ep.node,
                ep.url,
                f"power state {current or 'unknown'} after {timeout:g}s, wanted {state}",
                hint,
            )
        sleep(poll_interval)


# --- BIOS -------------------------------------------------------------------------------------


def _bios(ep: BmcEndpoint, sys_: Any) -> Any:
    from sushy import exceptions as sx

    try:
        return call(ep, "read BIOS", lambda: sys_.bios)
    except BmcError as err:
        if isinstance(err.__cause__, sx.MissingAttributeError):
            raise BmcError(
                ep.node,
                ep.url,
                "this BMC offers no Bios resource",
                "remove biosAttributes for this node",
            ) from err
        raise


def read_bios(ep: BmcEndpoint, names: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(current, pending) values of the named attributes only.

    `pending` holds attributes whose value in the BMC's settings object differs
    from the current one: they take effect at the next reboot.
    """
    sys_ = system(ep)
    bios = _bios(ep, sys_)

    def read() -> tuple[dict[str, Any], dict[str, Any]]:
        current_all = bios.attributes or {}
        missing = [n for n in names if n not in current_all]
        if missing:
            raise BmcError(
                ep.node,
                ep.url,
                f"BIOS has no attribute {', '.join(sorted(missing))}",
                "check the name against the BMC's attribute registry",
            )
        try:
            pending_all = bios.pending_attributes or {}
        except Exception:
            pending_all = {}
        current = {n: current_all[n] for n in names}
        pending = {
            n: pending_all[n] for n in names if n in pending_all and pending_all[n] != current[n]
        }
        return current, pending

    return call(ep, "read BIOS attributes", read)


def set_bios(ep: BmcEndpoint, attributes: Mapping[str, Any]) -> None:
    """Stage the attributes (applied by the BMC at the next reboot)."""
    sys_ = system(ep)
    bios = _bios(ep, sys_)
    call(ep, "set BIOS attributes", lambda: bios.set_attributes(dict(attributes)))


# --- virtual media ---------------------------------------------------------------------------


def _cd_device(ep: BmcEndpoint, sys_: Any) -> Any:
    from sushy import exceptions as sx

    def find() -> Any:
        try:
            collection = sys_.virtual_media
        except sx.MissingAttributeError:
            managers = sys_.managers
            if not managers:
                raise
            collection = managers[0].virtual_media
        for member in collection.get_members():
            kinds = {_value(m) for m in (member.media_types or [])}
            if kinds & {"CD", "DVD"}:
                return member
        raise BmcError(ep.node, ep.url, "no virtual CD/DVD drive", "use PXE or HTTP boot instead")

    return call(ep, "find virtual media", find)


def read_media(ep: BmcEndpoint) -> dict[str, Any]:
    sys_ = system(ep)
    dev = _cd_device(ep, sys_)
    return {"device": dev.identity, "image": dev.image or "", "inserted": bool(dev.inserted)}


def insert_media(ep: BmcEndpoint, image: str) -> dict[str, Any]:
    """Insert the image in the virtual CD (ejecting another one first); returns the drive."""
    sys_ = system(ep)
    dev = _cd_device(ep, sys_)
    if dev.image and dev.image != image and dev.inserted:
        call(ep, "eject virtual media", dev.eject_media)
        call(ep, "read virtual media", lambda: dev.refresh(force=True))
    if dev.image != image or not dev.inserted:
        call(ep, f"insert virtual media {image}", lambda: dev.insert_media(image, inserted=True))
    call(ep, "read virtual media", lambda: dev.refresh(force=True))
    return {"device": dev.identity, "image": dev.image or "", "inserted": bool(dev.inserted)}


def eject_media(ep: BmcEndpoint, only_image: str | None = None) -> bool:
    """Eject the virtual CD (only if it holds `only_image`, when given); True if ejected."""
    sys_ = system(ep)
    dev = _cd_device(ep, sys_)
    if not dev.image or (only_image is not None and dev.image != only_image):
        return False
    call(ep, "eject virtual media", dev.eject_media)
    return True
