"""Verification reports: HTML (inline SVG plots), JSON, JUnit XML, Prometheus textfile.

`Report` is the input every part of verification can feed: nccl runs with their
verdicts and curves, a node-pair matrix, burn-in rows per GPU, other verdicts
(burn-in, isolation) and an isolation summary. The renderers are pure
functions returning text; `write_report` is the I/O edge.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from gpufleet.errors import Problem, UserError
from gpufleet.verify.judge import RunJudgement, fmt_size, pair_matrix
from gpufleet.verify.verdict import Status, Verdict, worst

STATUS_COLORS = {"pass": "#1a7f37", "warn": "#b76e00", "fail": "#cf222e"}
STATUS_FILL = {"pass": "#dafbe1", "warn": "#fff1c2", "fail": "#ffe0e0"}
TEMPLATE_NAME = "report.html.j2"


@dataclass
class ReportRun:
    """One nccl-tests run as the report plots it."""

    verdict: Verdict
    curve: list[tuple[int, float]]
    fail_gbps: float | None = None
    warn_gbps: float | None = None
    expected_gbps: float | None = None
    measure_bytes: int | None = None
    collective: str = ""

    @classmethod
    def from_judgement(cls, j: RunJudgement) -> ReportRun:
        m = j.verdict.metrics
        return cls(
            verdict=j.verdict,
            curve=[(int(s), float(b)) for s, b in m.get("curve", [])],
            fail_gbps=m.get("fail_gbps"),
            warn_gbps=m.get("warn_gbps"),
            expected_gbps=m.get("expected_gbps"),
            measure_bytes=m.get("size_bytes"),
            collective=str(m.get("collective", "")),
        )


@dataclass
class Report:
    """Everything a report shows. Other parts of verification fill what they have."""

    title: str = "gpufleet verification report"
    runs: list[ReportRun] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    pairs: dict[tuple[str, str], float | None] = field(default_factory=dict)
    pair_status: dict[tuple[str, str], Status] = field(default_factory=dict)
    burnin: list[dict[str, Any]] = field(default_factory=list)
    isolation_summary: str | None = None
    generated_at: str = ""
    pair_label: str = "busbw GB/s"

    @classmethod
    def from_judgements(cls, judgements: list[RunJudgement], **kwargs: Any) -> Report:
        pairs, statuses, collective = pair_matrix(judgements)
        report = cls(runs=[ReportRun.from_judgement(j) for j in judgements], **kwargs)
        if collective:
            report.pair_label = f"{collective} busbw GB/s"
        for key, value in pairs.items():
            report.pairs.setdefault(key, value)
            report.pair_status.setdefault(key, statuses[key])
        return report

    def all_verdicts(self) -> list[Verdict]:
        return [r.verdict for r in self.runs] + list(self.verdicts)

    def named_verdicts(self) -> list[tuple[str, Verdict]]:
        """Every verdict with a name unique within its kind: the subject, and `#2`, `#3`
        for later verdicts of the same subject (JUnit case names, Prometheus labels)."""
        seen: Counter[tuple[str, str]] = Counter()
        named: list[tuple[str, Verdict]] = []
        for v in self.all_verdicts():
            seen[(v.kind, v.subject)] += 1
            n = seen[(v.kind, v.subject)]
            named.append((v.subject if n == 1 else f"{v.subject} #{n}", v))
        return named

    @property
    def status(self) -> Status:
        return worst([v.status for v in self.all_verdicts()])

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for v in self.all_verdicts():
            counts[v.status.value] += 1
        return counts


# ---------------------------------------------------------------- SVG plots


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * exp >= value:
            return step * exp
    return 10 * exp


def _ticks(top: float, n: int = 5) -> list[float]:
    return [top * i / n for i in range(n + 1)]


def _size_label(size: int) -> str:
    return fmt_size(size).replace(" ", "")


@dataclass(frozen=True)
class _Frame:
    """Plot area of the busbw chart and its scales (log2 sizes, linear GB/s)."""

    left: float
    top: float
    pw: float
    ph: float
    x0: float
    x1: float
    ymax: float

    def px(self, size: int) -> float:
        return self.left + (math.log2(size) - self.x0) / (self.x1 - self.x0) * self.pw

    def py(self, value: float) -> float:
        return self.top + self.ph - value / self.ymax * self.ph


def svg_busbw_chart(run: ReportRun, width: int = 560, height: int = 250) -> str:
    """busbw against message size (log2 x axis) with the warn/fail/expected lines."""
    color = STATUS_COLORS[run.verdict.status.value]
    left, right, top, bottom = 52, 118, 16, 40
    pw, ph = width - left - right, height - top - bottom
    points = [(s, b) for s, b in run.curve if s > 0]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="busbw by message size">'
    ]
    if not points:
        parts.append(
            f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#f6f8fa" '
            'stroke="#d0d7de"/>'
            f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle" '
            f'font-size="14" fill="{color}">no size table: the run failed</text></svg>'
        )
        return "".join(parts)
    xs = [math.log2(s) for s, _ in points]
    x0, x1 = min(xs), max(xs)
    if x1 - x0 < 1:
        x0, x1 = x0 - 1, x1 + 1
    lines = [v for v in (run.fail_gbps, run.warn_gbps, run.expected_gbps) if v]
    ymax = _nice_max(max([b for _, b in points] + lines) * 1.08)
    frame = _Frame(left, top, pw, ph, x0, x1, ymax)
    parts += _chart_grid(frame, height)
    parts += _threshold_lines(frame, run)
    parts += _curve(frame, points, color, run.measure_bytes)
    parts.append("</svg>")
    return "".join(parts)


def _chart_grid(f: _Frame, height: int) -> list[str]:
    parts = [
        f'<rect x="{f.left}" y="{f.top}" width="{f.pw}" height="{f.ph}" fill="#ffffff" '
        'stroke="#d0d7de"/>'
    ]
    for t in _ticks(f.ymax):
        y = f.py(t)
        parts.append(
            f'<line x1="{f.left}" x2="{f.left + f.pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaeef2"/>'
            f'<text x="{f.left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#57606a">{t:g}</text>'
        )
    span = int(f.x1 - f.x0)
    # Prefer ticks on 1 KiB / 1 MiB / 1 GiB boundaries when the range is wide.
    step = 10 if span >= 20 else max(1, math.ceil(span / 8))
    for k in range(math.ceil(f.x0), math.floor(f.x1) + 1):
        if (k % step) and step > 1:
            continue
        x = f.left + (k - f.x0) / (f.x1 - f.x0) * f.pw
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.top}" y2="{f.top + f.ph}" stroke="#f3f4f6"/>'
            f'<text x="{x:.1f}" y="{f.top + f.ph + 15}" text-anchor="middle" font-size="11" '
            f'fill="#57606a">{_size_label(2**k)}</text>'
        )
    mid = f.top + f.ph / 2
    parts.append(
        f'<text x="{f.left + f.pw / 2}" y="{height - 6}" text-anchor="middle" '
        'font-size="11" fill="#57606a">message size (log scale)</text>'
        f'<text x="12" y="{mid}" text-anchor="middle" font-size="11" '
        f'fill="#57606a" transform="rotate(-90 12 {mid})">busbw GB/s</text>'
    )
    return parts


def _threshold_lines(f: _Frame, run: ReportRun) -> list[str]:
    """Threshold lines, labelled in the right margin; labels pushed apart when close."""
    parts: list[str] = []
    labelled: list[float] = []
    for value, name, stroke, dash in (
        (run.expected_gbps, "expected", "#6e7781", "2 3"),
        (run.warn_gbps, "warn", STATUS_COLORS["warn"], "6 4"),
        (run.fail_gbps, "fail", STATUS_COLORS["fail"], "6 4"),
    ):
        if not value:
            continue
        y = f.py(value)
        ly = y + 4
        while any(abs(ly - other) < 12 for other in labelled):
            ly += 12
        labelled.append(ly)
        parts.append(
            f'<line x1="{f.left}" x2="{f.left + f.pw}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{stroke}" stroke-width="1.5" stroke-dasharray="{dash}"/>'
            f'<text x="{f.left + f.pw + 10}" y="{ly:.1f}" font-size="11" fill="{stroke}">'
            f"{name} {value:g}</text>"
        )
    return parts


def _curve(
    f: _Frame, points: list[tuple[int, float]], color: str, measure_bytes: int | None
) -> list[str]:
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{f.px(s):.1f},{f.py(b):.1f}" for i, (s, b) in enumerate(points)
    )
    parts = [f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2.2"/>']
    for s, b in points:
        parts.append(
            f'<circle cx="{f.px(s):.1f}" cy="{f.py(b):.1f}" r="2.6" fill="{color}">'
            f"<title>{escape(fmt_size(s))}: {b:.2f} GB/s</title></circle>"
        )
    m = next(((s, b) for s, b in points if s == measure_bytes), None) if measure_bytes else None
    if m:
        parts.append(
            f'<circle cx="{f.px(m[0]):.1f}" cy="{f.py(m[1]):.1f}" r="5.5" fill="none" '
            f'stroke="{color}" stroke-width="2"/>'
            f'<text x="{f.px(m[0]) - 8:.1f}" y="{f.py(m[1]) - 9:.1f}" text-anchor="end" '
            f'font-size="12" font-weight="600" fill="{color}">{m[1]:.1f} GB/s</text>'
        )
    return parts


def _heat_color(frac: float) -> str:
    """White-to-blue scale for bandwidth (0..1 of the best pair)."""
    frac = min(1.0, max(0.0, frac))
    r = round(239 - frac * (239 - 33))
    g = round(246 - frac * (246 - 102))
    b = round(255 - frac * (255 - 172))
    return f"rgb({r},{g},{b})"


def svg_pair_heatmap(
    pairs: Mapping[tuple[str, str], float | None],
    statuses: Mapping[tuple[str, str], Status],
    cell: int = 46,
    label: str = "busbw GB/s",
) -> str:
    """Node x node matrix: colour is busbw relative to the best pair; failed pairs outlined red."""
    nodes = sorted({n for key in list(pairs) + list(statuses) for n in key})
    if not nodes:
        return ""
    label_w = max(60, 7 * max(len(n) for n in nodes) + 10)
    # Column labels are rotated 45 degrees: they need about 0.72 of their length upwards.
    top_h = round(0.72 * label_w) + 12
    size = cell * len(nodes)
    width = label_w + size + 170
    height = top_h + max(size, 215) + 20
    # The scale's top is the best pair; with no pair above 0 (every job failed) it is 1.
    best = max([v for v in pairs.values() if v is not None and v > 0], default=1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="node pair bandwidth">'
    ]
    for i, name in enumerate(nodes):
        cx = label_w + i * cell + cell / 2
        parts.append(
            f'<text x="{cx:.1f}" y="{top_h - 6}" font-size="11" fill="#24292f" '
            f'text-anchor="start" transform="rotate(-45 {cx:.1f} {top_h - 6})">'
            f"{escape(name)}</text>"
            f'<text x="{label_w - 6}" y="{top_h + i * cell + cell / 2 + 4:.1f}" font-size="11" '
            f'fill="#24292f" text-anchor="end">{escape(name)}</text>'
        )
    for i, a in enumerate(nodes):
        for k, b in enumerate(nodes):
            x, y = label_w + k * cell, top_h + i * cell
            parts.append(_heat_cell(a, b, x, y, cell, best, pairs, statuses))
    parts.append(_heat_legend(label_w + size + 24, top_h + 8, label, best))
    parts.append("</svg>")
    return "".join(parts)


def _heat_cell(
    a: str,
    b: str,
    x: int,
    y: int,
    cell: int,
    best: float,
    pairs: Mapping[tuple[str, str], float | None],
    statuses: Mapping[tuple[str, str], Status],
) -> str:
    """One cell: grey on the diagonal, pale when untested, coloured by busbw otherwise."""
    if a == b:
        return f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="#d0d7de"/>'
    key = next((k for k in ((a, b), (b, a)) if k in pairs or k in statuses), None)
    if key is None:
        return (
            f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" '
            'fill="#f6f8fa" stroke="#ffffff"/>'
        )
    value, status = pairs.get(key), statuses.get(key)
    fill = _heat_color(value / best) if value is not None else "#ffe0e0"
    out = f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#ffffff"/>'
    if status is not None and status is not Status.PASS:
        out += (
            f'<rect x="{x + 2}" y="{y + 2}" width="{cell - 4}" height="{cell - 4}" fill="none" '
            f'stroke="{STATUS_COLORS[status.value]}" stroke-width="3"/>'
        )
    text = "failed" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"
    dark = value is not None and value / best > 0.55
    return out + (
        f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" '
        f'font-size="11" fill="{"#ffffff" if dark else "#24292f"}">{text}'
        f"<title>{escape(a)} - {escape(b)}: "
        f"{'no result' if value is None else f'{value:.2f} GB/s'}"
        f"{' (' + status.value + ')' if status else ''}</title></text>"
    )


def _heat_legend(lx: int, ly: int, label: str, best: float) -> str:
    parts = [f'<text x="{lx}" y="{ly - 8}" font-size="11" fill="#57606a">{escape(label)}</text>']
    for step in range(11):
        parts.append(
            f'<rect x="{lx}" y="{ly + step * 12}" width="18" height="12" '
            f'fill="{_heat_color(1 - step / 10)}"/>'
        )
    parts.append(
        f'<text x="{lx + 24}" y="{ly + 10}" font-size="11" fill="#57606a">{best:.0f}</text>'
        f'<text x="{lx + 24}" y="{ly + 130}" font-size="11" fill="#57606a">0</text>'
    )
    for dy, status in ((150, "fail"), (170, "warn")):
        parts.append(
            f'<rect x="{lx}" y="{ly + dy}" width="18" height="12" fill="none" '
            f'stroke="{STATUS_COLORS[status]}" stroke-width="3"/>'
            f'<text x="{lx + 24}" y="{ly + dy + 10}" font-size="11" fill="#57606a">{status}</text>'
        )
    parts.append(
        f'<rect x="{lx}" y="{ly + 190}" width="18" height="12" fill="#f6f8fa" '
        'stroke="#d0d7de"/>'
        f'<text x="{lx + 24}" y="{ly + 200}" font-size="11" fill="#57606a">not tested'
        "</text>"
    )
    return "".join(parts)


def svg_burnin_bars(
    rows: list[dict[str, Any]],
    metric: str,
    unit: str,
    floors: Mapping[str, float] | None = None,
    height: int = 230,
) -> str:
    """One bar per GPU, grouped by node, coloured by status, with the fleet median line."""
    data = [r for r in rows if r.get(metric) is not None]
    if not data:
        return ""
    data.sort(key=lambda r: (str(r.get("node")), int(r.get("gpu", 0))))
    bar, gap, group_gap = 14, 3, 18
    left, top, bottom, right = 56, 16, 46, 120
    nodes: list[str] = []
    for r in data:
        if not nodes or nodes[-1] != str(r["node"]):
            nodes.append(str(r["node"]))
    pw = len(data) * (bar + gap) + (len(nodes) - 1) * group_gap
    width = left + pw + right
    ph = height - top - bottom
    values = [float(r[metric]) for r in data]
    median = statistics.median(values)
    marks = values + list((floors or {}).values())
    # Zoom in: a 3.5% deviation is invisible on an axis from 0. The axis starts at a
    # round value below the lowest bar or floor, and its label says so.
    span = max(marks) - min(marks)
    step = _nice_max(span / 3) if span > 0 else _nice_max(max(marks) / 4)
    ymin = max(0.0, math.floor((min(marks) - 0.5 * step) / step) * step)
    ymax = math.ceil((max(marks) + 0.3 * step) / step) * step

    def py(v: float) -> float:
        return top + ph - (max(v, ymin) - ymin) / (ymax - ymin) * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(metric)} per GPU">'
    ]
    for t in [ymin + (ymax - ymin) * i / 4 for i in range(5)]:
        y = py(t)
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#eaeef2"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#57606a">{t:g}</text>'
        )
    parts.append(
        f'<text x="12" y="{top + ph / 2}" text-anchor="middle" font-size="11" '
        f'fill="#57606a" transform="rotate(-90 12 {top + ph / 2})">{escape(unit)}</text>'
    )
    if ymin > 0:
        parts.append(
            f'<text x="{left + pw + 6}" y="{top + ph}" font-size="10" fill="#6e7781">'
            f"axis starts at {ymin:g}</text>"
        )
    parts += _bars(data, metric, unit, left, top + ph, py)
    parts += _bar_lines(median, floors or {}, left, pw, py)
    parts.append("</svg>")
    return "".join(parts)


def _bars(
    data: list[dict[str, Any]],
    metric: str,
    unit: str,
    left: int,
    base: float,
    py: Callable[[float], float],
) -> list[str]:
    """The bars, one per GPU, with a label under each node's group."""
    bar, gap, group_gap = 14, 3, 18
    parts: list[str] = []
    x = left
    current = None
    group_start = x
    for r in data:
        node = str(r["node"])
        if current is not None and node != current:
            parts.append(_group_label(current, group_start, x - gap, base))
            x += group_gap
            group_start = x
        current = node
        v = float(r[metric])
        status = str(r.get("status", "pass"))
        color = STATUS_COLORS.get(status, "#6e7781")
        parts.append(
            f'<rect x="{x}" y="{py(v):.1f}" width="{bar}" height="{base - py(v):.1f}" '
            f'fill="{color}" opacity="{0.55 if status == "pass" else 0.95}">'
            f"<title>{escape(node)} GPU {escape(str(r.get('gpu')))}: {v:g} {escape(unit)} "
            f"({escape(status)})</title></rect>"
            f'<text x="{x + bar / 2}" y="{base + 12}" text-anchor="middle" font-size="9" '
            f'fill="#57606a">{escape(str(r.get("gpu")))}</text>'
        )
        x += bar + gap
    if current is not None:
        parts.append(_group_label(current, group_start, x - gap, base))
    return parts


def _bar_lines(
    median: float,
    floors: Mapping[str, float],
    left: int,
    pw: int,
    py: Callable[[float], float],
) -> list[str]:
    """The fleet median and the floors across the bars, labelled on the right."""
    parts: list[str] = []
    labelled: list[float] = []
    lines = [(median, "fleet median", "#24292f", "2 3")]
    for name, value in floors.items():
        lines.append((value, name, STATUS_COLORS.get(name, "#6e7781"), "6 4"))
    for value, name, stroke, dash in lines:
        y = py(value)
        ly = y + 4
        while any(abs(ly - other) < 12 for other in labelled):
            ly += 12
        labelled.append(ly)
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{stroke}" stroke-width="1.3" stroke-dasharray="{dash}"/>'
            f'<text x="{left + pw + 6}" y="{ly:.1f}" font-size="11" fill="{stroke}">'
            f"{escape(name)} {value:g}</text>"
        )
    return parts


def _group_label(node: str, x0: float, x1: float, base: float) -> str:
    mid = (x0 + x1) / 2
    return (
        f'<line x1="{x0}" x2="{x1}" y1="{base + 17}" y2="{base + 17}" stroke="#8c959f"/>'
        f'<text x="{mid:.1f}" y="{base + 31}" text-anchor="middle" font-size="11" '
        f'fill="#24292f">{escape(node)}</text>'
    )


# ---------------------------------------------------------------- renderers


def _package_template(name: str) -> str | None:
    """A template shipped in the package (gpufleet/verify/templates), or None."""
    file = resources.files("gpufleet.verify").joinpath("templates", name)
    return file.read_text(encoding="utf-8") if file.is_file() else None


def _template_env() -> jinja2.Environment:
    """The report template from the package; $GPUFLEET_TEMPLATES may hold a site's own."""
    loaders: list[jinja2.BaseLoader] = []
    if os.environ.get("GPUFLEET_TEMPLATES"):
        loaders.append(jinja2.FileSystemLoader(os.environ["GPUFLEET_TEMPLATES"]))
    loaders.append(jinja2.FunctionLoader(_package_template))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    try:
        env.get_template(TEMPLATE_NAME)
    except jinja2.TemplateNotFound:
        raise UserError(
            [
                Problem(
                    TEMPLATE_NAME,
                    "report template not found in the package or $GPUFLEET_TEMPLATES",
                    "reinstall gpufleet or point GPUFLEET_TEMPLATES at a folder holding it",
                )
            ]
        ) from None
    return env


def render_html(
    report: Report, burnin_floors: Mapping[str, Mapping[str, float]] | None = None
) -> str:
    floors = burnin_floors or {}
    charts = [
        {
            "run": r,
            "svg": svg_busbw_chart(r),
            "color": STATUS_COLORS[r.verdict.status.value],
            "headline": next((x for x in r.verdict.reasons if not x.startswith("note:")), ""),
        }
        for r in report.runs
    ]
    verdicts = sorted(report.all_verdicts(), key=lambda v: -v.status.rank)
    env = _template_env()
    return env.get_template(TEMPLATE_NAME).render(
        report=report,
        status=report.status.value,
        counts=report.counts(),
        verdicts=verdicts,
        charts=charts,
        heatmap=svg_pair_heatmap(report.pairs, report.pair_status)
        if report.pairs or report.pair_status
        else "",
        tflops_svg=svg_burnin_bars(report.burnin, "tflops", "TFLOPS", floors.get("tflops")),
        hbm_svg=svg_burnin_bars(report.burnin, "hbm_gbps", "HBM GB/s", floors.get("hbm_gbps")),
        colors=STATUS_COLORS,
        fills=STATUS_FILL,
        fmt_size=fmt_size,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Status):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def render_json(report: Report) -> str:
    data = {
        "title": report.title,
        "generated_at": report.generated_at,
        "status": report.status.value,
        "counts": report.counts(),
        "verdicts": [
            {"name": name, **_jsonable(v.to_dict())} for name, v in report.named_verdicts()
        ],
        "pairs": [
            {
                "a": a,
                "b": b,
                "busbw_gbps": report.pairs.get((a, b)),
                "status": report.pair_status[(a, b)].value
                if (a, b) in report.pair_status
                else None,
            }
            for a, b in sorted(set(report.pairs) | set(report.pair_status))
        ],
        "burnin": _jsonable(report.burnin),
        "isolation_summary": report.isolation_summary,
    }
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def render_junit(report: Report) -> str:
    """One testcase per verdict; failures carry the reasons; warnings go to system-out."""
    verdicts = report.all_verdicts()
    counts = report.counts()
    suite = ET.Element(
        "testsuite",
        {
            "name": "gpufleet.verify",
            "tests": str(len(verdicts)),
            "failures": str(counts["fail"]),
            "errors": "0",
            "skipped": "0",
            "timestamp": report.generated_at,
        },
    )
    for name, v in report.named_verdicts():
        case = ET.SubElement(
            suite, "testcase", {"classname": f"gpufleet.verify.{v.kind}", "name": name}
        )
        if v.status is Status.FAIL:
            failure = ET.SubElement(
                case,
                "failure",
                {"message": v.reasons[0] if v.reasons else "failed", "type": v.kind},
            )
            failure.text = "\n".join(v.reasons)
        elif v.reasons:
            out = ET.SubElement(case, "system-out")
            out.text = "\n".join(f"{v.status.value.upper()}: {r}" for r in v.reasons)
    suites = ET.Element("testsuites", {"name": report.title})
    suites.append(suite)
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(report: Report) -> str:
    """Text exposition format for node_exporter's textfile collector: one series per
    verdict (names made unique, so no label set repeats), counts as in the JSON."""
    lines = [
        "# HELP gpufleet_verify_status Verdict of a verification check (0 pass, 1 warn, 2 fail).",
        "# TYPE gpufleet_verify_status gauge",
    ]
    for name, v in report.named_verdicts():
        lines.append(
            f'gpufleet_verify_status{{subject="{_label(name)}",kind="{_label(v.kind)}"}} '
            f"{v.status.rank}"
        )
    lines += _bandwidth_series(report)
    counts = report.counts()
    lines += [
        "# HELP gpufleet_verify_checks Verification checks by status.",
        "# TYPE gpufleet_verify_checks gauge",
        *(f'gpufleet_verify_checks{{status="{s}"}} {n}' for s, n in counts.items()),
        "# HELP gpufleet_verify_failed_checks Number of verification checks that failed.",
        "# TYPE gpufleet_verify_failed_checks gauge",
        f"gpufleet_verify_failed_checks {counts['fail']}",
    ]
    return "\n".join(lines) + "\n"


def _bandwidth_series(report: Report) -> list[str]:
    """busbw and algbw of every nccl run at its largest size, judged against a pack or not."""
    names = {id(v): name for name, v in report.named_verdicts()}
    lines: list[str] = []
    for metric, key, what in (
        ("gpufleet_nccl_busbw_gbps", "busbw_gbps", "bus bandwidth"),
        ("gpufleet_nccl_algbw_gbps", "algbw_gbps", "algorithm bandwidth"),
    ):
        lines += [
            f"# HELP {metric} nccl-tests {what} at the largest message size of a run.",
            f"# TYPE {metric} gauge",
        ]
        for run in report.runs:
            m = run.verdict.metrics
            if m.get(key) is None:
                continue
            labels = (
                f'subject="{_label(names[id(run.verdict)])}",'
                f'collective="{_label(m.get("collective", ""))}",'
                f'kind="{_label(m.get("kind", ""))}",size_bytes="{m.get("size_bytes")}"'
            )
            lines.append(f"{metric}{{{labels}}} {float(m[key]):g}")
    return lines


# Readable by a node_exporter that does not run as root, writable by the owner.
DEFAULT_MODE = 0o644


def _atomic_write(path: Path, text: str, mode: int) -> None:
    # node_exporter may read the .prom file at any moment: write aside, then rename.
    # mkstemp creates the file 0600; the mode is set before the rename makes it visible.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(
    report: Report,
    out_dir: str | Path,
    burnin_floors: Mapping[str, Mapping[str, float]] | None = None,
    mode: int = DEFAULT_MODE,
) -> dict[str, Path]:
    """Write report.html, report.json, junit.xml and gpufleet_verify.prom into out_dir,
    each with `mode` (0644 unless the operator asks otherwise)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not report.generated_at:
        report.generated_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    files = {
        "html": (out / "report.html", render_html(report, burnin_floors)),
        "json": (out / "report.json", render_json(report)),
        "junit": (out / "junit.xml", render_junit(report)),
        "prometheus": (out / "gpufleet_verify.prom", render_prometheus(report)),
    }
    for path, text in files.values():
        _atomic_write(path, text, mode)
    return {key: path for key, (path, _) in files.items()}


def burnin_rows_from(data: Any, where: str) -> list[dict[str, Any]]:
    """Burn-in rows from JSON: [{node, gpu, tflops, hbm_gbps, status}] or {"rows": [...]}."""
    rows = data.get("rows") if isinstance(data, Mapping) else data
    if not isinstance(rows, list):
        raise UserError([Problem(where, "expected a list of burn-in rows", "see docs/verify.md")])
    problems: list[Problem] = []
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or "node" not in row or "gpu" not in row:
            problems.append(Problem(f"{where}[{i}]", "needs at least node and gpu", ""))
            continue
        status = str(row.get("status", "pass"))
        if status not in STATUS_COLORS:
            problems.append(Problem(f"{where}[{i}].status", f"{status!r}", "pass, warn or fail"))
            continue
        out.append(dict(row))
    if problems:
        raise UserError(problems, title="invalid burn-in rows")
    return out


def verdicts_from(data: Any, where: str) -> list[Verdict]:
    """Verdicts from JSON (a list of Verdict.to_dict() objects, or {"verdicts": [...]})."""
    items = data.get("verdicts") if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise UserError([Problem(where, "expected a list of verdicts", "see docs/verify.md")])
    out: list[Verdict] = []
    for i, item in enumerate(items):
        try:
            out.append(
                Verdict(
                    subject=str(item["subject"]),
                    kind=str(item["kind"]),
                    status=Status(item["status"]),
                    reasons=[str(r) for r in item.get("reasons", [])],
                    metrics=dict(item.get("metrics", {})),
                )
            )
        except (KeyError, ValueError, TypeError) as err:
            raise UserError(
                [Problem(f"{where}[{i}]", f"not a verdict ({err})", "subject, kind, status")]
            ) from None
    return out


def pairs_from(
    data: Any, where: str
) -> tuple[dict[tuple[str, str], float | None], dict[tuple[str, str], Status]]:
    """Pair results from JSON: [{"a": ..., "b": ..., "busbw_gbps": ..., "status": ...}]."""
    items = data.get("pairs") if isinstance(data, Mapping) else data
    if not isinstance(items, list):
        raise UserError([Problem(where, "expected a list of pairs", "see docs/verify.md")])
    values: dict[tuple[str, str], float | None] = {}
    statuses: dict[tuple[str, str], Status] = {}
    for i, item in enumerate(items):
        try:
            a, b = sorted((str(item["a"]), str(item["b"])))
            bw = item.get("busbw_gbps")
            values[(a, b)] = None if bw is None else float(bw)
            if item.get("status") is not None:
                statuses[(a, b)] = Status(item["status"])
        except (KeyError, ValueError, TypeError) as err:
            raise UserError(
                [Problem(f"{where}[{i}]", f"not a pair ({err})", "a, b, busbw_gbps, status")]
            ) from None
    return values, statuses
