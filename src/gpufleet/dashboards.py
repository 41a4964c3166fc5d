"""Grafana dashboards under monitoring/dashboards: structure checks and the queries they send.

A dashboard is Grafana's JSON model (schemaVersion 39). `problems` checks what Grafana
itself does not (titles, descriptions, the `${datasource}` variable, overlapping panels,
variables an expression uses but nothing defines); `panel_queries` lists every PromQL
expression with the panel it belongs to, so that the lab can send each one, through
`lab_query`, to a live Prometheus. A panel whose metrics only exist on hardware carries
`"gpufleetHardwareOnly": "<metric> (<where it comes from>)"` (Grafana ignores the key).

`python -m gpufleet.dashboards [DIR] [--json]` prints the queries of every dashboard in DIR
(default monitoring/dashboards); bad dashboards print one line per problem and exit 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gpufleet.errors import Problem, UserError

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
HARDWARE_KEY = "gpufleetHardwareOnly"
GRID_COLUMNS = 24
UID_MAX = 40  # Grafana refuses longer dashboard uids.

# Grafana's built-in variables, as lab_query replaces them for an instant query.
# $__rate_interval: Grafana's own value for the 30 s scrape interval (roles/prometheus'
# default), four scrape intervals, so that rate() always has two samples or more.
LAB_BUILTINS = {"__rate_interval": "2m", "__range": "1h", "__interval": "1m"}

# $name or ${name} (${name:format} too); $1 in a label_replace string is not a variable.
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_]\w*)(?::\w+)?\}|([A-Za-z_]\w*))")

# For metric_names: what in PromQL is not a metric name.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?![\w:])(\s*\()?")
_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "atan2", "inf", "nan",
}  # fmt: skip


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel: what the lab sends to Prometheus."""

    dashboard: str  # the dashboard's uid
    panel: str  # the panel's title
    ref_id: str
    expr: str  # as in the dashboard, variables and all
    hardware_only: str | None  # the panel's gpufleetHardwareOnly marker, if any


def load(path: str | Path) -> dict[str, Any]:
    """The dashboard JSON in `path`; UserError naming the file and the fix otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError([Problem(str(path), "no such file")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError([Problem(str(path), f"cannot read it: {err}")]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        where = f"{path}:{err.lineno}:{err.colno}"
        hint = "export it again from Grafana (Share > Export > Save to file)"
        raise UserError([Problem(where, f"not valid JSON: {err.msg}", hint)]) from None
    if not isinstance(data, dict):
        hint = "a dashboard file holds one JSON object, the dashboard model"
        raise UserError([Problem(str(path), "not a JSON object", hint)])
    return data


def _panels(container: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(group, panel) for every panel, rows' nested panels included, in order; the panels
    of one group (the dashboard's own, or one collapsed row's) share a grid."""
    groups = 0

    def walk(items: Any) -> Iterator[tuple[int, dict[str, Any]]]:
        nonlocal groups
        group = groups
        groups += 1
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                yield group, item
                if "panels" in item:
                    yield from walk(item["panels"])

    yield from walk(container.get("panels"))


def _is_row(panel: dict[str, Any]) -> bool:
    return panel.get("type") == "row"


def _targets(panel: dict[str, Any]) -> list[dict[str, Any]]:
    targets = panel.get("targets")
    return [t for t in targets if isinstance(t, dict)] if isinstance(targets, list) else []


def _hardware_only(panel: dict[str, Any]) -> str | None:
    marker = panel.get(HARDWARE_KEY)
    return marker if isinstance(marker, str) and marker.strip() else None


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    """Every target with an expression, in panel order (rows' nested panels included)."""
    uid = str(dashboard.get("uid", ""))
    queries = []
    for _, panel in _panels(dashboard):
        if _is_row(panel):
            continue
        for target in _targets(panel):
            expr = target.get("expr")
            if isinstance(expr, str) and expr.strip():
                queries.append(
                    PanelQuery(
                        dashboard=uid,
                        panel=str(panel.get("title", "")),
                        ref_id=str(target.get("refId", "")),
                        expr=expr,
                        hardware_only=_hardware_only(panel),
                    )
                )
    return queries


def variables_used(expr: str) -> list[str]:
    """The variable names an expression uses ($x and ${x}), in order, without repeats."""
    names = (m.group(1) or m.group(2) for m in _VARIABLE.finditer(expr))
    return list(dict.fromkeys(names))


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords).

    A lexical scan, enough for dashboard queries: strings, label matchers, ranges and
    grouping label lists are dropped, then every bare identifier not called is a metric.
    """
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)  # `sum by (a) (x)`: sum is then seen as called
    names = set()
    for match in _NAME.finditer(text):
        name, called = match.group(1), match.group(2)
        if not called and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def _grid(panel: dict[str, Any]) -> tuple[int, int, int, int] | None:
    pos = panel.get("gridPos")
    if not isinstance(pos, dict):
        return None
    values = [pos.get(k) for k in ("x", "y", "w", "h")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    x, y, w, h = (int(v) for v in values)  # type: ignore[arg-type]
    return x, y, w, h


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def _template_names(dashboard: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(defined variable names, problems with the variables)."""
    templating = dashboard.get("templating")
    items = templating.get("list") if isinstance(templating, dict) else None
    variables = [v for v in items if isinstance(v, dict)] if isinstance(items, list) else []
    names = [str(v.get("name", "")) for v in variables]
    found = []
    for name, count in Counter(names).items():
        if count > 1:
            found.append(f"template variable {name!r} defined {count} times")
    source = [v for v in variables if v.get("name") == "datasource"]
    wanted = {"type": "datasource", "query": "prometheus"}
    if not source or any(source[0].get(k) != v for k, v in wanted.items()):
        found.append(
            "no template variable 'datasource' of type datasource with query prometheus "
            "(fix: add it, so that each site picks its own Prometheus)"
        )
    return names, found


def problems(dashboard: dict[str, Any]) -> list[str]:
    """What is wrong with a dashboard, one line each; empty when it is fine."""
    found: list[str] = []
    uid = dashboard.get("uid")
    if not isinstance(uid, str) or not uid.strip():
        found.append('dashboard has no uid (fix: set a stable "uid", e.g. gpufleet-<name>)')
    elif len(uid) > UID_MAX:
        found.append(f"uid {uid!r} is longer than {UID_MAX} characters")
    defined, variable_problems = _template_names(dashboard)
    found += variable_problems
    known = set(defined) | set(LAB_BUILTINS)

    panels = list(_panels(dashboard))
    titles = Counter(
        p.get("title") for _, p in panels if not _is_row(p) and isinstance(p.get("title"), str)
    )
    for title, count in titles.items():
        if count > 1:
            found.append(f"panel title {title!r} used {count} times (fix: make titles unique)")

    placed: dict[int, list[tuple[str, tuple[int, int, int, int]]]] = {}
    for index, (group, panel) in enumerate(panels):
        title = panel.get("title")
        label = repr(title) if isinstance(title, str) and title.strip() else f"#{index + 1}"
        required = ("title",) if _is_row(panel) else ("title", "description", "type")
        for field in required:
            value = panel.get(field)
            if not (isinstance(value, str) and value.strip()):
                found.append(f"panel {label}: no {field}")
        grid = _grid(panel)
        if grid is None:
            found.append(f"panel {label}: no gridPos with integers x, y, w and h")
        else:
            x, y, w, h = grid
            if x < 0 or y < 0 or w < 1 or h < 1 or x + w > GRID_COLUMNS:
                found.append(f"panel {label}: gridPos {grid} is outside the 24-column grid")
            for other, other_grid in placed.get(group, []):
                if _overlap(grid, other_grid):
                    found.append(f"panels {other} and {label} overlap")
            placed.setdefault(group, []).append((label, grid))
        if _is_row(panel):
            continue
        panel_source = panel.get("datasource")
        if panel_source is not None and panel_source != DATASOURCE:
            found.append(f"panel {label}: datasource must be {json.dumps(DATASOURCE)}")
        targets = _targets(panel)
        marker = _hardware_only(panel)
        if HARDWARE_KEY in panel and marker is None:
            found.append(f"panel {label}: {HARDWARE_KEY} must name the metric it needs")
        elif marker is not None:
            used = set().union(*(metric_names(str(t.get("expr", ""))) for t in targets))
            if marker.split()[0] not in used:
                found.append(
                    f"panel {label}: {HARDWARE_KEY} starts with {marker.split()[0]!r}, "
                    "which no query of the panel uses"
                )
        if not targets:
            found.append(f"panel {label}: no targets")
        refs = Counter(str(t.get("refId", "")) for t in targets if t.get("refId"))
        for ref_id, count in refs.items():
            if count > 1:
                found.append(f"panel {label}: refId {ref_id} used {count} times")
        for number, target in enumerate(targets, 1):
            ref = target.get("refId")
            has_ref = isinstance(ref, str) and bool(ref.strip())
            where = f"panel {label}: target {ref if has_ref else number}"
            if not has_ref:
                found.append(f"{where}: no refId")
            if target.get("datasource") != DATASOURCE:
                found.append(f"{where}: datasource must be {json.dumps(DATASOURCE)}")
            expr = target.get("expr")
            if not (isinstance(expr, str) and expr.strip()):
                found.append(f"{where}: no expr")
                continue
            listed = ", ".join(sorted(defined)) or "none"
            for name in variables_used(expr):
                if name not in known:
                    message = f"${name} is not a template variable (defined: {listed})"
                    found.append(f"{where}: {message}")
    return found


def lab_query(expr: str, instance: str) -> str:
    """The expression as Grafana would send it, for one node: $instance is `instance`,
    $__rate_interval 2m, $__interval 1m, $__range 1h. ValueError for any other variable."""
    values = {"instance": instance, **LAB_BUILTINS}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise ValueError(f"${name}: lab_query knows only {', '.join(sorted(values))}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def all_queries(directory: str | Path) -> list[PanelQuery]:
    """The queries of every *.json dashboard in `directory`, by file name; UserError listing
    every problem (of every file) when a dashboard is bad or two share a uid."""
    directory = Path(directory)
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise UserError([Problem(str(directory), "no *.json dashboards here")])
    found: list[Problem] = []
    queries: list[PanelQuery] = []
    owners: dict[str, Path] = {}
    for path in paths:
        try:
            dashboard = load(path)
        except UserError as err:
            found += err.problems
            continue
        found += [Problem(str(path), message) for message in problems(dashboard)]
        uid = str(dashboard.get("uid", ""))
        if uid and uid in owners:
            found.append(Problem(str(path), f"uid {uid!r} is also the uid of {owners[uid]}"))
        owners.setdefault(uid, path)
        queries += panel_queries(dashboard)
    if found:
        raise UserError(found, title=f"{directory}: bad dashboards")
    return queries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="List every panel query of the dashboards.")
    parser.add_argument("directory", nargs="?", default="monitoring/dashboards")
    parser.add_argument("--json", action="store_true", help="one JSON list, for machines")
    args = parser.parse_args(argv)
    try:
        queries = all_queries(args.directory)
    except UserError as err:
        print(err.render(), file=sys.stderr)
        return err.exit_code
    if args.json:
        print(json.dumps([asdict(q) for q in queries], indent=2))
        return 0
    table = Table("dashboard", "panel", "ref", "hardware")
    table.add_column("expr", overflow="fold")
    for q in queries:
        hardware = "yes" if q.hardware_only else ""
        table.add_row(q.dashboard, q.panel, q.ref_id, hardware, " ".join(q.expr.split()))
    console = Console()
    console.width = max(console.width, 160)  # exprs are long; a pipe gets 80 columns
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
