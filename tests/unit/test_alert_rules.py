"""monitoring/: the Prometheus alert rules, their promtool unit tests, the Alertmanager example.

promtool and amtool come from scripts/bootstrap's promtool step (Debian 12's packages,
unpacked into the cache; the Makefile puts them on PATH). Without them these tests fail:
the rules are only as good as their tests.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_tools import tool
from roles_render import render_file, role_vars

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
RULES = MONITORING / "rules"
RULE_FILES = sorted(RULES.glob("*.yml"))
TEST_FILES = sorted((RULES / "tests").glob("*.yml"))
ALERTMANAGER = MONITORING / "alertmanager"
SEVERITIES = {"critical", "warning", "info"}


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


def _alerts(files: list[Path] = RULE_FILES) -> dict[str, dict[str, Any]]:
    alerts: dict[str, dict[str, Any]] = {}
    for path in files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["alert"] not in alerts, f"{path.name}: {rule['alert']} twice"
                    alerts[rule["alert"]] = rule
    return alerts


def _cases() -> list[tuple[str, dict[str, Any]]]:
    """(test file name, alert_rule_test entry) for every promtool alert case."""
    cases = []
    for path in TEST_FILES:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                cases.append((f"{path.name}: {group.get('name', '?')}", case))
    return cases


def test_there_are_rules_and_tests() -> None:
    assert RULE_FILES, "no rule files in monitoring/rules"
    assert TEST_FILES, "no promtool test files in monitoring/rules/tests"
    tested = set()
    for path in TEST_FILES:
        for rule_file in yaml.safe_load(path.read_text())["rule_files"]:
            target = (path.parent / rule_file).resolve()
            assert target.is_file(), f"{path.name}: rule file {rule_file} does not exist"
            tested.add(target)
    untested = [p.name for p in RULE_FILES if p.resolve() not in tested]
    assert not untested, f"rule files no promtool test file loads: {untested}"


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    result = _run(tool("promtool"), "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path) -> None:
    result = _run(tool("promtool"), "test", "rules", path.name, cwd=path.parent)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(_alerts()))
def test_alert_has_severity_and_annotations(name: str) -> None:
    rule = _alerts()[name]
    assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity label"
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "action"):
        assert annotations.get(key, "").strip(), f"{name}: no {key} annotation"
    for key in ("summary", "description"):
        assert "$labels.instance" in annotations[key], f"{name}: {key} does not name the node"
    if "xid" in name.lower():
        assert "$labels.code" in annotations["description"], f"{name}: description lacks the code"


@pytest.mark.parametrize("name", sorted(_alerts()))
def test_alert_is_tested_firing_and_quiet(name: str) -> None:
    """Each alert: a case where it fires (labels and annotations checked) and a quiet one."""
    firing, quiet = [], []
    for where, case in _cases():
        if case["alertname"] != name:
            continue
        expected = case.get("exp_alerts") or []
        (firing if expected else quiet).append(where)
        for alert in expected:
            assert "severity" in alert.get("exp_labels", {}), f"{where}: {name} without severity"
            assert set(alert.get("exp_annotations", {})) >= {"summary", "description", "action"}, (
                f"{where}: {name} fires without its annotations checked"
            )
    assert firing, f"{name}: no promtool case where it fires"
    assert quiet, f"{name}: no promtool case where it stays quiet"


def test_every_alert_is_documented() -> None:
    doc = (REPO / "docs" / "monitoring.md").read_text()
    missing = [name for name in _alerts() if f"`{name}`" not in doc]
    assert not missing, f"docs/monitoring.md does not list: {missing}"


# Mutation tests: break the rules in a copy and show the promtool tests notice.


def _mutate_rule(rules: list[dict[str, Any]], key: str, name: str, change: Any) -> None:
    for i, rule in enumerate(rules):
        if rule.get(key) == name:
            if change is None:
                del rules[i]
            else:
                change(rule)
            return
    raise AssertionError(f"no rule {key}={name}")


def _set(field: str, value: Any) -> Any:
    def change(rule: dict[str, Any]) -> None:
        if field == "severity":
            rule["labels"]["severity"] = value
        else:
            rule[field] = value

    return change


MUTATIONS = {
    # An alert deleted: its firing cases find nothing.
    "delete-alert": ("gpu.yml", "alert", "GpuXidFallenOffBus", None),
    # The naive Xid rule: fires forever on an old count (and on every reboot's history).
    "xid-on-value": (
        "gpu.yml",
        "record",
        "gpufleet:xid_events:new_15m",
        _set("expr", "gpufleet_xid_events_total > 0"),
    ),
    # The naive DCGM rule: the last-Xid gauge keeps it firing for hours.
    "dcgm-xid-on-value": (
        "dcgm.yml",
        "record",
        "gpufleet:dcgm_xid:new_15m",
        _set("expr", 'count_values without () ("code", DCGM_FI_DEV_XID_ERRORS != 0)'),
    ),
    "broken-expression": ("node.yml", "alert", "NodeDown", _set("expr", 'up{job="node"} == 1')),
    "wrong-severity": ("fabric.yml", "alert", "FabricManagerDown", _set("severity", "warning")),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_promtool_tests_catch_a_broken_rule(tmp_path: Path, mutation: str) -> None:
    rule_file, key, name, change = MUTATIONS[mutation]
    copy = tmp_path / "rules"
    shutil.copytree(RULES, copy)
    test_file = copy / "tests" / rule_file.replace(".yml", "_test.yml")
    promtool = tool("promtool")
    baseline = _run(promtool, "test", "rules", test_file.name, cwd=test_file.parent)
    assert baseline.returncode == 0, baseline.stdout + baseline.stderr
    doc = yaml.safe_load((copy / rule_file).read_text())
    for group in doc["groups"]:
        if any(rule.get(key) == name for rule in group["rules"]):
            _mutate_rule(group["rules"], key, name, change)
    (copy / rule_file).write_text(yaml.safe_dump(doc, sort_keys=False))
    assert _run(promtool, "check", "rules", copy / rule_file).returncode == 0
    mutated = _run(promtool, "test", "rules", test_file.name, cwd=test_file.parent)
    assert mutated.returncode != 0, f"{mutation}: promtool tests still pass\n{mutated.stdout}"
    assert "FAILED" in mutated.stdout + mutated.stderr


# Alertmanager: the configuration roles/alertmanager writes, and its routes.


@pytest.fixture(scope="module")
def alertmanager_yml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """roles/alertmanager's alertmanager.yml, rendered with its defaults and a webhook for
    every severity, as the role writes it."""
    variables = {
        **role_vars("alertmanager"),
        "inventory_hostname": "mon01",
        "alertmanager_webhooks": {
            sev: [f"http://127.0.0.1:9095/{sev}"] for sev in ("critical", "warning", "info")
        },
    }
    template = REPO / "roles/alertmanager/templates/etc/prometheus/alertmanager.yml.j2"
    path = tmp_path_factory.mktemp("alertmanager") / "alertmanager.yml"
    path.write_text(render_file(variables, template))
    return path


def _route_cases() -> list[str]:
    path = ALERTMANAGER / "routes-test.txt"
    lines = path.read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def test_amtool_check_config(alertmanager_yml: Path) -> None:
    result = _run(tool("amtool"), "check-config", alertmanager_yml)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_receiver_is_routed_to(alertmanager_yml: Path) -> None:
    config = yaml.safe_load(alertmanager_yml.read_text())
    receivers = {r["name"] for r in config["receivers"]}
    tested = {line.split()[0] for line in _route_cases()}
    assert receivers == tested, f"receivers {receivers}, route cases for {tested}"
    # Every notification also goes out on resolution.
    hooks = [w for r in config["receivers"] for w in r.get("webhook_configs", [])]
    assert len(hooks) == 3 and all(w["send_resolved"] for w in hooks)


@pytest.mark.parametrize("line", _route_cases())
def test_amtool_routes(line: str, alertmanager_yml: Path) -> None:
    receiver, *labels = line.split()
    result = _run(
        tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={alertmanager_yml}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, f"{line}: {result.stdout}{result.stderr}"


def test_severities_of_the_rules_all_have_a_route(alertmanager_yml: Path) -> None:
    """Every severity the rules use reaches the receiver of that name (warning is also the
    default route)."""
    used = {rule["labels"]["severity"] for rule in _alerts().values()}
    assert used == {"critical", "warning", "info"}, used
    for severity in sorted(used):
        result = _run(tool("amtool"), "config", "routes", "test",
                      f"--config.file={alertmanager_yml}", f"--verify.receivers={severity}",
                      f"severity={severity}", "alertname=Any")  # fmt: skip
        assert result.returncode == 0, f"{severity}: {result.stdout}{result.stderr}"
