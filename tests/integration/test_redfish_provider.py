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


def conn(node: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "node": node,
        "url": url,
        "username": "admin",
        "password": "pw",
        "verify_tls": True,
        "ca_bundle": None,
        "timeout": 5.0,
        "retries": 2,
        "backoff": 0.05,
        **extra,
    }


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
    c = conn("node1", emulator.system_url("node1"))
    result = pv.SystemInventoryProvider().create(c)
    assert result.id == f"{c['url']}#inventory"
    outs = result.outs
    assert outs["manufacturer"] == "Sushy Emulator"
    assert outs["power_state"] == "Off"
    assert outs["system_uuid"] == emulator.system("node1")["UUID"]
    assert outs["password"] == "pw"  # kept for delete; the component marks it secret
    again = pv.SystemInventoryProvider().read(result.id, outs)
    assert again.outs["power_state"] == "Off"


def test_boot_override_set_update_and_restore(emulator):
    prov = pv.BootOverrideProvider()
    c = conn("node2", emulator.system_url("node2"))
    assert emulator.system("node2")["Boot"]["BootSourceOverrideTarget"] == "Hdd"
    created = prov.create({**c, "target": "Pxe", "enabled": "Once", "mode": "UEFI"})
    boot = emulator.system("node2")["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideMode"]) == ("Pxe", "UEFI")
    assert created.outs["previous"]["target"] == "Hdd"

    news = {**c, "target": "Cd", "enabled": "Once", "mode": "UEFI"}
    diff = prov.diff(created.id, created.outs, news)
    assert diff.changes and diff.replaces == []
    updated = prov.update(created.id, created.outs, news)
    assert emulator.system("node2")["Boot"]["BootSourceOverrideTarget"] == "Cd"
    assert updated.outs["previous"]["target"] == "Hdd"  # what we found first

    prov.delete(created.id, updated.outs)
    assert emulator.system("node2")["Boot"]["BootSourceOverrideTarget"] == "Hdd"


def test_power_on_polls_until_reached_then_off(emulator):
    prov = pv.PowerStateProvider()
    c = conn("node3", emulator.system_url("node3"))
    started = time.monotonic()
    created = prov.create(power_props(c, "On"))
    assert created.outs["reached"] == "On"
    assert created.outs["previous_state"] == "Off"
    assert emulator.system("node3")["PowerState"] == "On"
    # the fake driver applies a power change 1-11 s after the request: we really polled
    assert time.monotonic() - started >= 0.5

    off = power_props(c, "Off")
    updated = prov.update(created.id, created.outs, off)
    assert updated.outs["reached"] == "Off"
    assert emulator.system("node3")["PowerState"] == "Off"
    # refresh records drift: the live state becomes the old value the next diff sees
    read = prov.read(created.id, {**updated.outs, "state": "On"})
    assert read.outs["state"] == "Off"
    prov.delete(created.id, updated.outs)
    assert emulator.system("node3")["PowerState"] == "Off"  # delete leaves power alone


def test_power_timeout_names_node_and_url(emulator):
    c = conn("node4", emulator.system_url("node4"))
    with pytest.raises(BmcError) as err:
        pv.PowerStateProvider().create(power_props(c, "On", power_timeout=0.05, poll_interval=0.05))
    text = str(err.value)
    assert text.startswith(f"node node4 (BMC {c['url']}): power state Off after 0.05s, wanted On")
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
    again = prov.update(created.id, created.outs, props)
    assert again.outs["current"]["ProcTurboMode"] == "Disabled"
    assert again.outs["pending"] == {}


def test_bios_on_a_bmc_without_bios_resource(emulator):
    c = conn("node1", emulator.system_url("node1"))
    with pytest.raises(BmcError, match=r"node node1 \(BMC .*\): this BMC offers no Bios resource"):
        pv.BiosSettingsProvider().create({**c, "attributes": {"ProcTurboMode": "Enabled"}})


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

    ep = endpoint_from_props(conn("n", "https://10.0.0.11/redfish/v1/Systems/1"))
    assert ep.verify is True
    ca = tmp_path / "ca.pem"
    ep = endpoint_from_props({**conn("n", ep.url), "ca_bundle": str(ca)})
    assert ep.verify == str(ca)
    assert "pw" not in repr(ep)
