"""The Pulumi components of stacks/cluster under pulumi.runtime.set_mocks, for the lab and
example-ib sites: resource counts, types, parents, secret-ness of BMC passwords, the
plan and inventory as outputs; plus the stack config checks and the providers' check/diff.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import dill
import pulumi
import pytest
import yaml
from pulumi.dynamic.dynamic import serialize_provider

from gpufleet.errors import UserError
from gpufleet.infra import providers as pv
from gpufleet.infra.configure import content_digest, failure_summary
from gpufleet.infra.inventory import digests
from gpufleet.infra.settings import DEFAULTS, load_settings
from gpufleet.inventory import render_inventory
from gpufleet.model import load_cluster
from gpufleet.plan import plan_dict

REPO = Path(__file__).resolve().parents[2]
PROJECT_DIR = REPO / "stacks" / "cluster"
LAB_PASSWORD = "lab-bmc-pass-7f3e"  # constructed: a test password, grepped for below
IB_PASSWORD = "ib-bmc-pass-91ac"  # constructed


class FakeConfig:
    """pulumi.Config's get/get_object/get_secret over a dict (what the stack YAML holds)."""

    def __init__(self, values: dict[str, Any], secrets: dict[str, str] | None = None) -> None:
        self.values = values
        self.secrets = secrets or {}

    def get(self, key: str) -> str | None:
        v = self.values.get(key)
        if v is None:
            return None
        return str(v).lower() if isinstance(v, bool) else str(v)

    def get_object(self, key: str) -> Any:
        return self.values.get(key)

    def get_secret(self, key: str) -> Any:
        return pulumi.Output.secret(self.secrets[key]) if key in self.secrets else None


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.created: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.created.append(args)
        outs = dict(args.inputs)
        if args.typ.endswith("redfish:PowerState"):
            outs["reached"] = outs["state"]
            outs["system"] = {"manufacturer": "Mock Inc.", "model": "HGX", "power_state": "Off"}
        if args.typ.endswith("inventory:InventoryFiles"):
            outs["digests"] = digests(outs["files"])
        if args.typ.endswith("configure:AnsibleRun"):
            outs["rc"] = 0
        return f"{args.name}-id", outs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


@pytest.fixture
def mocks() -> Mocks:
    m = Mocks()
    pulumi.runtime.set_mocks(m, project="gpufleet-cluster", stack="test", preview=False)
    return m


def _settings(site: str, extra: dict[str, Any] | None = None):
    environ = {"GPUFLEET_LAB_BMC_PASSWORD": LAB_PASSWORD, "GPUFLEET_BMC_PASSWORD": IB_PASSWORD}
    config = FakeConfig({"spec": f"../../inventories/{site}", **(extra or {})})
    return load_settings(config, environ, PROJECT_DIR)


def _types(resources: list[pulumi.Resource]) -> list[str]:
    return sorted(r._type for r in resources)


def _all_registered(cluster: Any) -> pulumi.Output[Any]:
    """An Output that resolves once every resource of the cluster is registered."""
    outs = [c.id for n in cluster.nodes.values() for c in n._childResources]
    return pulumi.Output.all(*outs, cluster.inventory.digests)


def _check_node(node: Any, name: str, children: set[str]) -> None:
    kids = {c._name for c in node._childResources}
    assert kids == {f"{name}-{c}" for c in children}, name
    for child in node._childResources:
        assert child._type.startswith("pulumi-python:dynamic/redfish:")


@pulumi.runtime.test
def test_lab_stack_resources_parents_and_plan(mocks):
    from gpufleet.infra.cluster import build_cluster

    settings = _settings("lab")
    cluster = build_cluster(settings)
    model = load_cluster(REPO / "inventories" / "lab")
    assert sorted(cluster.nodes) == sorted(n.name for n in model.nodes)
    assert len(cluster.nodes) == 7
    for name, node in cluster.nodes.items():
        assert node._type == "gpufleet:baremetal:BareMetalNode"
        _check_node(node, name, {"boot", "power"})
    assert cluster.configure is None
    files_kids = {c._name for c in cluster.inventory._childResources}
    assert files_kids == {"lab-inventory-files"}
    assert cluster.plan._childResources == set()

    plan = plan_dict(model)

    def check(args: list[Any]) -> None:
        nodes, vips, digests, power, target, server = args
        assert set(nodes) == {n["name"] for n in plan["nodes"]}
        assert nodes["gpu1"]["interfaces"]["frontend"]["address"] == next(
            n["interfaces"]["frontend"]["address"] for n in plan["nodes"] if n["name"] == "gpu1"
        )
        assert vips == [
            {
                "name": "inference",
                "address": "198.18.1.5",
                "prefix": 24,
                "hostname": plan["vips"][0]["hostname"],
                "holders": ["lb1", "lb2"],
            }
        ]
        assert set(digests) == {"hosts.yml", "group_vars/all/gpufleet.yml"}
        assert power == "On"
        assert target == "Pxe"
        # one object per server, from the power resource's `system` and the boot target
        assert server == {
            "manufacturer": "Mock Inc.",
            "model": "HGX",
            "serial_number": "",
            "bios_version": "",
            "power_state": "On",
            "boot_target": "Pxe",
        }

    gpu1 = cluster.nodes["gpu1"]
    return pulumi.Output.all(
        cluster.plan.nodes,
        cluster.vips.vips,
        cluster.inventory.digests,
        gpu1.power_state,
        gpu1.boot_target,
        gpu1.server,
    ).apply(check)


@pulumi.runtime.test
def test_lab_resource_counts_and_order(mocks):
    from gpufleet.infra.cluster import build_cluster

    cluster = build_cluster(_settings("lab"))

    def check(_: Any) -> None:
        types = [a.typ for a in mocks.created]
        # two Redfish resources per server: the power resource reads the system's inventory
        assert not any("SystemInventory" in t for t in types)
        assert types.count("pulumi-python:dynamic/redfish:BootOverride") == 7
        assert types.count("pulumi-python:dynamic/redfish:PowerState") == 7
        assert types.count("pulumi-python:dynamic/inventory:InventoryFiles") == 1
        assert not any("BiosSettings" in t or "VirtualMedia" in t for t in types)
        files = next(a for a in mocks.created if a.typ.endswith("InventoryFiles")).inputs["files"]
        # same bytes as `gpufleet inventory`
        assert files == render_inventory(load_cluster(REPO / "inventories" / "lab"))
        boot = next(a for a in mocks.created if a.name == "gpu2-boot").inputs
        assert (boot["target"], boot["enabled"], boot["mode"]) == ("Pxe", "Once", "UEFI")
        assert boot["bmc"]["url"].endswith("/redfish/v1/Systems/gpu2")

    return _all_registered(cluster).apply(check)


@pulumi.runtime.test
def test_example_ib_bios_media_overrides(mocks):
    from gpufleet.infra.cluster import build_cluster

    settings = _settings(
        "example-ib",
        {
            "biosAttributes": {"ProcTurboMode": "Enabled"},
            "nodes": {
                "head01": {"bootTarget": "Hdd", "biosAttributes": {}},
                "gpu001": {"installerUrl": "https://198.18.0.1/debian-12.iso"},
            },
        },
    )
    cluster = build_cluster(settings)
    n = len(load_cluster(REPO / "inventories" / "example-ib").nodes)
    assert len(cluster.nodes) == n
    _check_node(cluster.nodes["gpu001"], "gpu001", {"media", "bios", "boot", "power"})
    _check_node(cluster.nodes["head01"], "head01", {"boot", "power"})
    _check_node(cluster.nodes["gpu002"], "gpu002", {"bios", "boot", "power"})

    def check(_: Any) -> None:
        types = [a.typ for a in mocks.created]
        assert types.count("pulumi-python:dynamic/redfish:BiosSettings") == n - 1
        assert types.count("pulumi-python:dynamic/redfish:VirtualMedia") == 1
        head = next(a for a in mocks.created if a.name == "head01-boot").inputs
        assert head["target"] == "Hdd"
        assert head["bmc"]["url"] == "https://10.0.0.11/redfish/v1/Systems/1"
        assert head["bmc"]["verify_tls"] is True

    return _all_registered(cluster).apply(check)


@pulumi.runtime.test
def test_no_password_in_any_resource(mocks):
    """Resources carry where the BMC password is, never the password, not even as a secret."""
    from gpufleet.infra.cluster import build_cluster

    cluster = build_cluster(_settings("lab"))
    redfish = [c for n in cluster.nodes.values() for c in n._childResources]
    assert len(redfish) == 14  # boot and power for each of the 7 servers

    def check(_: Any) -> None:
        created = [a for a in mocks.created if "redfish:" in a.typ]
        assert len(created) == 14
        for a in created:
            assert a.inputs["bmc"]["password_ref"] == {"env": "GPUFLEET_LAB_BMC_PASSWORD"}, a.name
            assert "password" not in a.inputs, a.name
        for a in mocks.created:
            assert LAB_PASSWORD not in repr(a.inputs), a.typ

    return _all_registered(cluster).apply(check)


@pulumi.runtime.test
def test_secret_config_password(mocks, tmp_path):
    from gpufleet.infra.cluster import build_cluster

    text = (REPO / "inventories" / "lab" / "cluster.yaml").read_text()
    text = text.replace(
        "password: {env: GPUFLEET_LAB_BMC_PASSWORD}", "password: {secret: bmcPassword}"
    )
    (tmp_path / "cluster.yaml").write_text(text)
    config = FakeConfig({"spec": str(tmp_path)}, secrets={"bmcPassword": "from-secret-config"})
    settings = load_settings(config, {}, PROJECT_DIR)
    assert settings.password_refs["gpu1"] == {"secret": "gpufleet-cluster:bmcPassword"}
    cluster = build_cluster(settings)
    assert settings.inventory_dir == tmp_path

    def check(_: Any) -> None:
        boot = next(a for a in mocks.created if a.name == "gpu1-boot").inputs
        assert boot["bmc"]["password_ref"] == {"secret": "gpufleet-cluster:bmcPassword"}
        assert "from-secret-config" not in repr([a.inputs for a in mocks.created])

    return _all_registered(cluster).apply(check)


@pulumi.runtime.test
def test_configure_component_when_enabled(mocks):
    from gpufleet.infra.cluster import build_cluster

    cluster = build_cluster(_settings("lab", {"configure": True}))
    assert cluster.configure is not None
    assert cluster.configure._type == "gpufleet:configure:Configure"
    kids = {c._name for c in cluster.configure._childResources}
    assert kids == {"lab-configure-run"}

    def check(_: Any) -> None:
        run = next(a for a in mocks.created if a.typ.endswith("configure:AnsibleRun")).inputs
        assert run["playbook"] == "site.yml"
        assert run["inventory"].endswith("inventories/lab/hosts.yml")
        assert len(run["triggers"]["content"]) == 64
        assert set(run["triggers"]["inventory"]) == {"hosts.yml", "group_vars/all/gpufleet.yml"}

    return cluster.configure.rc.apply(check)


# --- stack config: plain pytest with bad inputs ------------------------------------------------


def _problems(config: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    env = {"GPUFLEET_LAB_BMC_PASSWORD": "x"} if environ is None else environ
    with pytest.raises(UserError) as err:
        load_settings(FakeConfig(config), env, PROJECT_DIR)
    return str(err.value)


def test_config_missing_spec():
    assert "gpufleet-cluster:spec: not set" in _problems({})


def test_config_bad_spec_is_reported_by_the_spec_code(tmp_path):
    (tmp_path / "cluster.yaml").write_text("spec_version: 1\nnodes: []\n")
    text = _problems({"spec": str(tmp_path)})
    assert "site" in text and "nodes" in text


def test_config_env_password_missing_names_every_node():
    text = _problems({"spec": "../../inventories/lab"}, environ={})
    assert "nodes[gpu1].bmc.password: environment variable GPUFLEET_LAB_BMC_PASSWORD" in text
    assert text.count("GPUFLEET_LAB_BMC_PASSWORD is not set") == 7


def test_config_bad_values_all_reported():
    text = _problems(
        {
            "spec": "../../inventories/lab",
            "bootTarget": "Floppy",
            "powerState": "Sleeping",
            "powerTimeout": "-3",
            "bmcRetries": "many",
            "configure": "maybe",
            "nodes": {
                "gpu9": {},
                "gpu1": {"bootTarget": "Usb", "colour": "red"},
                "gpu2": {"reinstall": ""},
                "gpu3": {"reinstall": True},
            },
            "caBundle": "no-such-ca.pem",
        }
    )
    for needle in (
        "gpufleet-cluster:bootTarget: 'Floppy' is not valid (fix: use Pxe | UefiHttp | Cd | Hdd)",
        "gpufleet-cluster:powerState: 'Sleeping' is not valid",
        "gpufleet-cluster:powerTimeout: -3 is below 1",
        "gpufleet-cluster:bmcRetries: 'many' is not a number",
        "gpufleet-cluster:configure: 'maybe' is not true or false",
        "gpufleet-cluster:nodes.gpu9: no such node in the spec",
        "gpufleet-cluster:nodes.gpu1: unknown key colour",
        "gpufleet-cluster:nodes.gpu1.bootTarget: 'Usb' is not valid",
        "gpufleet-cluster:nodes.gpu2.reinstall: '' is not a token",
        "gpufleet-cluster:nodes.gpu3.reinstall: True is not a token",
        "gpufleet-cluster:caBundle:",
    ):
        assert needle in text, needle


def test_config_secret_reference_missing(tmp_path):
    text = (REPO / "inventories" / "lab" / "cluster.yaml").read_text()
    (tmp_path / "cluster.yaml").write_text(
        text.replace("{env: GPUFLEET_LAB_BMC_PASSWORD}", "{secret: bmcPassword}")
    )
    out = _problems({"spec": str(tmp_path)}, environ={})
    assert "secret bmcPassword is not set (fix: pulumi config set --secret bmcPassword)" in out


def test_defaults_match_pulumi_yaml():
    project = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())
    assert project["name"] == "gpufleet-cluster"
    declared = {k: v.get("default") for k, v in project["config"].items()}
    assert declared.pop("spec") is None
    assert declared == DEFAULTS


def test_stack_files_name_real_sites():
    for stack in ("lab", "example-ib"):
        data = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
        spec_dir = (PROJECT_DIR / data["gpufleet-cluster:spec"]).resolve()
        assert load_cluster(spec_dir).site.name == stack


# --- providers: check, diff, serialization (no BMC needed) ------------------------------------

BMC = {
    "node": "gpu1",
    "url": "https://10.0.0.11/redfish/v1/Systems/1",
    "username": "admin",
    "password_ref": {"env": "BMC_PW"},
    "verify_tls": True,
    "ca_bundle": None,
    "timeout": 30.0,
    "retries": 4,
    "backoff": 0.5,
}
CONN = {"bmc": BMC}
BOOT = {**CONN, "target": "Pxe", "enabled": "Once", "mode": "UEFI", "arm": ""}


def _bmc(**changes: Any) -> dict[str, Any]:
    return {"bmc": {**BMC, **changes}}


def test_boot_check_rejects_bad_inputs():
    bad = {**BOOT, **_bmc(url="ftp://x/y", retries=-1), "target": "Floppy", "enabled": "Always"}
    failures = pv.BootOverrideProvider().check({}, bad).failures
    assert sorted(f.property for f in failures) == ["bmc.retries", "bmc.url", "enabled", "target"]
    refs = ({"env": ""}, {"vault": "x"}, {"env": "A", "secret": "b"}, "hunter2")
    for ref in refs:
        failures = pv.BootOverrideProvider().check({}, {**BOOT, **_bmc(password_ref=ref)}).failures
        assert [f.property for f in failures] == ["bmc.password_ref"], ref
    flat = pv.BootOverrideProvider().check({}, {**BOOT, "bmc": "https://10.0.0.11"}).failures
    assert [f.property for f in flat] == ["bmc"]
    arm = pv.BootOverrideProvider().check({}, {**BOOT, "arm": 3}).failures
    assert [f.property for f in arm] == ["arm"]
    assert pv.BootOverrideProvider().check({}, BOOT).failures == []


def test_power_and_bios_and_media_checks():
    power = {**CONN, "state": "Dim", "off_action": "Pull", "power_timeout": 0, "poll_interval": 1}
    props = {f.property for f in pv.PowerStateProvider().check({}, power).failures}
    assert props == {"state", "off_action", "power_timeout"}
    bios = pv.BiosSettingsProvider().check({}, {**CONN, "attributes": {"A": [1]}}).failures
    assert [f.property for f in bios] == ["attributes"]
    media = pv.VirtualMediaProvider().check({}, {**CONN, "image": "file:///x.iso"}).failures
    assert [f.property for f in media] == ["image"]


def test_diff_reports_exactly_the_changed_properties():
    prov = pv.BootOverrideProvider()
    olds = {**BOOT, "previous": {"target": "Hdd"}, "__provider": "x"}
    assert prov.diff("id", olds, dict(BOOT)).changes is False
    one = prov.diff("id", olds, {**BOOT, "target": "Hdd"})
    assert one.changes is True and one.replaces == []
    moved = prov.diff("id", olds, {**BOOT, **_bmc(url="https://10.0.0.12/redfish/v1/Systems/1")})
    assert moved.replaces == ["bmc"]
    slower = prov.diff("id", olds, {**BOOT, **_bmc(timeout=60.0)})
    assert slower.changes is True and slower.replaces == []  # recorded, no BMC request
    unknown = prov.diff("id", olds, {**BOOT, "target": pv._UNKNOWN})
    assert unknown.changes is True
    # A state written before the connection became one object: the new shape is recorded
    # (an update that sends nothing to the BMC), nothing is replaced.
    flat = {**{k: v for k, v in BOOT.items() if k != "bmc"}, **BMC, "previous": {}}
    assert prov.diff("id", flat, dict(BOOT)).changes is True
    assert prov.diff("id", flat, dict(BOOT)).replaces == []


def test_bios_diff_only_named_attributes():
    prov = pv.BiosSettingsProvider()
    olds = {**CONN, "attributes": {"A": 1}, "current": {"A": 1}, "pending": {}}
    assert prov.diff("id", olds, {**CONN, "attributes": {"A": 1}}).changes is False
    assert prov.diff("id", olds, {**CONN, "attributes": {"A": 2}}).changes is True


def test_providers_survive_serialization():
    for cls in (
        pv.SystemInventoryProvider,
        pv.BootOverrideProvider,
        pv.PowerStateProvider,
        pv.BiosSettingsProvider,
        pv.VirtualMediaProvider,
    ):
        blob = serialize_provider(cls())
        raw = base64.b64decode(blob)
        assert b"gpufleet.infra.providers" in raw  # stored by reference, not by value
        assert len(raw) < 2000
        clone = dill.loads(raw)
        assert type(clone).__name__ == cls.__name__
        assert (
            clone.check(
                {},
                {
                    **BOOT,
                    "state": "On",
                    "off_action": "ForceOff",
                    "power_timeout": 5,
                    "poll_interval": 1,
                    "attributes": {"A": 1},
                    "image": "http://x/y.iso",
                },
            ).failures
            == []
        )


# --- configure helpers ---------------------------------------------------------------------------


def test_failure_summary_lists_failed_hosts_and_tasks():
    # constructed: ansible-runner event dicts trimmed to the fields the summary reads
    events = [
        {"event": "playbook_on_task_start", "event_data": {"task": "Install"}},
        {"event": "runner_on_ok", "event_data": {"host": "gpu1", "task": "Install"}},
        {
            "event": "runner_on_failed",
            "event_data": {"host": "gpu2", "task": "Install", "res": {"msg": "no package\nmore"}},
        },
        {
            "event": "runner_on_failed",
            "event_data": {"host": "gpu3", "task": "Probe", "ignore_errors": True, "res": {}},
        },
        {
            "event": "runner_on_unreachable",
            "event_data": {"host": "gpu4", "task": "Gather", "res": {"msg": "ssh timeout"}},
        },
    ]
    assert failure_summary(events) == [
        "gpu2: failed in task 'Install': no package",
        "gpu4: unreachable in task 'Gather': ssh timeout",
    ]


def test_content_digest_follows_content(tmp_path):
    (tmp_path / "roles" / "base" / "tasks").mkdir(parents=True)
    (tmp_path / "site.yml").write_text("---\n")
    task = tmp_path / "roles" / "base" / "tasks" / "main.yml"
    task.write_text("- name: a\n")
    first = content_digest(tmp_path)
    assert content_digest(tmp_path) == first
    task.write_text("- name: b\n")
    assert content_digest(tmp_path) != first
