"""Benchmark: serving through the lab's VIP under load, and what each fault costs.

Run: .venv/bin/python bench/bench_serving.py [--site inventories/lab] [--workers 8]
                                             [--seconds 10] [--no-affinity] [--json FILE]

Needs a running lab with its serving phase converged (`make lab`). Lab addresses only: the
load comes from this host to the VIP over TLS (the lab CA, the lab's API key), a new
connection per request, each a non-streaming completion of 8 tokens (the lab's stand-in for
vLLM spends 10 ms a token); a worker whose request failed waits 0.1 s before the next.
Each phase prints its requests, failed ones and the outage (first failed request's start to
the last one's end). Every phase is bounded by --seconds of load; the whole run takes
about five minutes.

1. steady: requests/s and latency percentiles (p50, p99) for model-a (two backends).
2. backend killed: under load, gpu1's model server gets SIGKILL (systemd restarts it 5 s
   later); failed requests before and after the active HAProxy logged gpu1 DOWN, and the
   detection time (kill to that log line).
3. HAProxy of the master LB stopped under load: failed requests, and the takeover time (stop to
   the peer's keepalived logging MASTER). HAProxy is started again afterwards; with no
   preemption the VIP stays on the peer.
4. the master LB (the peer, now) powered off through its BMC (Redfish ForceOff) under load:
   the same figures, timed from the Redfish call; then powered on again and waited for.
5. affinity (skipped with --no-affinity): 16 conversations of 6 turns, each turn's prompt the
   conversation so far plus a new line, turns of one conversation in order, conversations side
   by side; once with least-connections and once with consistent hashing on X-Session-ID
   (bounded load), `gpufleet lab converge -e haproxy_balance=...` between them and the spec's
   choice put back at the end. A hit is a turn served by the backend that served the turn
   before it: the only backend whose prefix cache (vLLM's automatic prefix caching) holds the
   conversation so far.

Figures are for the notes; nothing here is enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gpufleet.lab import core
from gpufleet.lab import podman as pm
from gpufleet.lab import serving as sv

REPO = Path(__file__).resolve().parent.parent
MODEL = "model-a"
# After a failed request a worker waits this long before the next, as a client would; the
# failed count therefore scales with the outage (workers x outage / delay), not with how fast
# a refused connection comes back.
RETRY_DELAY = 0.1


@dataclass
class Phase:
    name: str
    requests: int = 0
    failed: int = 0
    requests_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    event: str = ""
    event_s: float | None = None  # detection or takeover time
    failed_before_event: int = 0
    failed_after_event: int = 0
    outage_s: float = 0.0  # first failed request's start to the last one's end
    errors: list[str] = field(default_factory=list)


class Load:
    """`workers` threads sending completions through the VIP until stopped."""

    def __init__(self, ep: sv.Endpoint, workers: int) -> None:
        self.ep, self.workers = ep, workers
        self.answers: list[sv.Answer] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            a = sv.complete(self.ep, MODEL, max_tokens=8, timeout=10)
            with self._lock:
                self.answers.append(a)
            if a.status != 200:
                time.sleep(RETRY_DELAY)  # a client's pause before it tries again

    def __enter__(self) -> Load:
        self._threads = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.workers)
        ]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=20)


def summarise(name: str, answers: list[sv.Answer], seconds: float) -> Phase:
    ok = sorted(a.seconds for a in answers if a.status == 200)
    failed = [a for a in answers if a.status != 200]
    p = Phase(name, len(answers), len(failed))
    p.requests_per_s = round(len(ok) / seconds, 1) if seconds else 0.0
    if len(ok) >= 2:
        cuts = statistics.quantiles(ok, n=100, method="inclusive")
        p.p50_ms, p.p99_ms = round(cuts[49] * 1000, 1), round(cuts[98] * 1000, 1)
    p.errors = sorted({f"{a.status} {a.error[:80]}" for a in failed})[:5]
    if failed:
        end = max(a.started + a.seconds for a in failed)
        p.outage_s = round(end - min(a.started for a in failed), 2)
    return p


def under_load(ep: sv.Endpoint, workers: int, seconds: float, name: str,
               fault: Callable[[], float] | None = None,
               event: Callable[[float], float | None] | None = None,
               event_name: str = "") -> Phase:  # fmt: skip
    """Load for `seconds`; a third of the way in, `fault()` (returns when it struck); then
    `event(struck)` polled until it gives the time of the event the fault should cause."""
    with Load(ep, workers) as load:
        start = time.time()
        time.sleep(seconds / 3)
        struck = fault() if fault else None
        seen = None
        while event and struck is not None and seen is None and time.time() - struck < 30:
            seen = event(struck)
            time.sleep(0.2)
        time.sleep(max(0.0, start + seconds - time.time()))
        end = time.time()
    answers = [a for a in load.answers if start <= a.started < end]
    phase = summarise(name, answers, end - start)
    if struck is not None:
        phase.event = event_name
        if seen is None:
            phase.errors.append(f"{event_name}: not seen within 30 s")
        else:
            phase.event_s = round(seen - struck, 2)
            failed = [a for a in answers if a.status != 200]
            phase.failed_before_event = sum(1 for a in failed if a.started < seen)
            phase.failed_after_event = sum(1 for a in failed if a.started >= seen)
    return phase


def gpufleet(*args: str) -> None:
    run = subprocess.run([str(REPO / ".venv/bin/gpufleet"), *args], capture_output=True,
                         text=True, check=False)  # fmt: skip
    if run.returncode != 0:
        sys.exit(f"gpufleet {' '.join(args)}: exit {run.returncode}\n"
                 f"{run.stdout[-3000:]}{run.stderr}")  # fmt: skip


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if probe():
            return
        time.sleep(1)
    sys.exit(f"bench_serving: {what}: not within {timeout:.0f} s")


def affinity(ep: sv.Endpoint, workers: int, sessions: int = 16, turns: int = 6) -> dict:
    """Conversations side by side, turns in order: the share of turns after the first served
    by the backend that served the turn before."""
    run_id = os.urandom(3).hex()

    def conversation(i: int) -> list[str | None]:
        prompt, served = f"system: you are assistant {i}.", []
        for turn in range(turns):
            prompt += f" user turn {turn} of conversation {i}."
            a = sv.complete(ep, MODEL, prompt=prompt, max_tokens=8, session=f"{run_id}-{i}")
            served.append(a.served_by if a.status == 200 else None)
        return served

    with ThreadPoolExecutor(workers) as pool:
        runs = list(pool.map(conversation, range(sessions)))
    pairs = [(r[k - 1], r[k]) for r in runs for k in range(1, turns)]
    hits = sum(1 for prev, cur in pairs if cur is not None and cur == prev)
    per_backend: dict[str, int] = {}
    for r in runs:
        for b in r:
            per_backend[str(b)] = per_backend.get(str(b), 0) + 1
    return {"turns": sessions * turns, "hit_rate": round(hits / len(pairs), 3),
            "per_backend": per_backend,
            "failed": sum(1 for r in runs for b in r if b is None)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--site", default="inventories/lab")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--no-affinity", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not 1 <= args.workers <= 32 or not 3 <= args.seconds <= 60:
        sys.exit("bench_serving: --workers 1..32 and --seconds 3..60 (the bench is bounded)")

    lab, cluster = core.open_lab(args.site)
    if not pm.container_exists(lab.container(cluster.serving.balancers[0])):
        sys.exit(f"bench_serving: the lab of {args.site} is not up (make lab)")
    ep = sv.endpoint(lab, cluster)
    first = sv.complete(ep, MODEL)
    if first.status != 200:
        sys.exit(f"bench_serving: {MODEL} through {ep.address}: {first.status} {first.error}")
    master = sv.master(lab, cluster)
    if master is None:
        sys.exit("bench_serving: no lb node holds the VIP")
    peer = next(n for n in cluster.serving.balancers if n != master)
    server = next(m for m in cluster.serving.models if m.name == MODEL)
    backend = server.nodes[0]
    unit = f"gpufleet-model-server-{server.port}.service"
    print(f"VIP {ep.address} on {master}; {args.workers} workers, {args.seconds:.0f} s a phase")

    phases = [under_load(ep, args.workers, args.seconds, "steady")]

    def kill_backend() -> float:
        pm.exec_in(lab.container(backend), "systemctl", "kill", "--signal=SIGKILL", unit)
        return time.time()

    phases.append(under_load(
        ep, args.workers, args.seconds, f"{backend}'s model server killed", kill_backend,
        lambda t: sv.backend_down_at(lab, master, backend, t), f"{master} logs {backend} DOWN",
    ))  # fmt: skip
    wait_for(f"{backend}'s model server back",
             lambda: pm.exec_in(lab.container(backend), "systemctl", "is-active", unit,
                                check=False).stdout.strip() == "active")  # fmt: skip

    def stop_haproxy() -> float:
        t = time.time()
        pm.exec_in(lab.container(master), "systemctl", "stop", "haproxy")
        return t

    phases.append(under_load(
        ep, args.workers, args.seconds, f"{master}'s HAProxy stopped", stop_haproxy,
        lambda t: sv.became_master(lab, peer, t), f"VIP on {peer}",
    ))  # fmt: skip
    pm.exec_in(lab.container(master), "systemctl", "start", "haproxy")

    def power_off() -> float:
        t = time.time()
        core.redfish_power(lab, cluster.node(peer), "ForceOff")
        return t

    phases.append(under_load(
        ep, args.workers, args.seconds, f"{peer} powered off (Redfish)", power_off,
        lambda t: sv.became_master(lab, master, t), f"VIP on {master}",
    ))  # fmt: skip
    core.redfish_power(lab, cluster.node(peer), "On")
    wait_for(f"{peer}'s keepalived back after power-on",
             lambda: pm.is_running(lab.container(peer)) and pm.exec_in(
                 lab.container(peer), "systemctl", "is-active", "keepalived", check=False
             ).stdout.strip() == "active")  # fmt: skip

    result: dict = {"vip": ep.address, "workers": args.workers,
                    "phases": [asdict(p) for p in phases]}  # fmt: skip
    if not args.no_affinity:
        spec_choice = "session" if cluster.serving.affinity == "session" else "leastconn"
        result["affinity"] = {}
        for balance in ("leastconn", "session"):
            gpufleet("lab", "converge", "--site", args.site, "--playbook",
                     "playbooks/serving.yml", "-e", f"haproxy_balance={balance}")  # fmt: skip
            result["affinity"][balance] = affinity(ep, args.workers)
        if spec_choice != "session":
            gpufleet("lab", "converge", "--site", args.site, "--playbook", "playbooks/serving.yml")

    print(f"{'phase':34} {'req':>5} {'fail':>4} {'outage s':>8} {'req/s':>6} {'p50 ms':>7} "
          f"{'p99 ms':>7}  event")  # fmt: skip
    for p in phases:
        ev = f"{p.event}: {p.event_s} s (failed before/after: {p.failed_before_event}/" \
             f"{p.failed_after_event})" if p.event else ""  # fmt: skip
        print(f"{p.name:34} {p.requests:5d} {p.failed:4d} {p.outage_s:8.2f} "
              f"{p.requests_per_s:6.1f} {p.p50_ms:7.1f} {p.p99_ms:7.1f}  {ev}")  # fmt: skip
        for e in p.errors:
            print(f"{'':34} error: {e}")
    for balance, a in result.get("affinity", {}).items():
        print(
            f"affinity {balance:10} {a['turns']} turns, hit rate {a['hit_rate']:.0%}, "
            f"per backend {a['per_backend']}, failed {a['failed']}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
