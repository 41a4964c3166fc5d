"""`gpufleet verify burnin-judge`: judge burn-in results (and gpu_burn logs) per GPU.

The lead wires it in with `register_burnin(verify_app)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from gpufleet.errors import Problem, UserError
from gpufleet.verify.burnin_judge import (
    BurninJudgement,
    check_floors,
    floors_from_pack,
    judge_burnin,
    judge_gpu_burn,
    parse_gpu_burn,
)
from gpufleet.verify.thresholds import builtin_raw
from gpufleet.verify.verdict import Status, worst

STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}

_FILES = typer.Argument(
    ...,
    help="Burn-in JSON documents (python -m gpufleet.verify.burnin --json), one per node; "
    "gpu_burn output files are judged too (node = file name without extension).",
)
_FLOORS = typer.Option(
    None,
    "--floors",
    help="Floors for every GPU: a YAML/JSON mapping {gemm_tflops_floor, hbm_gbps_floor, ...}, "
    "a burn-in threshold pack file, or a built-in pack name (burnin-h100-sxm). "
    "Default: built-in floors for the GPU models gpufleet knows.",
)


def _looks_like_gpu_burn(text: str) -> bool:
    return "proc'd:" in text or "Burning for" in text or ("Tested " in text and "GPUs:" in text)


def read_inputs(paths: list[Path]) -> tuple[list[Any], list[str], list[tuple[str, str]]]:
    """Burn-in documents (with their file names) and gpu_burn texts (with their node)."""
    docs: list[Any] = []
    sources: list[str] = []
    gpu_burn: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            problems.append(Problem(str(path), f"cannot read: {err.strerror}", "check the path"))
            continue
        try:
            docs.append(json.loads(text))
            sources.append(str(path))
        except json.JSONDecodeError as err:
            if _looks_like_gpu_burn(text):
                gpu_burn.append((path.stem, text))
            else:
                problems.append(
                    Problem(
                        str(path),
                        f"neither burn-in JSON ({err.msg}, line {err.lineno}) nor gpu_burn output",
                        "pass the --json output of python -m gpufleet.verify.burnin",
                    )
                )
    if problems:
        raise UserError(problems, title="unreadable burn-in results")
    return docs, sources, gpu_burn


def load_floors(spec: str) -> dict[str, float]:
    """Flat floors from a file (flat mapping or threshold pack) or a built-in pack name."""
    path = Path(spec)
    builtin = builtin_raw()
    if not path.exists() and spec in builtin:
        raw: Any = builtin[spec]
    else:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise UserError(
                [
                    Problem(
                        "--floors",
                        f"cannot read {spec}: {err.strerror}",
                        "give a file or pack name",
                    )
                ]
            ) from None
        except yaml.YAMLError as err:
            raise UserError([Problem(str(path), f"not YAML/JSON: {err}", "fix the file")]) from None
    if not isinstance(raw, dict):
        raise UserError([Problem(str(path), "expected a mapping of floors", "see docs/burnin.md")])
    if raw.get("test") == "burnin":
        return floors_from_pack(raw)
    return check_floors(raw, where=str(path))


def judge_files(paths: list[Path], floors: str | None) -> BurninJudgement:
    docs, sources, gpu_burn = read_inputs(paths)
    flat = load_floors(floors) if floors else None
    parts: list[BurninJudgement] = []
    if docs:
        parts.append(judge_burnin(docs, flat, sources))
    for node, text in gpu_burn:
        rules = {k: v for k, v in (flat or {}).items() if k.startswith(("fleet_", "min_fleet"))}
        parts.append(judge_gpu_burn(parse_gpu_burn(text), node, rules))
    merged = BurninJudgement(verdicts=[], rows=[])
    for part in parts:
        merged.verdicts.extend(part.verdicts)
        merged.rows.extend(part.rows)
        merged.fleet.update(part.fleet)
    return merged


def _fmt(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print(judgement: BurninJudgement) -> None:
    console = Console()
    table = Table(show_lines=True, title="gpufleet burn-in")
    for name in ("status", "subject", "TFLOPS", "HBM GB/s", "why"):
        table.add_column(name, overflow="fold", no_wrap=name != "why")
    for verdict in judgement.verdicts:
        m = verdict.metrics
        tflops = _fmt(m.get("tflops"), 1)
        if m.get("tool") == "gpu_burn" and m.get("gflops") is not None:
            tflops = f"{m['gflops'] / 1000:.1f} ({m.get('precision') or '?'}, gpu_burn)"
        table.add_row(
            f"[{STYLE[verdict.status.value]}]{verdict.status.value.upper()}[/]",
            verdict.subject,
            tflops,
            _fmt(m.get("hbm_gbps"), 0),
            "\n".join(f"- {r}" for r in verdict.reasons),
        )
    console.print(table)
    for name, stats in judgement.fleet.items():
        console.print(
            f"fleet {name}: median {stats['median']:.1f}, MAD {stats['mad']:.2f}, n {stats['n']}"
        )
    overall = worst([v.status for v in judgement.verdicts])
    console.print(f"overall: [{STYLE[overall.value]}]{overall.value.upper()}[/]")


def register_burnin(verify_app: typer.Typer) -> None:
    """Add `burnin-judge` to the `gpufleet verify` command group."""

    @verify_app.command("burnin-judge")
    def burnin_judge_cmd(
        files: list[Path] = _FILES,
        floors: str | None = _FLOORS,
        as_json: bool = typer.Option(
            False, "--json", help="Print {status, verdicts, rows, fleet} as JSON."
        ),
    ) -> None:
        """Judge burn-in results per GPU: fleet median/MAD, floors, correctness, throttling.
        Exit 1 when any GPU fails."""
        judgement = judge_files(files, floors)
        if as_json:
            typer.echo(json.dumps(judgement.to_dict(), indent=2))
        else:
            _print(judgement)
        if any(v.status is Status.FAIL for v in judgement.verdicts):
            raise typer.Exit(1)
