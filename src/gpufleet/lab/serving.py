"""The lab's serving layer seen from outside: requests through the VIP and the daemons' own
records of what happened (HAProxy's health-check log, keepalived's notify log).

Used by the lab's system test and by bench/bench_serving.py; lab only.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime

from gpufleet.errors import UserError
from gpufleet.lab import core
from gpufleet.lab import podman as pm
from gpufleet.model import Cluster

# keepalived's notify hook writes one line per transition (roles/keepalived):
#   2026-12-03T05:20:01.123Z gpufleet_vip MASTER 150
KEEPALIVED_LOG = "/var/log/gpufleet-keepalived.log"


@dataclass(frozen=True)
class Endpoint:
    """Where clients reach the serving VIP: its address, the name its certificate carries, the
    lab CA's file and the lab's API key."""

    address: str
    hostname: str
    ca: str
    api_key: str
    port: int = 443


def endpoint(lab: core.Lab, cluster: Cluster) -> Endpoint:
    vip = next((v for v in cluster.vips if v.name == cluster.serving.vip), None)
    if vip is None or not cluster.serving.models:
        raise UserError(f"{lab.name}: the site serves no model behind a VIP (serving:)")
    secrets = core.serving_secrets(lab, cluster)
    return Endpoint(str(vip.address), vip.hostname, secrets["ca"], secrets["api_key"],
                    cluster.serving.port)  # fmt: skip


@dataclass
class Answer:
    status: int  # 0: no HTTP answer (refused, reset, timed out)
    served_by: str | None
    seconds: float
    started: float
    error: str = ""


def complete(ep: Endpoint, model: str, prompt: str = "hello lab", max_tokens: int = 4,
             session: str | None = None, key: str | None = None,
             timeout: float = 15) -> Answer:  # fmt: skip
    """One non-streaming completion through the VIP over TLS (certificate checked against the
    lab CA and the VIP's name), on a new connection."""
    ctx = ssl.create_default_context(cafile=ep.ca)
    headers = {"Content-Type": "application/json", "Connection": "close"}
    key = ep.api_key if key is None else key
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if session:
        headers["X-Session-ID"] = session
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens})
    started = time.time()
    try:
        raw = socket.create_connection((ep.address, ep.port), timeout=timeout)
        conn = http.client.HTTPSConnection(ep.address, ep.port, timeout=timeout, context=ctx)
        conn.sock = ctx.wrap_socket(raw, server_hostname=ep.hostname)
        conn.request("POST", "/v1/completions", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read().decode(errors="replace")
        conn.close()
        error = "" if resp.status == 200 else data[:200]
        return Answer(resp.status, resp.getheader("X-Served-By"), time.time() - started,
                      started, error)  # fmt: skip
    except (OSError, http.client.HTTPException) as e:
        return Answer(0, None, time.time() - started, started, repr(e)[:200])


def holds(lab: core.Lab, node: str, address: str) -> bool:
    """Whether `node` carries `address` (the VIP) on one of its interfaces."""
    run = pm.exec_in(lab.container(node), "ip", "-4", "-o", "addr", "show", check=False)
    return f" {address}/" in run.stdout


def became_master(lab: core.Lab, node: str, after: float) -> float | None:
    """When `node`'s keepalived first logged MASTER after `after` (unix time)."""
    run = pm.exec_in(lab.container(node), "cat", KEEPALIVED_LOG, check=False)
    for line in run.stdout.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "MASTER":
            when = datetime.fromisoformat(fields[0].replace("Z", "+00:00")).timestamp()
            if when > after:
                return when
    return None


def backend_down_at(lab: core.Lab, lb: str, server: str, after: float) -> float | None:
    """When `lb`'s HAProxy first logged `server` DOWN after `after` (unix time), from its
    journal (HAProxy logs health-check transitions itself)."""
    log = pm.exec_in(lab.container(lb), "journalctl", "--no-pager", "-o", "short-unix",
                     "-t", "haproxy", check=False).stdout  # fmt: skip
    for line in log.splitlines():
        if f"/{server} is DOWN" in line:
            when = float(line.split()[0])
            if when > after:
                return when
    return None


def master(lab: core.Lab, cluster: Cluster) -> str | None:
    """The lb node that holds the serving VIP now."""
    vip = next(v for v in cluster.vips if v.name == cluster.serving.vip)
    running = [n for n in cluster.serving.balancers if pm.is_running(lab.container(n))]
    return next((n for n in running if holds(lab, n, str(vip.address))), None)
