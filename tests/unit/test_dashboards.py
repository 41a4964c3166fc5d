"""monitoring/dashboards: the Grafana dashboards' structure, their queries, and PromQL syntax.

Each query's syntax is checked with promtool (scripts/bootstrap's promtool step; the Makefile
puts it on PATH): promtool 2.42 has no command that only parses PromQL, so the queries go into
a temporary rule file for `promtool check rules`. Metric names are checked against what the
lab exports (panels marked hardware-only: against the DCGM counters roles/dcgm enables and
node_exporter's InfiniBand names), so a typo fails here rather than as an empty panel.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_tools import tool

from gpufleet import dashboards
from gpufleet.dashboards import PanelQuery
from gpufleet.errors import UserError

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "monitoring" / "dashboards"
FILES = sorted(DASHBOARDS.glob("*.json"))
DCGM_COUNTERS = REPO / "roles/dcgm/templates/etc/dcgm-exporter/gpufleet-counters.csv.j2"

# file: (uid, panels, queries, hardware-only panels)
EXPECTED = {
    "fleet-overview.json": ("gpufleet-fleet", 11, 15, 0),
    "node-gpu.json": ("gpufleet-node-gpu", 10, 19, 6),
    "fabric.json": ("gpufleet-fabric", 7, 11, 6),
}
INSTANCE_QUERY = 'label_values(up{job="node"}, instance)'

# What the lab's Prometheus has (container nodes, no GPU, an Ethernet fabric): a panel
# without the hardware-only marker may use only these.
LAB_METRICS = {
    "up",
    "ALERTS",
    "node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemTotal_bytes",
    "node_filesystem_avail_bytes",
    "node_filesystem_size_bytes",
    "node_timex_offset_seconds",
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_load1",
    "gpufleet_node_health_ok",
    "gpufleet_node_health_check_ok",
    "gpufleet_node_health_last_run_timestamp_seconds",
    "gpufleet_node_health_duration_seconds",
    "gpufleet_gpu_count",
    "gpufleet_gpu_expected_count",
    "gpufleet_xid_events_total",
    "gpufleet_gpu_ecc_uncorrectable_volatile",
    "gpufleet_gpu_row_remap_pending",
    "gpufleet_gpu_row_remap_failure",
    "gpufleet_gpu_pcie_link_gen_current",
    "gpufleet_gpu_pcie_link_gen_max",
    "gpufleet_gpu_pcie_link_width_current",
    "gpufleet_gpu_pcie_link_width_max",
    "gpufleet_version_drift",
}
# Hardware-only sources besides DCGM: the health check's fabric metrics (docs/monitoring.md)
# and node_exporter's infiniband collector (collector/infiniband_linux.go).
HARDWARE_METRICS = {
    "gpufleet_fabric_ports_active",
    "gpufleet_fabric_ports_expected",
    "gpufleet_fabricmanager_active",
    "gpufleet_gpu_nvlink_links_down",
    "node_infiniband_state_id",
    "node_infiniband_physical_state_id",
    "node_infiniband_port_data_received_bytes_total",
    "node_infiniband_port_data_transmitted_bytes_total",
    "node_infiniband_link_downed_total",
    "node_infiniband_symbol_error_total",
}


def _dcgm_metrics() -> set[str]:
    """The DCGM fields roles/dcgm's counters file has dcgm-exporter export."""
    return set(re.findall(r"^(DCGM_FI_\w+)\s*,", DCGM_COUNTERS.read_text(), re.M))


RECORD = "gpufleet_dashboard_query"


def _check_rules(tmp_path: Path, queries: list[PanelQuery]) -> subprocess.CompletedProcess[str]:
    """promtool check rules on a file with each query (variables substituted) as a
    recording rule in a group named after its dashboard, panel and refId."""
    groups = [
        {
            "name": f"{q.dashboard} / {q.panel} / {q.ref_id}",
            "rules": [{"record": RECORD, "expr": dashboards.lab_query(q.expr, "gpu1")}],
        }
        for q in queries
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000))
    return subprocess.run(
        [tool("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _all() -> list[PanelQuery]:
    return dashboards.all_queries(DASHBOARDS)


# ---------------------------------------------------------------- the dashboards


def test_the_three_dashboards_are_there() -> None:
    assert [p.name for p in FILES] == sorted(EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_dashboard_loads_without_problems(path: Path) -> None:
    dashboard = dashboards.load(path)
    assert dashboards.problems(dashboard) == []
    uid, panels, queries, hardware = EXPECTED[path.name]
    assert dashboard["uid"] == uid
    assert dashboard["schemaVersion"] == 39
    assert dashboard.get("id") is None, "provisioned dashboards carry no database id"
    found = dashboards.panel_queries(dashboard)
    titles = {q.panel for q in found}
    assert len(dashboard["panels"]) == panels == len(titles)
    assert len(found) == queries
    assert len({q.panel for q in found if q.hardware_only}) == hardware
    assert all(q.dashboard == uid for q in found)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_instance_variable(path: Path) -> None:
    """Per-node dashboards pick the node from node_exporter's targets; the fleet has none."""
    dashboard = dashboards.load(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    exprs = " ".join(q.expr for q in dashboards.panel_queries(dashboard))
    if path.name == "fleet-overview.json":
        assert set(variables) == {"datasource"}
        return
    assert set(variables) == {"datasource", "instance"}
    instance = variables["instance"]
    assert instance["type"] == "query"
    assert instance["definition"] == instance["query"] == INSTANCE_QUERY
    assert instance["datasource"] == dashboards.DATASOURCE
    assert "$instance" in exprs


def test_panels_describe_what_bad_looks_like() -> None:
    for path in FILES:
        for panel in dashboards.load(path)["panels"]:
            assert " bad" in panel["description"] or "Bad" in panel["description"], (
                f"{path.name}: {panel['title']!r}: say what a bad value means"
            )


def test_all_queries_reads_every_file_and_uids_are_unique() -> None:
    queries = _all()
    assert len(queries) == sum(n for _, _, n, _ in EXPECTED.values())
    assert {q.dashboard for q in queries} == {uid for uid, *_ in EXPECTED.values()}


def test_alert_panels_return_a_series_when_nothing_fires() -> None:
    """ALERTS only exists while an alert is pending or firing."""
    for q in _all():
        if "ALERTS" in dashboards.metric_names(q.expr):
            assert "or on () vector(0)" in q.expr, f"{q.panel}: empty when nothing fires"


def test_lab_panels_use_only_metrics_the_lab_exports() -> None:
    for q in _all():
        if q.hardware_only:
            continue
        unknown = dashboards.metric_names(q.expr) - LAB_METRICS
        assert not unknown, (
            f"{q.dashboard} / {q.panel} / {q.ref_id}: {sorted(unknown)} not in the lab "
            f"(a typo, or a hardware-only panel without {dashboards.HARDWARE_KEY})"
        )


def test_hardware_panels_name_a_metric_they_use_and_need_hardware() -> None:
    known = LAB_METRICS | HARDWARE_METRICS | _dcgm_metrics()
    by_panel: dict[tuple[str, str], set[str]] = {}
    markers: dict[tuple[str, str], str] = {}
    for q in _all():
        if q.hardware_only:
            key = (q.dashboard, q.panel)
            by_panel.setdefault(key, set()).update(dashboards.metric_names(q.expr))
            markers[key] = q.hardware_only
    assert by_panel
    for key, names in by_panel.items():
        marker = markers[key].split()[0]
        assert marker in names, f"{key}: the marker names {marker}, which no query uses"
        assert names - LAB_METRICS, f"{key}: every metric is in the lab; drop the marker"
        assert names <= known, f"{key}: unknown metrics {sorted(names - known)}"


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    result = _check_rules(tmp_path, _all())
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_catches_a_broken_query(tmp_path: Path) -> None:
    """The check above can fail: an unbalanced parenthesis does."""
    broken = PanelQuery("uid", "broken", "A", 'sum(up{instance="$instance"}', None)
    result = _check_rules(tmp_path, [broken])
    assert result.returncode != 0
    assert "uid / broken / A" in result.stdout + result.stderr


# Lab-like series (labels as roles/prometheus sets them) for promtool's evaluator: each
# query of a panel not marked hardware-only must return something from a healthy GPU node.
LAB_LABELS = 'job="node", instance="gpu1", role="gpu"'
GPU = 'gpu="00000000:18:00.0"'
LAB_SERIES = {
    "up": "1x20",
    "gpufleet_node_health_ok": "1x20",
    'gpufleet_node_health_check_ok{check="gpus"}': "1x20",
    "gpufleet_node_health_last_run_timestamp_seconds": "0+30x20",
    "gpufleet_node_health_duration_seconds": "2x20",
    "gpufleet_gpu_count": "8x20",
    "gpufleet_gpu_expected_count": "8x20",
    'gpufleet_xid_events_total{code="48"}': "0x20",
    f"gpufleet_gpu_ecc_uncorrectable_volatile{{{GPU}}}": "0x20",
    f"gpufleet_gpu_row_remap_pending{{{GPU}}}": "0x20",
    f"gpufleet_gpu_row_remap_failure{{{GPU}}}": "0x20",
    f"gpufleet_gpu_pcie_link_gen_current{{{GPU}}}": "5x20",
    f"gpufleet_gpu_pcie_link_gen_max{{{GPU}}}": "5x20",
    f"gpufleet_gpu_pcie_link_width_current{{{GPU}}}": "16x20",
    f"gpufleet_gpu_pcie_link_width_max{{{GPU}}}": "16x20",
    "gpufleet_version_drift": "0x20",
    'node_filesystem_avail_bytes{fstype="ext4", mountpoint="/", device="/dev/sda1"}': "50x20",
    'node_filesystem_size_bytes{fstype="ext4", mountpoint="/", device="/dev/sda1"}': "100x20",
    "node_timex_offset_seconds": "0.001x20",
    'node_network_receive_bytes_total{device="eth0"}': "0+1000x20",
    'node_network_transmit_bytes_total{device="eth0"}': "0+1000x20",
}


def _with_labels(series: str) -> str:
    name, _, rest = series.partition("{")
    extra = rest.rstrip("}")
    return f"{name}{{{LAB_LABELS}{', ' + extra if extra else ''}}}"


def test_lab_queries_return_a_series_on_lab_like_data(tmp_path: Path) -> None:
    """promtool evaluates each lab query (on gpu1, 10 minutes in) over the series above:
    a wrong label match or filter that empties a panel fails here before the lab does."""
    queries = [q for q in _all() if not q.hardware_only]
    cases = [
        {
            "expr": f"count({dashboards.lab_query(q.expr, 'gpu1')}) > bool 0",
            "eval_time": "10m",
            "exp_samples": [{"labels": "{}", "value": 1}],
        }
        for q in queries
    ]
    series = [{"series": _with_labels(k), "values": v} for k, v in LAB_SERIES.items()]
    test = {
        "rule_files": [],
        "evaluation_interval": "30s",
        "tests": [{"interval": "30s", "input_series": series, "promql_expr_test": cases}],
    }
    path = tmp_path / "lab_test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False, width=1000))
    result = subprocess.run(
        [tool("promtool"), "test", "rules", path.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_lists_the_queries(capsys: pytest.CaptureFixture[str]) -> None:
    assert dashboards.main([str(DASHBOARDS), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == len(_all())
    assert dashboards.main([str(DASHBOARDS)]) == 0
    assert "DCGM_FI_DEV_GPU_UTIL" in capsys.readouterr().out


def test_cli_bad_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dashboards.main([str(tmp_path)]) == 2
    assert "no *.json dashboards" in capsys.readouterr().err
    (tmp_path / "a.json").write_text(json.dumps(_good()))
    (tmp_path / "b.json").write_text(json.dumps(_good()))
    assert dashboards.main([str(tmp_path)]) == 2
    assert "uid 'constructed' is also the uid of" in capsys.readouterr().err


# ---------------------------------------------------------------- load


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing\.json: no such file"):
        dashboards.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"uid": "x",\n  "panels": [}\n')
    with pytest.raises(UserError, match=r"bad\.json:2:\d+: not valid JSON"):
        dashboards.load(bad)
    bad.write_text("[]")
    with pytest.raises(UserError, match=r"bad\.json: not a JSON object"):
        dashboards.load(bad)


# ---------------------------------------------------------------- constructed dashboards

DS = dict(dashboards.DATASOURCE)


def _panel(title: str, x: int, y: int, expr: str = "up", ref: str = "A") -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "description": "what it shows; bad when it is 0",
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": 12, "h": 4},
        "targets": [{"datasource": DS, "refId": ref, "expr": expr}],
    }


def _good() -> dict[str, Any]:
    """Constructed: the smallest dashboard without problems."""
    return {
        "uid": "constructed",
        "title": "constructed",
        "schemaVersion": 39,
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {"name": "instance", "type": "query", "query": INSTANCE_QUERY},
            ]
        },
        "panels": [
            _panel("left", 0, 0, 'up{instance="$instance"}'),
            _panel("right", 12, 0, "rate(node_cpu_seconds_total[$__rate_interval])"),
        ],
    }


def _set(path: str, value: Any) -> Any:
    """A mutation: set the dotted path (list indices as numbers); None deletes it."""

    def mutate(dashboard: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = dashboard
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if value is None:
            del node[key]
        else:
            node[key] = value

    return mutate


BAD = {
    # name of the constructed dashboard: (mutation, expected problem)
    "no uid": (_set("uid", None), "dashboard has no uid"),
    "uid too long": (_set("uid", "x" * 41), "is longer than 40 characters"),
    "no datasource variable": (
        _set("templating.list.0", {"name": "datasource", "type": "custom", "query": "a"}),
        "no template variable 'datasource' of type datasource",
    ),
    "variable twice": (
        _set("templating.list.0.name", "instance"),
        "template variable 'instance' defined 2 times",
    ),
    "same title twice": (_set("panels.1.title", "left"), "panel title 'left' used 2 times"),
    "no title": (_set("panels.1.title", None), "panel #2: no title"),
    "no description": (_set("panels.1.description", ""), "panel 'right': no description"),
    "no type": (_set("panels.1.type", None), "panel 'right': no type"),
    "no gridPos": (_set("panels.1.gridPos", None), "panel 'right': no gridPos"),
    "gridPos not integers": (_set("panels.1.gridPos.w", "12"), "panel 'right': no gridPos"),
    "off the grid": (_set("panels.1.gridPos.x", 13), "is outside the 24-column grid"),
    "overlapping panels": (_set("panels.1.gridPos.x", 6), "panels 'left' and 'right' overlap"),
    "no targets": (_set("panels.1.targets", []), "panel 'right': no targets"),
    "target without expr": (_set("panels.1.targets.0.expr", None), "target A: no expr"),
    "target without refId": (_set("panels.1.targets.0.refId", None), "target 1: no refId"),
    "refId twice": (
        _set("panels.1.targets", _panel("r", 0, 0)["targets"] * 2),
        "panel 'right': refId A used 2 times",
    ),
    "hard-coded target datasource": (
        _set("panels.1.targets.0.datasource", {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}),
        "panel 'right': target A: datasource must be",
    ),
    "hard-coded panel datasource": (
        _set("panels.1.datasource", {"type": "prometheus", "uid": "prom"}),
        "panel 'right': datasource must be",
    ),
    "undefined variable": (
        _set("panels.1.targets.0.expr", 'up{instance="${node}"}'),
        "target A: $node is not a template variable (defined: datasource, instance)",
    ),
    "built-in lab_query cannot substitute": (
        _set("panels.1.targets.0.expr", "up offset $__range_s"),
        "$__range_s is not a template variable",
    ),
    "hardware marker names an unused metric": (
        _set("panels.1.gpufleetHardwareOnly", "DCGM_FI_DEV_GPU_UTIL (dcgm-exporter)"),
        "starts with 'DCGM_FI_DEV_GPU_UTIL', which no query of the panel uses",
    ),
    "empty hardware marker": (
        _set("panels.1.gpufleetHardwareOnly", " "),
        "gpufleetHardwareOnly must name the metric it needs",
    ),
}


def test_constructed_good_dashboard_has_no_problems() -> None:
    assert dashboards.problems(_good()) == []


@pytest.mark.parametrize("name", sorted(BAD))
def test_constructed_bad_dashboard(name: str) -> None:
    mutate, expected = BAD[name]
    dashboard = copy.deepcopy(_good())
    mutate(dashboard)
    found = dashboards.problems(dashboard)
    assert any(expected in line for line in found), f"{name}: {expected!r} not in {found}"


def test_constructed_rows_nest_panels() -> None:
    """Constructed "collapsed row": its panels are walked, checked among themselves, and the
    row itself needs no description or targets."""
    dashboard = _good()
    row = {"type": "row", "title": "details", "collapsed": True}
    row["gridPos"] = {"x": 0, "y": 4, "w": 24, "h": 1}
    row["panels"] = [_panel("inner", 0, 5, "node_load1", "B")]
    dashboard["panels"].append(row)
    assert dashboards.problems(dashboard) == []
    queries = dashboards.panel_queries(dashboard)
    assert [(q.panel, q.ref_id, q.expr) for q in queries][-1] == ("inner", "B", "node_load1")
    assert len(queries) == 3
    row["panels"].append(_panel("inner overlap", 6, 5))
    assert "panels 'inner' and 'inner overlap' overlap" in dashboards.problems(dashboard)
    second = copy.deepcopy(row)
    second["title"], second["gridPos"]["y"] = "more", 9
    second["panels"] = [_panel("other row", 0, 5, "node_load1")]
    dashboard["panels"].append(second)
    assert not any("'other row'" in line for line in dashboards.problems(dashboard)), (
        "two collapsed rows' panels are separate grids"
    )
    row.pop("title")
    assert "panel #3: no title" in dashboards.problems(dashboard)


def test_constructed_hardware_marker_reaches_the_query() -> None:
    dashboard = _good()
    dashboard["panels"][1]["targets"][0]["expr"] = 'DCGM_FI_DEV_GPU_UTIL{instance="$instance"}'
    dashboard["panels"][1][dashboards.HARDWARE_KEY] = "DCGM_FI_DEV_GPU_UTIL (dcgm-exporter)"
    assert dashboards.problems(dashboard) == []
    marks = [q.hardware_only for q in dashboards.panel_queries(dashboard)]
    assert marks == [None, "DCGM_FI_DEV_GPU_UTIL (dcgm-exporter)"]


# ---------------------------------------------------------------- lab_query, metric_names


def test_lab_query_substitutes_the_variables() -> None:
    expr = (
        'increase(x{instance="$instance"}[$__range]) + rate(y{instance="${instance}"}'
        "[$__rate_interval]) + z[${__interval}]"
    )
    assert dashboards.lab_query(expr, "gpu1") == (
        'increase(x{instance="gpu1"}[1h]) + rate(y{instance="gpu1"}[2m]) + z[1m]'
    )


def test_lab_query_leaves_regex_references_and_rejects_unknown_variables() -> None:
    expr = 'label_replace(up, "node", "$1", "instance", "(.*)")'
    assert dashboards.lab_query(expr, "gpu1") == expr
    with pytest.raises(ValueError, match=r"\$cluster: lab_query knows only"):
        dashboards.lab_query('up{cluster="$cluster"}', "gpu1")


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum(up{job="node"} == bool 0)', {"up"}),
        (
            'count by (severity) (ALERTS{alertstate="firing"}) or on () vector(0)',
            {"ALERTS"},
        ),
        (
            "time() - gpufleet_node_health_last_run_timestamp_seconds",
            {"gpufleet_node_health_last_run_timestamp_seconds"},
        ),
        (
            "sum by (instance, code) (increase(gpufleet_xid_events_total[1h] offset 5m))",
            {"gpufleet_xid_events_total"},
        ),
        (
            'label_replace(a:b_c, "x", "$1 and up", "y", "(.*)") * on (x) group_left (z) d',
            {"a:b_c", "d"},
        ),
        ("sum(x) without (gpu) > 1e3 unless ignoring (le) y", {"x", "y"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert dashboards.metric_names(expr) == names
