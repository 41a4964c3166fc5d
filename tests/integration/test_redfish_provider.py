"""The Redfish dynamic providers against a live `sushy-emulator --fake` (and broken BMCs).

Each test drives the provider methods the Pulumi engine calls (create, update,
delete, read) and reads the result back over Redfish from the emulator.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redfish_fixtures as rfx
from redfish_fixtures import FailingBmc, FileServer, closed_port

from gpufleet.infra import providers as pv
from gpufleet.infra.redfish import BmcError

emulator = rfx.emulator  # fixtures (redfish_fixtures.py)
bios_emulator = rfx.bios_emulator
PASSWORD_VAR = "GPUFLEET_TEST_BMC_PASSWORD"
UNSET_VAR = "GPUFLEET_TEST_UNSET_BMC_PASSWORD"


@pytest.fixture(autouse=True)
def bmc_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """The providers read the password where password_ref points: here, a variable."""
    monkeypatch.setenv(PASSWORD_VAR, "pw")
    monkeypatch.delenv(UNSET_VAR, raising=False)


def conn(node: str, url: str, **extra: Any) -> dict[str, Any]:
    """A resource's connection property, `bmc`, as the stack writes it."""
    return {
        "bmc": {
            "node": node,
            "url": url,
            "username": "admin",
            "password_ref": {"env": PASSWORD_VAR},
            "verify_tls": True,
            "ca_bundle": None,
            "timeout": 5.0,
            "retries": 2,
            "backoff": 0.05,
            **extra,
        }
    }


def with_conn(props: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**props, "bmc": {**props["bmc"], **changes}}


def power_props(c: dict[str, Any], state: str, **extra: Any) -> dict[str, Any]:
    return {
        **c,
        "state": state,
        "off_action": "ForceOff",
        "power_timeout": 30.0,
        "poll_interval": 0.5,
        **extra,
    }


def test_inventory_reads_the_system(emulator):
    """The `<node>-inventory` resource of older states: it still reads (refresh) until the
    next up deletes it; the stack's PowerState now carries the same `system` object."""
    c = conn("node1", emulator.system_url("node1"))
    result = pv.SystemInventoryProvider().create(c)
    assert result.id == f"{c['bmc']['url']}#inventory"
    outs = result.outs
    assert outs["manufacturer"] == "Sushy Emulator"
    assert outs["power_state"] == "Off"
    assert outs["system_uuid"] == emulator.system("node1")["UUID"]
    assert "password" not in outs and outs["bmc"]["password_ref"] == {"env": PASSWORD_VAR}
    again = pv.SystemInventoryProvider().read(result.id, outs)
    assert again.outs["power_state"] == "Off"


def test_boot_override_set_update_and_restore(emulator):
    prov = pv.BootOverrideProvider()
    c = conn("node2", emulator.system_url("node2"))
    assert emulator.system("node2")["Boot"]["BootSourceOverrideEnabled"] == "Disabled"
    created = prov.create({**c, "target": "Pxe", "enabled": "Once", "mode": "UEFI", "arm": ""})
    boot = emulator.system("node2")["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideMode"]) == ("Pxe", "UEFI")
    assert boot["BootSourceOverrideEnabled"] == "Once"
    assert created.outs["previous"]["enabled"] == "Disabled"

    news = {**c, "target": "Cd", "enabled": "Once", "mode": "UEFI", "arm": ""}
    diff = prov.diff(created.id, created.outs, news)
    assert diff.changes and diff.replaces == []
    updated = prov.update(created.id, created.outs, news)
    assert emulator.system("node2")["Boot"]["BootSourceOverrideTarget"] == "Cd"
    assert updated.outs["previous"]["enabled"] == "Disabled"  # what we found first

    prov.delete(created.id, updated.outs)
    assert emulator.system("node2")["Boot"]["BootSourceOverrideEnabled"] == "Disabled"


def boot_props(c: dict[str, Any], enabled: str = "Once", arm: str = "") -> dict[str, Any]:
    return {**c, "target": "Pxe", "enabled": enabled, "mode": "UEFI", "arm": arm}


def test_once_is_used_by_one_boot_and_not_armed_again(emulator):
    prov = pv.BootOverrideProvider()
    c = conn("node1", emulator.system_url("node1"))
    created = prov.create(boot_props(c))
    assert emulator.system("node1")["Boot"]["BootSourceOverrideEnabled"] == "Once"
    emulator.reset("node1", "On")  # the node boots (from PXE): the override is used
    assert emulator.system("node1")["Boot"]["BootSourceOverrideEnabled"] == "Disabled"
    emulator.reset("node1", "On")  # already on: no boot, nothing changes
    read = prov.read(created.id, created.outs)  # pulumi refresh
    assert read.outs["enabled"] == "Once" and read.outs["live"]["enabled"] == "Disabled"
    assert not prov.diff(created.id, read.outs, boot_props(c)).changes  # used, not drift
    # A new reinstall token arms it again, once.
    rearm = boot_props(c, arm="2026-12-02")
    assert prov.diff(created.id, read.outs, rearm).changes
    prov.update(created.id, read.outs, rearm)
    assert emulator.system("node1")["Boot"]["BootSourceOverrideEnabled"] == "Once"
    emulator.reset("node1", "ForceRestart")
    assert emulator.system("node1")["Boot"]["BootSourceOverrideEnabled"] == "Disabled"


def test_a_write_is_skipped_when_the_bmc_holds_the_override(emulator):
    c = conn("node3", emulator.system_url("node3"))
    emulator.set_boot("node3", Target="Pxe", Enabled="Continuous", Mode="UEFI")
    log = emulator.workdir / "emulator.log"  # the emulator's access log: one line a request
    patches = log.read_text().count("PATCH /redfish")
    assert patches == 1  # the one above
    pv.BootOverrideProvider().create(boot_props(c, enabled="Continuous"))
    assert log.read_text().count("PATCH /redfish") == patches  # read, found it held, wrote nothing
    assert log.read_text().count("GET /redfish") > 0
    assert emulator.system("node3")["Boot"]["BootSourceOverrideEnabled"] == "Continuous"


def test_connection_changes_talk_to_no_bmc(emulator):
    """A new password reference, timeout or retry count is recorded, nothing is sent:
    the password variable named here is not even set, so any Redfish call would fail."""
    c = conn("node4", emulator.system_url("node4"))
    boot = pv.BootOverrideProvider()
    created = boot.create(boot_props(c))
    emulator.reset("node4", "On")  # the Once override is used
    news = boot_props(with_conn(c, password_ref={"env": UNSET_VAR}, timeout=9.0, retries=0))
    diff = boot.diff(created.id, created.outs, news)
    assert diff.changes and diff.replaces == []
    updated = boot.update(created.id, created.outs, news)
    assert updated.outs["bmc"]["timeout"] == 9.0
    assert updated.outs["bmc"]["password_ref"] == {"env": UNSET_VAR}
    assert emulator.system("node4")["Boot"]["BootSourceOverrideEnabled"] == "Disabled"
    power = pv.PowerStateProvider()
    on = power.create(power_props(c, "On"))
    unset = with_conn(c, password_ref={"env": UNSET_VAR})
    moved = power.update(on.id, on.outs, power_props(unset, "On"))
    assert moved.outs["reached"] == "On"
    assert moved.outs["system"] == on.outs["system"]  # kept, not read again
    with pytest.raises(BmcError, match=f"{UNSET_VAR} is not set.*export {UNSET_VAR}"):
        boot.read(created.id, updated.outs)  # a real call does need the password


def test_an_override_set_by_hand_is_drift_and_repaired(emulator):
    prov = pv.BootOverrideProvider()
    c = conn("node2", emulator.system_url("node2"))
    created = prov.create(boot_props(c))
    emulator.reset("node2", "On")  # used
    emulator.set_boot("node2", Target="Hdd", Enabled="Continuous", Mode="UEFI")  # by hand
    read = prov.read(created.id, created.outs)
    assert (read.outs["target"], read.outs["enabled"]) == ("Hdd", "Continuous")
    assert prov.diff(created.id, read.outs, boot_props(c)).changes
    repaired = prov.update(created.id, read.outs, boot_props(c))
    # The stack's Once was used: the repair clears the override, it does not arm a reinstall.
    assert emulator.system("node2")["Boot"]["BootSourceOverrideEnabled"] == "Disabled"
    again = prov.read(created.id, repaired.outs)
    assert not prov.diff(created.id, again.outs, boot_props(c)).changes
    # A Continuous override of the stack is written again.
    node3 = boot_props(conn("node3", emulator.system_url("node3")), "Continuous")
    cont = prov.create(node3)
    emulator.set_boot("node3", Enabled="Disabled")
    drift = prov.read(cont.id, cont.outs)
    assert drift.outs["enabled"] == "Disabled"
    prov.update(cont.id, drift.outs, node3)
    assert emulator.system("node3")["Boot"]["BootSourceOverrideEnabled"] == "Continuous"


def test_power_on_polls_until_reached_then_off(emulator):
    prov = pv.PowerStateProvider()
    c = conn("node3", emulator.system_url("node3"))
    started = time.monotonic()
    created = prov.create(power_props(c, "On"))
    assert created.outs["reached"] == "On"
    assert created.outs["previous_state"] == "Off"
    assert emulator.system("node3")["PowerState"] == "On"
    # the power resource reads the system's inventory too, one object, after the reset
    system = created.outs["system"]
    assert set(system) == set(pv.INVENTORY)
    assert system["manufacturer"] == "Sushy Emulator"
    assert system["power_state"] == "On"
    assert system["system_uuid"] == emulator.system("node3")["UUID"]
    # the fake driver applies a power change 1-11 s after the request: we really polled
    assert time.monotonic() - started >= 0.5

    off = power_props(c, "Off")
    updated = prov.update(created.id, created.outs, off)
    assert updated.outs["reached"] == "Off"
    assert emulator.system("node3")["PowerState"] == "Off"
    # refresh records drift: the live state becomes the old value the next diff sees
    read = prov.read(created.id, {**updated.outs, "state": "On"})
    assert read.outs["state"] == "Off"
    assert read.outs["system"]["power_state"] == "Off"  # refresh reads the system again
    prov.delete(created.id, updated.outs)
    assert emulator.system("node3")["PowerState"] == "Off"  # delete leaves power alone


def test_power_timeout_names_node_and_url(emulator):
    c = conn("node4", emulator.system_url("node4"))
    with pytest.raises(BmcError) as err:
        pv.PowerStateProvider().create(power_props(c, "On", power_timeout=0.05, poll_interval=0.05))
    text = str(err.value)
    url = c["bmc"]["url"]
    assert text.startswith(f"node node4 (BMC {url}): power state Off after 0.05s, wanted On")
    assert "powerTimeout" in text


def test_virtual_media_insert_and_eject(emulator, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "installer.iso").write_bytes(b"constructed test image\n" * 64)
    prov = pv.VirtualMediaProvider()
    c = conn("node1", emulator.system_url("node1"))
    uuid = emulator.system("node1")["UUID"]
    with FileServer(images) as files:
        url = files.url("installer.iso")
        created = prov.create({**c, "image": url})
        assert created.outs["inserted"] is True
        cd = emulator.get(f"/redfish/v1/Systems/{uuid}/VirtualMedia/{created.outs['device']}")
        assert (cd["Image"], cd["Inserted"]) == (url, True)
        prov.delete(created.id, created.outs)
        cd = emulator.get(f"/redfish/v1/Systems/{uuid}/VirtualMedia/{created.outs['device']}")
        assert cd["Inserted"] is False


def test_bios_stages_named_attributes_and_reports_pending(bios_emulator):
    prov = pv.BiosSettingsProvider()
    c = conn("biosnode", bios_emulator.system_url("biosnode"))
    props = {**c, "attributes": {"ProcTurboMode": "Disabled", "NumaNodesPerSocket": 1}}
    created = prov.create(props)
    assert created.outs["current"] == {"ProcTurboMode": "Enabled", "NumaNodesPerSocket": 1}
    assert created.outs["pending"] == {"ProcTurboMode": "Disabled"}
    uuid = bios_emulator.system("biosnode")["UUID"]
    staged = bios_emulator.get(f"/redfish/v1/Systems/{uuid}/BIOS/Settings")["Attributes"]
    assert staged["ProcTurboMode"] == "Disabled"
    # applied at the next power-on
    pv.PowerStateProvider().create(power_props(c, "On"))
    again = prov.read(created.id, created.outs)  # pulumi refresh
    assert again.outs["current"]["ProcTurboMode"] == "Disabled"
    assert again.outs["pending"] == {}
    assert not prov.diff(created.id, again.outs, props).changes


def test_bios_on_a_bmc_without_bios_resource(emulator):
    c = conn("node1", emulator.system_url("node1"))
    with pytest.raises(BmcError, match=r"node node1 \(BMC .*\): this BMC offers no Bios resource"):
        pv.BiosSettingsProvider().create({**c, "attributes": {"ProcTurboMode": "Enabled"}})


def test_bios_changed_at_the_bmc_is_drift_and_staged_again(bios_emulator):
    prov = pv.BiosSettingsProvider()
    c = conn("biosnode", bios_emulator.system_url("biosnode"))
    props = {**c, "attributes": {"ProcTurboMode": "Disabled"}}
    created = prov.create(props)
    bios_emulator.reset("biosnode", "On")  # the staged value applies at boot
    assert not prov.diff(created.id, prov.read(created.id, created.outs).outs, props).changes
    bios_emulator._request(
        "/redfish/v1/Systems/{}/BIOS/Settings".format(rfx.system_uuid("biosnode")),
        "PATCH",
        {"Attributes": {"ProcTurboMode": "Enabled"}},
    )
    bios_emulator.reset("biosnode", "ForceRestart")  # someone changed it and rebooted
    drift = prov.read(created.id, created.outs)
    assert drift.outs["attributes"] == {"ProcTurboMode": "Enabled"}
    assert prov.diff(created.id, drift.outs, props).changes
    staged = prov.update(created.id, drift.outs, props)
    assert staged.outs["pending"] == {"ProcTurboMode": "Disabled"}


def test_unknown_bios_attribute(bios_emulator):
    c = conn("biosnode", bios_emulator.system_url("biosnode"))
    with pytest.raises(BmcError, match="BIOS has no attribute NoSuchThing"):
        pv.BiosSettingsProvider().create({**c, "attributes": {"NoSuchThing": 1}})


def test_bmc_down_is_retried_with_a_bound():
    url = f"http://127.0.0.1:{closed_port()}/redfish/v1/Systems/1"
    c = conn("gpu9", url, retries=2, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(BmcError) as err:
        pv.BootOverrideProvider().create({**c, "target": "Pxe", "enabled": "Once", "mode": "UEFI"})
    text = str(err.value)
    assert text.startswith(f"node gpu9 (BMC {url}): connect: unreachable")
    assert "after 3 attempts" in text
    assert time.monotonic() - started < 10


def test_bmc_answering_500_is_retried_with_a_bound():
    with FailingBmc() as bmc:
        c = conn("gpu8", bmc.url, retries=2, backoff=0.05)
        with pytest.raises(BmcError) as err:
            pv.SystemInventoryProvider().create(c)
        text = str(err.value)
        assert text.startswith(f"node gpu8 (BMC {bmc.url}): connect: server error HTTP 500")
        assert "after 3 attempts" in text
        # 3 attempts; sushy itself retries a failed GET once: never more than 6 requests
        assert 3 <= bmc.hits <= 6


def test_tls_verification_is_on_by_default(emulator):
    # https to the emulator's plain-http port: the TLS handshake fails, no retry
    url = emulator.system_url("node1").replace("http://", "https://")
    c = conn("node1", url, retries=3, backoff=1.0)
    started = time.monotonic()
    with pytest.raises(BmcError, match=r"TLS verification failed.*caBundle"):
        pv.SystemInventoryProvider().create(c)
    assert time.monotonic() - started < 1.0  # not retried


def test_one_failing_bmc_does_not_stop_the_others(emulator):
    down = f"http://127.0.0.1:{closed_port()}/redfish/v1/Systems/1"
    targets = [(n, emulator.system_url(n)) for n in ("node1", "node2", "node3")]
    targets.append(("gpu-down", down))

    def boot(node_url: tuple[str, str]) -> str:
        node, url = node_url
        try:
            pv.BootOverrideProvider().create(
                {**conn(node, url, retries=1), "target": "Pxe", "enabled": "Once", "mode": "UEFI"}
            )
            return "ok"
        except BmcError as err:
            return str(err)

    with ThreadPoolExecutor(4) as pool:  # the dynamic provider serves 4 calls at once
        results = list(pool.map(boot, targets))
    assert results[:3] == ["ok", "ok", "ok"]
    assert results[3].startswith(f"node gpu-down (BMC {down})")
    for n in ("node1", "node2", "node3"):
        assert emulator.system(n)["Boot"]["BootSourceOverrideTarget"] == "Pxe"


def test_ca_bundle_is_passed_to_tls(tmp_path: Path):
    from gpufleet.infra.redfish import endpoint_from_props

    ep = endpoint_from_props(conn("n", "https://10.0.0.11/redfish/v1/Systems/1")["bmc"])
    assert ep.verify is True
    ca = tmp_path / "ca.pem"
    ep = endpoint_from_props(conn("n", ep.url, ca_bundle=str(ca))["bmc"])
    assert ep.verify == str(ca)
    assert "pw" not in repr(endpoint_from_props(conn("n", ep.url)["bmc"], password="pw"))
