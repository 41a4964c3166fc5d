"""The verification phase on a cluster: run the checks through Slurm, find the bad node or
link, drain it, report (playbooks/verify.yml runs this on the first Slurm controller).

    python3 -m gpufleet.verify.campaign --config verify.json --out /var/lib/gpufleet/verify/RUN

One process on the controller drives everything; Slurm starts the jobs and brings their
output back (srun's standard output), so a 1,024-node site costs one process here and no
SSH copies. Steps:

1. The passive checks' results (each GPU node's health check, gathered by the playbook) come
   in the config. A node that failed them is not tested further: it is drained with the
   reason (a dead port is not a benchmark question).
2. A Slurm reservation (MAINT, IGNORE_JOBS, root only) holds the nodes under test, so no user
   job lands on them while they are measured; nodes this phase drained earlier are resumed
   inside it, to be tested again.
3. The isolation planner (gpufleet.verify.isolation) plans rounds; each test runs as Slurm
   jobs (gpufleet.verify.launch): node-local tests are the burn-in and the single-node
   collectives; fabric tests run the fabric collective once per rail. Tests of one round run
   at the same time; every log is kept and judged (gpufleet.verify.judge).
4. Nodes with a failed verdict are drained with the reason ("gpufleet-verify: ..."); the
   reservation is released (also when the run fails halfway).
5. The report (report.html, report.json, junit.xml, gpufleet_verify.prom) and summary.json
   are written to --out; the last line printed is the one-line verdict.

With --last (site.yml's use), a passing run is recorded there with its fingerprint: the
config (every node, threshold and launch setting), each node's state as the playbook read it
(boot, kernel, version locks) and this package's own code and threshold packs. The next run
that finds the same fingerprint, a pass younger than reverify_after_hours and no passive
problem measures nothing: it names that pass and its folder ("unchanged since ..."), so a
re-run of site.yml on a live cluster does not reserve every GPU node for a burn-in. --force
(`gpufleet verify run`) always measures.

Exit codes: 0 pass or warn, 1 fail (nodes drained), 2 the phase could not run (bad config,
no Slurm). On the controller it needs pydantic, PyYAML and Jinja2 (roles/cluster_verify
installs them into /opt/gpufleet/verify-driver).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpufleet.errors import Problem, UserError
from gpufleet.verify.burnin import gpu_ok
from gpufleet.verify.burnin_judge import BurninJudgement, judge_burnin
from gpufleet.verify.isolation import (
    FabricLayout,
    IsolationConfig,
    IsolationPlanner,
    Test,
    TestKind,
    TestResult,
)
from gpufleet.verify.judge import JudgeOptions, RunJudgement, judge_log
from gpufleet.verify.launch import (
    FABRIC_COLLECTIVE,
    LOCAL_COLLECTIVES,
    MAX_BYTES,
    RESERVATION,
    Launch,
    burnin_line,
    nccl_line,
    shell,
)
from gpufleet.verify.nccl import parse_nccl_log
from gpufleet.verify.report import Report, ReportRun, write_report
from gpufleet.verify.simulate import CostModel, Fault, FaultKind, SimCluster, run_adaptive
from gpufleet.verify.thresholds import load_thresholds
from gpufleet.verify.verdict import Status, Verdict, worst

REASON_PREFIX = "gpufleet-verify: "
REASON_MAX = 200
Say = Callable[[str], None]


@dataclass(frozen=True)
class CampaignConfig:
    site: str
    nodes: tuple[str, ...]
    rails: int
    leaves: Mapping[str, Sequence[str]]  # node -> leaf switch of each rail
    launch: Launch
    passive: Mapping[str, Sequence[str]]  # node -> problems its passive checks found
    profile: str = "hgx-h100-8gpu-ib"
    expected_rail_gbps: float | None = None
    noise: float = 0.0
    compute_warn_fraction: float = 0.965
    compute_fail_fraction: float = 0.93
    burnin_rules: Mapping[str, float] = field(default_factory=dict)
    drain: bool = True
    step_timeout_s: float = 3600.0
    textfile: str = ""  # node_exporter's textfile collector: the report's metrics go here too
    # srun clients at once on the controller (each a process of about 10 MB): a round's tests
    # run together up to this many, the rest as those finish.
    max_parallel: int = 512
    # A passing verification holds this long for a run that finds nothing changed (--last);
    # 0: every run measures.
    reverify_after_hours: float = 168.0


def _number(
    data: Mapping[str, Any],
    key: str,
    default: float | None,
    problems: list[Problem],
    low: float = 0.0,
    high: float = float("inf"),
) -> float | None:
    """A number of the config; numbers as text (what a template may leave) count too."""
    value = data.get(key, default)
    if value is None or value in ("", "None", "none", "null"):
        return default
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not low <= number <= high:
        problems.append(Problem(key, f"{value!r} is not a number in [{low}, {high}]", ""))
        return default
    return number


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "yes", "1")


def config_from(data: Mapping[str, Any], where: str = "config") -> CampaignConfig:
    """The campaign config from its JSON form (written by playbooks/verify.yml)."""
    problems: list[Problem] = []
    nodes = data.get("nodes")
    if not isinstance(nodes, list) or not all(isinstance(n, str) and n for n in nodes):
        problems.append(Problem("nodes", "must be a list of GPU node names", ""))
        nodes = []
    rails_value = _number(data, "rails", 0, problems, 0, 64)
    rails = int(rails_value or 0)
    if rails != rails_value:
        problems.append(Problem("rails", f"{data.get('rails')!r} is not a rail count", ""))
    leaves = data.get("leaves") or {}
    for node in nodes:
        got = leaves.get(node)
        if rails and (not isinstance(got, list) or len(got) != rails):
            leaves[node] = [f"rail{r}" for r in range(rails)]  # one switch per rail
    launch_data = data.get("launch") or {}
    if not launch_data.get("nccl_tests_bin") or not launch_data.get("python"):
        problems.append(Problem("launch", "needs nccl_tests_bin and python", ""))
    devices = list(launch_data.get("rail_devices") or [])
    if rails and len(devices) != rails:
        problems.append(
            Problem(
                "launch.rail_devices",
                f"{len(devices)} devices for {rails} rails",
                "name each rail's NCCL device (an HCA such as mlx5_0, or a netdev)",
            )
        )
    passive = data.get("passive") or {}
    if not isinstance(passive, dict):
        problems.append(Problem("passive", "must map nodes to their problems", ""))
        passive = {}
    expected = _number(data, "expected_rail_gbps", None, problems, 0.001)
    noise = _number(data, "noise", 0.0, problems, 0.0, 0.5) or 0.0
    warn = _number(data, "compute_warn_fraction", 0.965, problems, 0.0, 1.0) or 0.965
    fail = _number(data, "compute_fail_fraction", 0.93, problems, 0.0, 1.0) or 0.93
    burnin_s = _number(launch_data, "burnin_seconds", 600.0, problems, 1.0) or 600.0
    timeout = _number(data, "step_timeout_s", 3600.0, problems, 10.0) or 3600.0
    parallel = _number(data, "max_parallel", 512, problems, 1, 8192) or 512
    reverify = _number(data, "reverify_after_hours", 168.0, problems, 0.0, 24.0 * 366)
    if problems:
        raise UserError(problems, title=f"{where}: the verification phase cannot start:")
    launch = Launch(
        nccl_tests_bin=str(launch_data["nccl_tests_bin"]),
        python=str(launch_data["python"]),
        pythonpath=str(launch_data.get("pythonpath") or ""),
        gpus_per_node=int(launch_data.get("gpus_per_node") or 8),
        ranks_per_node=int(launch_data.get("ranks_per_node") or 0),
        fabric=str(launch_data.get("fabric") or "infiniband"),
        rail_devices=tuple(devices),
        partition=str(launch_data.get("partition") or ""),
        burnin_seconds=burnin_s,
        burnin_args=tuple(str(a) for a in launch_data.get("burnin_args") or ()),
        time_limit_min=int(launch_data.get("time_limit_min") or 30),
        wait_s=int(launch_data.get("wait_s") or 600),
        srun_args=tuple(str(a) for a in launch_data.get("srun_args") or ()),
        env={str(k): str(v) for k, v in (launch_data.get("env") or {}).items()},
    )
    return CampaignConfig(
        site=str(data.get("site") or "site"),
        nodes=tuple(nodes),
        rails=rails,
        leaves={n: tuple(leaves[n]) for n in nodes if n in leaves},
        launch=launch,
        passive={str(k): [str(p) for p in v] for k, v in passive.items() if v},
        profile=str(data.get("profile") or "hgx-h100-8gpu-ib"),
        expected_rail_gbps=expected,
        noise=noise,
        compute_warn_fraction=warn,
        compute_fail_fraction=fail,
        burnin_rules={str(k): float(v) for k, v in (data.get("burnin_rules") or {}).items()},
        drain=_flag(data.get("drain", True)),
        step_timeout_s=timeout,
        textfile=str(data.get("textfile") or ""),
        max_parallel=int(parallel),
        reverify_after_hours=168.0 if reverify is None else reverify,
    )


# --------------------------------------------------------------------------- Slurm


@dataclass
class Step:
    """One finished Slurm job step: its command line, exit code and output."""

    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float


class Slurm:
    """The Slurm client commands this phase uses (srun, scontrol)."""

    def __init__(self, timeout_s: float = 3600.0) -> None:
        self.timeout_s = timeout_s

    def run(self, argv: Sequence[str]) -> Step:
        start = time.monotonic()
        # srun's --export=ALL,NAME=VALUE does not replace a NAME srun itself has in its
        # environment (seen with Slurm 22.05): give srun those values in its environment too.
        env = dict(os.environ)
        for arg in argv:
            if arg.startswith("--export="):
                for item in arg.removeprefix("--export=").split(",")[1:]:
                    name, _, value = item.partition("=")
                    env[name] = value
        try:
            done = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
                env=env,
            )
            rc, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            rc, err = 124, f"no answer within {self.timeout_s:g} s (step killed)"
        except OSError as exc:
            rc, out, err = 127, "", f"cannot run {argv[0]}: {exc.strerror}"
        return Step(list(argv), rc, out, err, time.monotonic() - start)

    def scontrol(self, *args: str) -> str:
        step = self.run(["scontrol", *args])
        if step.rc != 0:
            raise UserError(
                [
                    Problem(
                        "scontrol " + " ".join(args[:2]),
                        step.stderr.strip() or f"rc {step.rc}",
                        "is slurmctld up, and is this the controller?",
                    )
                ]
            )
        return step.stdout

    def node_states(self) -> dict[str, tuple[str, str]]:
        """node -> (State=..., Reason=...) from `scontrol -o show node`."""
        out: dict[str, tuple[str, str]] = {}
        for line in self.scontrol("-o", "show", "node").splitlines():
            name = re.search(r"\bNodeName=(\S+)", line)
            if not name:
                continue
            state = re.search(r"\bState=(\S+)", line)
            reason = re.search(r"\bReason=(.*?)(?: \[[^\]]*\])?(?: \w+=|$)", line)
            out[name.group(1)] = (
                state.group(1) if state else "",
                reason.group(1).strip() if reason else "",
            )
        return out

    def reserve(self, nodes: Sequence[str]) -> None:
        self.run(["scontrol", "delete", f"ReservationName={RESERVATION}"])
        self.scontrol(
            "create", "reservation", f"ReservationName={RESERVATION}", "StartTime=now",
            "Duration=UNLIMITED", "Users=root", "Flags=MAINT,IGNORE_JOBS",
            f"Nodes={','.join(nodes)}",
        )  # fmt: skip

    def release(self) -> None:
        self.run(["scontrol", "delete", f"ReservationName={RESERVATION}"])

    def drain(self, node: str, reason: str) -> None:
        self.scontrol("update", f"NodeName={node}", "State=DRAIN", f"Reason={reason}")

    def resume(self, node: str) -> None:
        self.scontrol("update", f"NodeName={node}", "State=RESUME")


def drain_reason(reasons: Sequence[str]) -> str:
    """The Slurm reason of a drain: the prefix, then the first reason, within 200 chars."""
    text = REASON_PREFIX + (reasons[0] if reasons else "failed verification")
    text = " ".join(text.split()).replace("=", ":")
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 3] + "..."


def drained_by_us(state: str, reason: str) -> bool:
    return "DRAIN" in state.upper() and reason.startswith(REASON_PREFIX.strip())


# --------------------------------------------------------------------------- tests


@dataclass
class LogRecord:
    """One nccl-tests run kept for the report: which test, which rail, what it printed."""

    test_id: str
    nodes: tuple[str, ...]
    collective: str
    rail: int | None
    step: Step
    judgements: list[RunJudgement] = field(default_factory=list)

    @property
    def label(self) -> str:
        rail = f" rail {self.rail}" if self.rail is not None else ""
        return f"{self.collective}_perf on {'+'.join(self.nodes)}{rail} ({self.test_id})"


@dataclass
class Outcome:
    result: TestResult
    logs: list[LogRecord] = field(default_factory=list)
    burnin: dict[str, Any] | None = None
    burnin_error: str = ""


class Campaign:
    def __init__(self, cfg: CampaignConfig, slurm: Slurm, out: Path, say: Say) -> None:
        self.cfg = cfg
        self.slurm = slurm
        self.out = out
        self.say = say
        self.thresholds = load_thresholds()
        self.logs: list[LogRecord] = []
        # Every burn-in document of every node, in run order: a node measured again (a
        # compute suspect) has two, and its GPUs are judged on the mean of both.
        self.burnin_docs: dict[str, list[dict[str, Any]]] = {}
        self.burnin_errors: dict[str, str] = {}
        self.local_done: set[str] = set()
        (out / "logs").mkdir(parents=True, exist_ok=True)

    def _keep(self, name: str, step: Step) -> None:
        text = f"# {shell(step.argv)}\n# rc {step.rc}, {step.seconds:.1f} s\n" + step.stdout
        if step.stderr.strip():
            text += "\n# stderr:\n" + step.stderr
        (self.out / "logs" / name).write_text(text, encoding="utf-8")

    def _nccl(self, test: Test, nodes: Sequence[str], collective: str, rail: int | None,
              kind: str, ranks: int | None) -> LogRecord:  # fmt: skip
        step = self.slurm.run(nccl_line(self.cfg.launch, nodes, collective, rail))
        record = LogRecord(test.test_id, tuple(nodes), collective, rail, step)
        suffix = f"-rail{rail}" if rail is not None else ""
        self._keep(f"{test.test_id}-{collective}{suffix}.log", step)
        options = JudgeOptions(
            profile=self.cfg.profile,
            kind=kind,
            expected_ranks=ranks,
            expected_max_bytes=MAX_BYTES if kind == "1node" else None,
        )
        try:
            log = parse_nccl_log(step.stdout, record.label)
            record.judgements = judge_log(log, self.thresholds, options)
        except UserError as err:
            text = "; ".join(p.message for p in err.problems)
            record.judgements = []
            record.step.stderr += f"\n(no nccl-tests output: {text}; {_why(step)})"
        for j in record.judgements:
            j.verdict.subject = record.label
        return record

    def _run_local(self, test: Test) -> Outcome:
        node = test.nodes[0]
        step = self.slurm.run(burnin_line(self.cfg.launch, node))
        self._keep(f"{test.test_id}-burnin.json", step)
        outcome = Outcome(TestResult(test.test_id))
        failed: list[int] = []
        tflops: float | None = None
        error = ""
        try:
            doc = json.loads(step.stdout[step.stdout.index("{") :])
            outcome.burnin = doc
            gpus = doc.get("gpus") or []
            failed = [int(g.get("index") or i) for i, g in enumerate(gpus) if not gpu_ok(g)]
            rates = [g["gemm"]["tflops"] for g in gpus if (g.get("gemm") or {}).get("tflops")]
            tflops = min(rates) if rates else None
        except (ValueError, KeyError, TypeError):
            error = f"burn-in gave no result: {_why(step)}"
            outcome.burnin_error = error
        # A node measured again (a compute suspect) runs the burn-in only: its collectives
        # passed in the first round, or it would not be measured again.
        again = node in self.local_done
        self.local_done.add(node)
        for collective in () if again else LOCAL_COLLECTIVES:
            record = self._nccl(test, [node], collective, None, "1node",
                                self.cfg.launch.gpus_per_node)  # fmt: skip
            outcome.logs.append(record)
            bad = [j for j in record.judgements if j.verdict.status is Status.FAIL]
            if not error and (bad or not record.judgements):
                first = bad[0].verdict.reasons[0] if bad else _why(record.step)
                error = f"{collective}_perf on {node}: {first}"
        outcome.result = TestResult(test.test_id, failed_gpus=tuple(failed), tflops=tflops,
                                    error=error)  # fmt: skip
        return outcome

    def _run_fabric(self, test: Test) -> Outcome:
        gbps: dict[int, float] = {}
        outcome = Outcome(TestResult(test.test_id))
        for rail in test.rails:
            record = self._nccl(test, test.nodes, FABRIC_COLLECTIVE, rail, "auto", None)
            outcome.logs.append(record)
            values = [j.verdict.metrics.get("busbw_gbps") for j in record.judgements]
            measured = [float(v) for v in values if isinstance(v, int | float)]
            # A rail whose job failed or printed no size carried nothing: 0 GB/s.
            gbps[rail] = min(measured) if measured and record.step.rc == 0 else 0.0
        outcome.result = TestResult(test.test_id, rail_gbps=gbps)
        return outcome

    def run_test(self, test: Test) -> Outcome:
        if test.kind is TestKind.LOCAL:
            return self._run_local(test)
        return self._run_fabric(test)

    def _record(self, test: Test, outcome: Outcome) -> None:
        """Keep a test's logs and burn-in document (or error), and say its result."""
        self.logs.extend(outcome.logs)
        if outcome.burnin is not None:
            self.burnin_docs.setdefault(test.nodes[0], []).append(outcome.burnin)
        if outcome.burnin_error:
            self.burnin_errors[test.nodes[0]] = outcome.burnin_error
        self.say(f"  {test.test_id} {'+'.join(test.nodes)}: {_result_text(outcome)}")

    def judge_burnins(self) -> BurninJudgement:
        """The burn-in's threshold pack on every run so far (a node measured again: the mean
        of its runs' throughput, every other check on every run)."""
        docs = [(node, doc) for node, runs in self.burnin_docs.items() for doc in runs]
        return judge_burnin([doc for _, doc in docs], self.cfg.burnin_rules or None,
                            sources=[node for node, _ in docs])  # fmt: skip

    def measure_again(self, nodes: Sequence[str]) -> list[str]:
        """Run the burn-in once more on these nodes (burn-in only: their collectives ran)."""
        if not nodes:
            return []
        start = time.monotonic()
        what = f"burn-in again on {', '.join(nodes)} (failed by the threshold pack on one run)"
        self.say(f"{what}: running")
        tests = [Test(f"again-{node}", TestKind.LOCAL, (node,), ()) for node in nodes]
        with ThreadPoolExecutor(max_workers=min(len(tests), self.cfg.max_parallel)) as pool:
            outcomes = list(pool.map(self._run_local, tests))
        for test, outcome in zip(tests, outcomes, strict=True):
            self._record(test, outcome)
        line = f"{what}: {time.monotonic() - start:.1f} s"
        self.say(line)
        return [line]

    def plan(self, nodes: Sequence[str]) -> tuple[IsolationPlanner, list[str]]:
        cfg = self.cfg
        layout = FabricLayout(
            nodes=tuple(nodes),
            rails=max(cfg.rails, 1),
            leaf_of={
                (n, r): cfg.leaves.get(n, ("rail0",))[r] if cfg.rails else "none"
                for n in nodes
                for r in range(max(cfg.rails, 1))
            },
        )
        config = IsolationConfig(
            expected_gbps=cfg.expected_rail_gbps,
            noise=cfg.noise,
            compute_warn_fraction=cfg.compute_warn_fraction,
            compute_fail_fraction=cfg.compute_fail_fraction,
        )
        planner = IsolationPlanner(layout, config)
        summary: list[str] = []
        while (rnd := planner.plan_next_round()) is not None:
            start = time.monotonic()
            self.say(f"{rnd.summary()}: running")
            workers = min(len(rnd.tests), self.cfg.max_parallel)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                outcomes = list(pool.map(self.run_test, rnd.tests))
            for test, outcome in zip(rnd.tests, outcomes, strict=True):
                self._record(test, outcome)
            planner.observe([o.result for o in outcomes])
            line = f"{rnd.summary()}: {time.monotonic() - start:.1f} s"
            summary.append(line)
            self.say(line)
        return planner, summary


def _why(step: Step) -> str:
    """Why a step gave nothing: its first error line (srun's or the program's), or its rc."""
    lines = [line.strip() for line in step.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [f"exit code {step.rc}, no output"])[0]


def _result_text(outcome: Outcome) -> str:
    res = outcome.result
    if res.error:
        return f"error: {res.error}"
    if res.rail_gbps:
        return ", ".join(f"rail {r} {v:.1f} GB/s" for r, v in sorted(res.rail_gbps.items()))
    gpus = f", failed GPUs {list(res.failed_gpus)}" if res.failed_gpus else ""
    return f"GEMM {res.tflops:.3g} TFLOPS (slowest GPU){gpus}" if res.tflops else "done"


def _node_of(verdict: Verdict, nodes: Sequence[str]) -> str | None:
    metrics = verdict.metrics or {}
    node = metrics.get("node")
    if isinstance(node, str) and node in nodes:
        return node
    return verdict.subject if verdict.subject in nodes else None


def owned_failures(verdicts: Sequence[Verdict], nodes: Sequence[str]) -> dict[str, list[str]]:
    """Each node's reasons from the failed verdicts it owns: a failed GPU fails its node,
    whichever judge found it (the burn-in's threshold pack can fail a GPU that the planner,
    judging the node against the fleet's noise, only watches). A reason that does not start
    with the node's name gets the verdict's subject in front ("gpu1 GPU 0: ..."); each once."""
    out: dict[str, list[str]] = {}
    for v in verdicts:
        owner = _node_of(v, nodes)
        if owner is None or v.status is not Status.FAIL:
            continue
        first = v.reasons[0] if v.reasons else f"failed its {v.kind} check"
        reason = first if first.startswith((f"{owner}:", f"{owner} ")) else f"{v.subject}: {first}"
        if reason not in out.get(owner, []):
            out.setdefault(owner, []).append(reason)
    return out


def failed_on_one_run(verdicts: Sequence[Verdict], runs: Mapping[str, int],
                      errors: Mapping[str, str], nodes: Sequence[str]) -> list[str]:  # fmt: skip
    """Nodes whose burn-in the threshold pack failed on a single run, to be measured again
    before they are drained. On a shared or noisy fleet one run's throughput can fall below
    the fleet median by chance; the planner measures a slow GEMM again for the same reason.
    A second run cannot hide anything else: throughput is judged on the mean of the runs,
    every other check (completion, correctness, load efficiency, throttling) on every run. A
    burn-in that gave no result is not measured again (its error drains the node)."""
    out = set()
    for v in verdicts:
        owner = _node_of(v, nodes)
        if owner and v.status is Status.FAIL and runs.get(owner, 0) == 1 and owner not in errors:
            out.add(owner)
    return sorted(out)


def verdict_line(verdicts: Sequence[Verdict], nodes: Sequence[str], drained: Mapping[str, str],
                 not_tested: Sequence[str]) -> str:  # fmt: skip
    """The one-line verdict: the drained nodes with their reasons; else how many nodes passed,
    or the first failure that no node owns (so FAIL never comes with "all passed")."""
    if drained:
        return "FAIL: " + "; ".join(f"{n} drained ({r.removeprefix(REASON_PREFIX)})"
                                    for n, r in drained.items())  # fmt: skip
    failed = [r for v in verdicts if v.status is Status.FAIL for r in v.reasons[:1]]
    if failed:
        line = f"FAIL: {failed[0]}; nothing drained"
    else:
        status = worst([v.status for v in verdicts]).value.upper()
        kept = len(nodes) - len(not_tested)
        line = f"{status}: {kept} of {len(nodes)} GPU nodes passed, nothing drained"
    if not_tested:
        line += "; not tested: " + ", ".join(not_tested)
    return line


def simulated_figures(cfg: CampaignConfig, nodes: Sequence[str]) -> str:
    """What the planner costs at this site's size on hardware (the simulator's cost model):
    rounds and hours for a healthy site and for one with a bad NIC."""
    if len(nodes) < 2 or cfg.rails < 1:
        return ""
    layout = FabricLayout(
        nodes=tuple(nodes),
        rails=cfg.rails,
        leaf_of={
            (n, r): cfg.leaves.get(n, ("rail0",) * cfg.rails)[r]
            for n in nodes
            for r in range(cfg.rails)
        },
    )
    lines = []
    nic = Fault(FaultKind.NIC, node=nodes[-1], rail=cfg.rails - 1, mode="degraded", factor=0.33)
    cases: list[tuple[str, list[Fault]]] = [
        ("healthy", []),
        ("one NIC at a third of its rate", [nic]),
    ]
    # This phase runs a fabric test once per rail, one rail after the other: 90 s each.
    cost = CostModel(pair_s=90.0 * cfg.rails)
    for name, faults in cases:
        outcome = run_adaptive(SimCluster(layout, faults), cost)
        lines.append(
            f"simulated on hardware ({len(nodes)} nodes, {cfg.rails} rails), {name}: "
            f"{len(outcome.rounds)} rounds, {outcome.tests} tests, about "
            f"{outcome.wall_s / 60:.0f} min with a 5 min burn-in and 90 s per rail and test"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- the phase


def run_campaign(cfg: CampaignConfig, slurm: Slurm, out: Path, say: Say) -> dict[str, Any]:
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    campaign = Campaign(cfg, slurm, out, say)
    states = slurm.node_states()
    missing = [n for n in cfg.nodes if n not in states]
    if missing:
        raise UserError([Problem("nodes", f"Slurm does not know {', '.join(missing)}",
                                 "run the Slurm phase first (playbooks/slurm.yml)")])  # fmt: skip
    verdicts: list[Verdict] = []
    node_fail: dict[str, list[str]] = {}
    node_warn: dict[str, list[str]] = {}
    for node in cfg.nodes:
        problems = list(cfg.passive.get(node, []))
        status = Status.FAIL if problems else Status.PASS
        reasons = [f"{node}: {p}" for p in problems] or [f"{node}: passive checks passed"]
        verdicts.append(Verdict(node, "passive", status, reasons, {"scope": "node", "node": node}))
        if problems:
            node_fail.setdefault(node, []).extend(reasons)
    testable: list[str] = []
    resumed: list[str] = []
    for node in cfg.nodes:
        state, reason = states[node]
        if node in node_fail:
            continue
        if drained_by_us(state, reason) or not re.search(r"DRAIN|DOWN|FAIL", state.upper()):
            testable.append(node)
            if drained_by_us(state, reason):
                resumed.append(node)
            continue
        text = f"{node}: not tested: Slurm has it {state} ({reason or 'no reason given'})"
        node_warn.setdefault(node, []).append(text)
        verdicts.append(Verdict(node, "slurm", Status.WARN, [text], {"scope": "node",
                                                                      "node": node}))  # fmt: skip
    say(f"{cfg.site}: {len(cfg.nodes)} GPU nodes, {cfg.rails} rails; passive checks failed on "
        f"{len(node_fail)}; testing {len(testable)} through Slurm")  # fmt: skip
    rounds: list[str] = []
    iso: list[Verdict] = []
    if testable:
        slurm.reserve(testable)
        try:
            for node in resumed:
                slurm.resume(node)
                say(f"{node}: resumed inside the reservation, to be tested again")
            planner, rounds = campaign.plan(testable)
            iso = planner.verdicts()
            burnin_runs = {node: len(docs) for node, docs in campaign.burnin_docs.items()}
            once = failed_on_one_run(campaign.judge_burnins().verdicts, burnin_runs,
                                     campaign.burnin_errors, testable)  # fmt: skip
            rounds += campaign.measure_again(once)
        finally:
            slurm.release()
    verdicts += iso
    for v in iso:
        owner = _node_of(v, cfg.nodes)
        if owner and v.subject == owner and v.status is Status.FAIL:
            node_fail.setdefault(owner, []).extend(v.reasons)
    burnin = campaign.judge_burnins()
    for v in burnin.verdicts:
        v.kind = "burnin"
    burnin_verdicts = list(burnin.verdicts)
    for node, error in campaign.burnin_errors.items():
        burnin_verdicts.append(Verdict(node, "burnin", Status.FAIL, [f"{node}: {error}"],
                                       {"scope": "node", "node": node}))  # fmt: skip
    verdicts += burnin_verdicts
    for node, reasons in owned_failures(burnin_verdicts, cfg.nodes).items():
        node_fail.setdefault(node, []).extend(r for r in reasons if r not in node_fail[node])
    runs = [ReportRun.from_judgement(j) for rec in campaign.logs for j in rec.judgements]
    drained: dict[str, str] = {}
    for node in cfg.nodes:
        if node in node_fail:
            reason = drain_reason(node_fail[node])
            if cfg.drain:
                slurm.drain(node, reason)
            drained[node] = reason
            say(f"{node}: drained: {reason}")
    still = [n for n in resumed if n not in drained]
    overall = Status.FAIL if drained else worst([v.status for v in verdicts])
    line = verdict_line(verdicts, cfg.nodes, drained, sorted(node_warn))
    sim = simulated_figures(cfg, cfg.nodes)
    head = [f"verdict: {line}"]
    head += [f"drained in Slurm: {n}: {r}" for n, r in drained.items()]
    head += [f"resumed (passed again): {n}" for n in still]
    summary_text = "\n".join([*head, "", *rounds, *([sim] if sim else [])])
    report = Report(
        title=f"{cfg.site}: cluster verification",
        runs=runs,
        verdicts=verdicts,
        burnin=burnin.rows,
        isolation_summary=summary_text or None,
    )
    for rec in campaign.logs:
        if rec.rail is None or len(rec.nodes) != 2:
            continue
        measured = [j.verdict.metrics.get("busbw_gbps") for j in rec.judgements]
        key = (rec.nodes[0], rec.nodes[1])
        numbers = [float(v) for v in measured if isinstance(v, int | float)]
        # A rail with no result (the job failed or printed nothing) leaves the pair with none:
        # the heatmap shows it as failed rather than as a measured 0 GB/s.
        value = min(numbers) if numbers else None
        if key in report.pairs:
            old = report.pairs[key]
            value = None if old is None or value is None else min(old, value)
        report.pairs[key] = value
        bad = any(j.verdict.status is Status.FAIL for j in rec.judgements) or rec.step.rc
        if bad or key not in report.pair_status:
            report.pair_status[key] = Status.FAIL if bad else Status.PASS
    files = write_report(report, out)
    if cfg.textfile:
        target = Path(cfg.textfile)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_text(files["prometheus"].read_text(encoding="utf-8"), encoding="utf-8")
        temporary.chmod(0o644)
        temporary.replace(target)
    summary = {
        "site": cfg.site,
        "verdict": overall.value,
        "line": line,
        "drained": drained,
        "resumed": still,
        "not_tested": sorted(node_warn),
        "rounds": rounds,
        "jobs": len(campaign.logs) + sum(len(docs) for docs in campaign.burnin_docs.values()),
        "seconds": round(time.monotonic() - started, 1),
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "report": {k: str(v) for k, v in files.items()},
        "burnin_fleet": burnin.fleet,
        "tflops_median": statistics.median([r["tflops"] for r in burnin.rows if r["tflops"]])
        if any(r["tflops"] for r in burnin.rows)
        else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


# ----------------------------------------------------------------- a pass that still holds

PACKAGE_DIR = Path(__file__).resolve().parent


def fingerprint(data: Mapping[str, Any]) -> str:
    """What a pass vouches for: the campaign's config as the playbook wrote it, except the passive
    findings (judged on every run), with each node's state (`node_state`: boot, kernel, version
    locks), and the code and threshold packs of this package that judged it."""
    digest = hashlib.sha256()
    basis = {k: v for k, v in data.items() if k != "passive"}
    digest.update(json.dumps(basis, sort_keys=True, default=str).encode())
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def read_record(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The last run's record (--last) and, when there is none to use, why."""
    if not path.is_file():
        return None, "no verification on record"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        for key in ("fingerprint", "verdict", "line", "finished_at", "folder"):
            if not isinstance(record.get(key), str):
                raise ValueError(f"no {key}")
        datetime.strptime(record["finished_at"], "%Y-%m-%dT%H:%M:%SZ")
    except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        return None, f"the record {path} is unreadable ({err})"
    return record, ""


def why_measure(
    cfg: CampaignConfig,
    record: dict[str, Any] | None,
    no_record: str,
    digest: str,
    now: datetime,
) -> str | None:
    """None when the recorded pass still holds (nothing to measure); otherwise why this run
    measures. A pass holds while nothing it vouched for changed, it is younger than
    reverify_after_hours, no passive check finds a problem and its report is still there."""
    if cfg.reverify_after_hours == 0:
        return "reverify_after_hours is 0: every run measures"
    if record is None:
        return no_record
    if record["verdict"] != Status.PASS.value:
        return f"the last verification ({record['finished_at']}) did not pass: {record['line']}"
    if record["fingerprint"] != digest:
        return (
            f"changed since the pass of {record['finished_at']}: the GPU nodes, a boot, "
            "kernel or version lock, the phase's settings or gpufleet's verification code"
        )
    finished = datetime.strptime(record["finished_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    hours = (now - finished).total_seconds() / 3600
    if not 0 <= hours < cfg.reverify_after_hours:
        return (f"the pass of {record['finished_at']} is {hours:.0f} h old "
                f"(reverify_after_hours: {cfg.reverify_after_hours:g})")  # fmt: skip
    if cfg.passive:
        return f"passive checks found problems on {', '.join(sorted(cfg.passive))}"
    if not (Path(record["folder"]) / "summary.json").is_file():
        return f"the pass's report is gone ({record['folder']})"
    return None


def write_record(path: Path, summary: Mapping[str, Any], digest: str, out: Path) -> None:
    record = {
        "fingerprint": digest,
        "verdict": summary["verdict"],
        "line": summary["line"],
        "finished_at": summary["finished_at"],
        "folder": str(out),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m gpufleet.verify.campaign",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--config", required=True, help="campaign config (JSON)")
    parser.add_argument("--out", required=True, help="folder for the report and the logs")
    parser.add_argument(
        "--last",
        help="the record of the last run: a pass that still holds is named, not measured "
        "again; this run's result is recorded there",
    )
    parser.add_argument(
        "--force", action="store_true", help="measure even when the last pass still holds"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    progress = out / "progress.log"

    def say(text: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        with progress.open("a", encoding="utf-8") as f:
            f.write(f"{stamp} {text}\n")
        print(f"{stamp} {text}", flush=True)

    try:
        data = json.loads(Path(args.config).read_text(encoding="utf-8"))
        cfg = config_from(data, args.config)
        digest = ""
        why: str | None = "asked to measure (--force)"
        if args.last:
            digest = fingerprint(data)
            record, no_record = read_record(Path(args.last))
            if not args.force:
                why = why_measure(cfg, record, no_record, digest, datetime.now(UTC))
            if why is None and record is not None:
                print(f"unchanged since {record['finished_at']}: {record['line']}")
                print("nothing it vouched for changed (GPU nodes, boots, kernels, version locks, "
                      "settings, gpufleet's verification code); `gpufleet verify run` measures "
                      "again")  # fmt: skip
                print(f"report: {Path(record['folder']) / 'report.html'}")
                print(f"folder: {record['folder']}")
                return 0
        out.mkdir(parents=True, exist_ok=True)
        if args.last:
            # A run that stops halfway leaves no pass behind to be trusted.
            Path(args.last).unlink(missing_ok=True)
            say(f"measuring: {why}")
        summary = run_campaign(cfg, Slurm(cfg.step_timeout_s), out, say)
        if args.last:
            write_record(Path(args.last), summary, digest, out)
    except (OSError, json.JSONDecodeError) as err:
        print(f"error: {args.config}: {err}", file=sys.stderr)
        return 2
    except UserError as err:
        print(err.render(), file=sys.stderr)
        return 2
    say(f"report: {out / 'report.html'}")
    print(f"folder: {out}")
    say(summary["line"])
    return 1 if summary["verdict"] == "fail" else 0


if __name__ == "__main__":
    sys.exit(main())
