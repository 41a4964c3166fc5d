"""`gpufleet verify ...`: judge nccl-tests logs, write reports, make site baselines.

An input that cannot be read does not stop the others: it becomes a failed
verdict of kind `input` naming the file and the reason, the rest is judged and
reported, and the exit code is 2. Exit codes: 0 pass or warn, 1 a verdict failed,
2 an input could not be read (or, with nothing readable, bad arguments).
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
from gpufleet.verify.baseline import make_baseline
from gpufleet.verify.judge import KIND_CHOICES, JudgeOptions, judge_logs
from gpufleet.verify.nccl import NcclLog, read_nccl_log
from gpufleet.verify.report import (
    Report,
    burnin_rows_from,
    pairs_from,
    verdicts_from,
    write_report,
)
from gpufleet.verify.site import DEFAULT_PROFILE, judge_profile
from gpufleet.verify.thresholds import ThresholdSet, check_profile, load_thresholds, parse_profile
from gpufleet.verify.verdict import Status, Verdict, worst

STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}

verify_app = typer.Typer(
    name="verify",
    help="Judge nccl-tests and burn-in results, find the bad node or link, report it.",
    no_args_is_help=True,
    add_completion=False,
)

_LOGS = typer.Argument(..., help="nccl-tests output files (stdout of *_perf, any launcher).")
_PROFILE = typer.Option(
    "hgx-h100-8gpu-ib", "--profile", help="Platform and fabric, e.g. hgx-h100-8gpu-roce."
)
# nccl: --profile for logs from elsewhere, --site to take the profile of a site's GPU nodes.
_NCCL_PROFILE = typer.Option(
    None,
    "--profile",
    help=f"Platform and fabric, e.g. hgx-h100-8gpu-roce (default {DEFAULT_PROFILE};"
    " not with --site).",
)
_SITE = typer.Option(
    None, "--site", help="Site directory or cluster.yaml: judge with its GPU nodes' profile."
)
_KIND = typer.Option(
    "auto", "--kind", help="auto, 1node, 2node-ring, multinode or nic (auto: from the hosts)."
)
_RANKS = typer.Option(None, "--ranks", help="Ranks the job should have (checked).")
_MAX_BYTES = typer.Option(
    None, "--max-bytes", help="Largest message size the job ran with -e (checked), in bytes."
)
_LABEL = typer.Option(
    None, "--label", help="What the run was meant to use: nvls, ring (also read from file names)."
)
_THRESHOLDS = typer.Option(
    None, "--thresholds", help="Site thresholds YAML (overrides and packs, e.g. a baseline)."
)
_PEERS = typer.Option(
    False, "--peers", help="The logs are one sweep of one cluster: compare runs with each other."
)


def _options(
    profile: str,
    kind: str,
    ranks: int | None,
    max_bytes: int | None,
    labels: list[str] | None,
    thresholds: ThresholdSet,
) -> JudgeOptions:
    if kind not in KIND_CHOICES:
        raise UserError([Problem("--kind", f"unknown kind {kind!r}", ", ".join(KIND_CHOICES))])
    check_profile(profile, thresholds)
    return JudgeOptions(
        profile=profile,
        kind=kind,
        expected_ranks=ranks,
        expected_max_bytes=max_bytes,
        labels=frozenset(label.lower() for label in labels or []),
    )


def unreadable(path: Path, err: UserError) -> Verdict:
    """The failed entry an unreadable input leaves in the report."""
    reasons = [
        f"unreadable: {p.message}" + (f" (fix: {p.hint})" if p.hint else "") for p in err.problems
    ]
    return Verdict(str(path), "input", Status.FAIL, reasons, {"scope": "input", "path": str(path)})


def _read_logs(paths: list[Path]) -> tuple[list[NcclLog], list[Verdict]]:
    """The logs that could be read, and a failed entry for each that could not."""
    logs: list[NcclLog] = []
    failed: list[Verdict] = []
    for path in paths:
        try:
            logs.append(read_nccl_log(str(path)))
        except UserError as err:
            failed.append(unreadable(path, err))
    return logs, failed


def _all_unreadable(failed: list[Verdict]) -> UserError:
    problems = [Problem(v.subject, "; ".join(v.reasons)) for v in failed]
    return UserError(problems, title="unreadable nccl-tests output")


def _print_verdicts(verdicts: list[Verdict]) -> None:
    console = Console()
    table = Table(show_lines=True, title="gpufleet verify")
    table.add_column("status", no_wrap=True)
    table.add_column("subject", overflow="fold", max_width=48)
    table.add_column("why", overflow="fold")
    for v in verdicts:
        table.add_row(
            f"[{STYLE[v.status.value]}]{v.status.value.upper()}[/]",
            v.subject,
            "\n".join(f"- {r}" for r in v.reasons),
        )
    console.print(table)
    overall = worst([v.status for v in verdicts])
    console.print(f"overall: [{STYLE[overall.value]}]{overall.value.upper()}[/]")


def _exit_for(verdicts: list[Verdict]) -> None:
    if any(v.kind == "input" and v.status is Status.FAIL for v in verdicts):
        raise typer.Exit(2)
    if any(v.status is Status.FAIL for v in verdicts):
        raise typer.Exit(1)


@verify_app.command("nccl")
def nccl_cmd(
    logs: list[Path] = _LOGS,
    profile: str | None = _NCCL_PROFILE,
    site: Path | None = _SITE,
    kind: str = _KIND,
    ranks: int | None = _RANKS,
    max_bytes: int | None = _MAX_BYTES,
    label: list[str] | None = _LABEL,
    thresholds: Path | None = _THRESHOLDS,
    peers: bool = _PEERS,
    as_json: bool = typer.Option(False, "--json", help="Print verdicts as JSON."),
) -> None:
    """Judge nccl-tests logs: pass/warn/fail per run with the reason. Exit 1 on any fail,
    2 when a log could not be read (the others are judged all the same)."""
    threshold_set = load_thresholds(thresholds)
    options = _options(judge_profile(profile, site), kind, ranks, max_bytes, label, threshold_set)
    read, failed = _read_logs(logs)
    if not read:
        raise _all_unreadable(failed)
    judgements = judge_logs(read, threshold_set, options, peers=peers)
    verdicts = [j.verdict for j in judgements] + failed
    if as_json:
        typer.echo(json.dumps([v.to_dict() for v in verdicts], indent=2))
    else:
        _print_verdicts(verdicts)
    _exit_for(verdicts)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(
            [Problem(str(path), f"cannot read: {err.strerror}", "check the path")]
        ) from None
    except json.JSONDecodeError as err:
        raise UserError([Problem(str(path), f"not JSON: {err}", "fix the file")]) from None


_REPORT_OUT = typer.Option(
    ..., "--out", help="Folder for report.html, report.json, junit.xml, gpufleet_verify.prom."
)
_REPORT_LOGS = typer.Argument(None, help="nccl-tests logs to judge and plot.")
_BURNIN = typer.Option(
    None, "--burnin", help="JSON burn-in rows: [{node, gpu, tflops, hbm_gbps, status}]."
)
_VERDICTS = typer.Option(
    None, "--verdicts", help="JSON verdicts from other checks (burn-in, isolation)."
)
_PAIRS = typer.Option(None, "--pairs", help="JSON node pairs: [{a, b, busbw_gbps, status}].")
_ISOLATION = typer.Option(None, "--isolation", help="Text file: fault-isolation summary.")
_TITLE = typer.Option("gpufleet verification report", "--title", help="Report title.")
_BASELINE_OUT = typer.Option(..., "--out", help="Site thresholds YAML to write.")
_MARGIN = typer.Option(0.10, "--margin", help="Fail floor = measured x (1 - margin).")


_MODE = typer.Option(
    "0644",
    "--mode",
    help="File mode of the written files, octal (0644: node_exporter may read them as any user).",
)


def _parse_mode(mode: str) -> int:
    try:
        value = int(mode, 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o777:
        raise UserError([Problem("--mode", f"{mode!r} is not an octal file mode", "e.g. 0644")])
    return value


def _add_inputs(
    report: Report,
    verdicts_files: list[Path],
    burnin: list[Path],
    pairs_file: Path | None,
    isolation: Path | None,
) -> list[Verdict]:
    """Read the other checks' files into the report; a failed entry for each unreadable one."""
    failed: list[Verdict] = []
    for path in verdicts_files:
        try:
            report.verdicts.extend(verdicts_from(_load_json(path), str(path)))
        except UserError as err:
            failed.append(unreadable(path, err))
    for path in burnin:
        try:
            report.burnin.extend(burnin_rows_from(_load_json(path), str(path)))
        except UserError as err:
            failed.append(unreadable(path, err))
    if pairs_file is not None:
        try:
            values, statuses = pairs_from(_load_json(pairs_file), str(pairs_file))
            report.pairs.update(values)
            report.pair_status.update(statuses)
        except UserError as err:
            failed.append(unreadable(pairs_file, err))
    if isolation is not None:
        try:
            report.isolation_summary = isolation.read_text(encoding="utf-8")
        except OSError as err:
            problem = Problem(str(isolation), f"cannot read: {err.strerror}", "check the path")
            failed.append(unreadable(isolation, UserError([problem])))
    return failed


@verify_app.command("report")
def report_cmd(
    out: Path = _REPORT_OUT,
    logs: list[Path] | None = _REPORT_LOGS,
    burnin: list[Path] | None = _BURNIN,
    verdicts_file: list[Path] | None = _VERDICTS,
    pairs_file: Path | None = _PAIRS,
    isolation: Path | None = _ISOLATION,
    title: str = _TITLE,
    profile: str = _PROFILE,
    kind: str = _KIND,
    ranks: int | None = _RANKS,
    max_bytes: int | None = _MAX_BYTES,
    label: list[str] | None = _LABEL,
    thresholds: Path | None = _THRESHOLDS,
    peers: bool = _PEERS,
    mode: str = _MODE,
) -> None:
    """Write the HTML/JSON/JUnit/Prometheus report. Exit 1 when any verdict fails, 2 when
    an input could not be read (it is in the report as a failed entry)."""
    file_mode = _parse_mode(mode)
    threshold_set = load_thresholds(thresholds)
    options = _options(profile, kind, ranks, max_bytes, label, threshold_set)
    read, failed = _read_logs(list(logs or []))
    judgements = judge_logs(read, threshold_set, options, peers=peers) if read else []
    report = Report.from_judgements(judgements, title=title)
    failed += _add_inputs(report, verdicts_file or [], burnin or [], pairs_file, isolation)
    report.verdicts.extend(failed)
    if not report.all_verdicts() and not report.burnin and not report.pairs:
        raise UserError(
            [Problem("report", "no inputs", "pass logs, --burnin, --verdicts or --pairs")]
        )
    floors = _burnin_floors(threshold_set, profile)
    files = write_report(report, out, burnin_floors=floors, mode=file_mode)
    console = Console()
    for key, path in files.items():
        console.print(f"{key:10} {path}")
    for entry in failed:
        console.print(f"[bold red]unreadable[/] {entry.subject}: {'; '.join(entry.reasons)}")
    status = report.status
    console.print(f"overall: [{STYLE[status.value]}]{status.value.upper()}[/]")
    _exit_for(report.all_verdicts())


def _burnin_floors(thresholds: ThresholdSet, profile: str) -> dict[str, dict[str, float]]:
    pack = thresholds.burnin_pack(parse_profile(profile)[0])
    if pack is None:
        return {}
    floors: dict[str, dict[str, float]] = {}
    for key, rule in (("tflops", pack.gemm_tflops), ("hbm_gbps", pack.hbm_gbps)):
        floors[key] = {
            name: fig.value
            for name, fig in (("warn", rule.warn_below), ("fail", rule.fail_below))
            if fig is not None
        }
    return floors


@verify_app.command("baseline")
def baseline_cmd(
    logs: list[Path] = _LOGS,
    out: Path = _BASELINE_OUT,
    margin: float = _MARGIN,
    profile: str = _PROFILE,
    kind: str = _KIND,
) -> None:
    """Write site thresholds from a first healthy run (floor = measured x (1 - margin))."""
    thresholds = load_thresholds()
    options = _options(profile, kind, None, None, None, thresholds)
    read, failed = _read_logs(logs)
    if failed:
        raise _all_unreadable(failed)
    judgements = judge_logs(read, thresholds, options)
    document = make_baseline(judgements, thresholds, profile, margin)
    header = (
        "# Site thresholds generated by `gpufleet verify baseline` from:\n"
        + "".join(f"#   {p}\n" for p in logs)
        + "# Review before use: a baseline is only as good as the run it was taken from.\n"
    )
    try:
        out.write_text(
            header + yaml.safe_dump(document, sort_keys=False, width=100), encoding="utf-8"
        )
    except OSError as err:
        raise UserError([Problem(str(out), f"cannot write: {err.strerror}", "")]) from None
    console = Console()
    for pack in document["packs"]:
        busbw = pack["busbw"]
        console.print(
            f"{pack['name']}: measured {busbw['expected']['value']} GB/s, "
            f"warn below {busbw['warn_below']['value']}, fail below {busbw['fail_below']['value']}"
        )
    console.print(f"wrote {out}")


_RUN_SITE = typer.Option(..., "--site", help="The site directory (inventories/<site>).")
_RUN_LIMIT = typer.Option(None, "--limit", help="Ansible's --limit (e.g. head1,gpu1,gpu2).")


def _site_dir(site: Path) -> Path:
    directory = site.parent if site.is_file() else site
    if not (directory / "hosts.yml").is_file():
        raise UserError(
            [Problem(str(site), "has no hosts.yml", "run `gpufleet inventory` (or `pulumi up`)")]
        )
    return directory


def _is_lab(directory: Path) -> bool:
    from gpufleet.lab.core import CONNECTION_FILE

    return (directory / CONNECTION_FILE).is_file()


# `verify run` measures even when site.yml's last pass still holds (playbooks/verify.yml).
FORCE = {"gpufleet_verify_force": "true"}


@verify_app.command("run")
def run_cmd(site: Path = _RUN_SITE, limit: str | None = _RUN_LIMIT) -> None:
    """Run the verification phase (playbooks/verify.yml) on a site: passive checks, burn-in
    and nccl-tests through Slurm, failing nodes drained, the report. It always measures (site.yml
    names a pass that still holds instead). Exit 0 pass or warn, 1 fail (the nodes named are
    drained), 2 the phase did not complete."""
    import subprocess
    import time

    from gpufleet.lab.core import repo_root

    directory = _site_dir(site)
    summary_path = directory / "reports" / "verify" / "latest" / "summary.json"
    started = time.time()
    if _is_lab(directory):
        from gpufleet.lab.converge import converge

        converge(directory, "playbooks/verify.yml", extravars=FORCE, limit=limit)
    else:
        repo = repo_root()
        force = [f"{name}={value}" for name, value in FORCE.items()]
        argv = ["ansible-playbook", "-i", str(directory / "hosts.yml"), "-e", *force,
                str(repo / "playbooks" / "verify.yml")]  # fmt: skip
        if limit:
            argv += ["--limit", limit]
        subprocess.run(argv, check=False, cwd=repo)
    if not summary_path.is_file() or summary_path.stat().st_mtime < started:
        raise UserError(
            [
                Problem(
                    "verify",
                    "the phase ended without a report",
                    "read the playbook's output above for the task that failed",
                )
            ]
        )
    summary = _load_json(summary_path)
    console = Console()
    console.print(f"report: {summary_path.parent / 'report.html'} "
                  f"(on the controller: {summary['report']['html']})")  # fmt: skip
    color = STYLE.get(summary["verdict"], "bold")
    console.print(f"[{color}]{summary['line']}[/]")
    if summary["verdict"] == "fail":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    from gpufleet.verify.burnin_cli import register_burnin
    from gpufleet.verify.isolation_cli import register_isolation

    register_burnin(verify_app)
    register_isolation(verify_app)
    app.add_typer(verify_app, name="verify")
