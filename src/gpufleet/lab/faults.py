"""`gpufleet lab fault NODE --<fault>`: break a lab node the way real hardware breaks.

Each layer adds the faults it needs here, and proves that its checks notice. The fabric's:

  --rail-down N   rail N's interface of the node goes down (a dead NIC port or cable)
  --swap-rails    the node's first two rails swap cables: each rail's NIC, with its own
                  config, now sits on the other rail's network
  --clear         undo every fault set on the node

Slurm's (and later monitoring's) GPU fault:

  --xid CODE      the node's kernel log gains the NVIDIA Xid lines of CODE recorded on a real
                  H100 node (48: uncorrectable ECC, 63: row remap, 94: contained ECC,
                  119: GSP timeout); the replayed `dmesg` of lab GPU nodes prints them until
                  --clear. The node health check must drain the node at the next job.

Verification's (playbooks/verify.yml), for the phase that runs nccl-tests and the burn-in
through Slurm and must find and drain exactly the faulty node:

  --nccl-degraded  every nccl-tests job that includes the node prints the degraded pair run
                  recorded on an H100 cluster (alltoall at a fifth of the healthy pair's
                  busbw), on every rail: a node-wide bandwidth fault
  --slow-gpu      the node's container is capped at 15% of one CPU core (its cgroup's CPU
                  quota) and its CPU weight drops to a 64th of the other nodes', so the
                  burn-in, which runs for real on CPU in the lab, measures a slow "GPU", also
                  when other work on the host slows every node (the weight keeps it the slowest)
  (--rail-down N also makes the replayed nccl-tests fail on that rail: see below)

Serving's, for the load balancers' health checks and the serving bench:

  --model-server MODE  the node's model servers (the lab's stand-in for vLLM) turn faulty:
                  error (/health 503, requests 500), hang (accepts, never answers), slow
                  (tokens 50 times slower) or crash (exits at the next request; systemd
                  restarts it), until --clear.

A swap is emulated by renaming the two interfaces (the container's NIC that is on rail 1's
podman network takes rail 0's name, so the rail config for rail 0 lands on it) and letting
systemd-networkd configure them again by name, as a re-cabled server would be. Faults are
recorded in the lab state, so `--clear` knows what to undo and `status` can show them.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from gpufleet.errors import UserError
from gpufleet.lab import core
from gpufleet.lab import podman as pm
from gpufleet.model import Cluster, Node

Say = core.Say


def _path(lab: core.Lab) -> Any:
    return lab.state_dir / "faults.json"


def load(lab: core.Lab) -> dict[str, list[dict[str, Any]]]:
    path = _path(lab)
    return json.loads(path.read_text()) if path.exists() else {}


def _save(lab: core.Lab, faults: dict[str, list[dict[str, Any]]]) -> None:
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    _path(lab).write_text(json.dumps(faults, indent=2, sort_keys=True))


def _node(cluster: Cluster, name: str) -> Node:
    for node in cluster.nodes:
        if node.name == name:
            return node
    names = ", ".join(n.name for n in cluster.nodes)
    raise UserError(f"no node {name!r} in this lab (nodes: {names})")


def _netdev(node: Node, rail: int) -> str:
    if not 0 <= rail < len(node.rails):
        raise UserError(f"{node.name} has rails 0-{len(node.rails) - 1}, not rail {rail}")
    dev = node.rails[rail].netdev
    if dev is None:
        raise UserError(f"{node.name}'s profile names no netdev for rail {rail}")
    return dev


def _running(lab: core.Lab, node: Node) -> str:
    name = lab.container(node.name)
    if not pm.is_running(name):
        raise UserError(f"{node.name} is not running (power it on: `gpufleet lab up`)")
    return name


def _sh(container: str, script: str) -> None:
    pm.exec_in(container, "bash", "-euc", script)


def _rename_swap(container: str, a: str, b: str) -> None:
    """Swap the names of two links (and let networkd configure each again by its name)."""
    _sh(
        container,
        f"ip link set {a} down; ip link set {b} down; "
        f"ip link set {a} name gpf-swap; ip link set {b} name {a}; ip link set gpf-swap name {b}; "
        f"ip -4 addr flush dev {a}; ip -4 addr flush dev {b}; "
        f"ip link set {a} up; ip link set {b} up; "
        f"if systemctl -q is-active systemd-networkd; then networkctl reconfigure {a} {b}; fi",
    )


def _set_once(lab: core.Lab, node: Node, record: dict[str, Any], script: str, already: str) -> None:
    """Run `script` on the node and record the fault, unless one of its kind is set already."""
    container = _running(lab, node)
    faults = load(lab)
    if any(f["fault"] == record["fault"] for f in faults.get(node.name, [])):
        raise UserError(f"{node.name} {already} (--clear first)")
    _sh(container, script)
    faults.setdefault(node.name, []).append(record)
    _save(lab, faults)


# What the replayed nccl-tests read on every lab GPU node (src/gpufleet/lab/replay/bin/nccl-tests):
# the lab fabric's faults, one file for all, as a real fabric is shared by the nodes it joins.
FABRIC_FAULTS = "/etc/gpufleet-replay/fabric-faults.json"


def _sync_fabric(lab: core.Lab, cluster: Cluster, faults: dict[str, list[dict[str, Any]]]) -> None:
    """Write the lab fabric's faults (degraded nodes, rails down) on every running GPU node."""
    state: dict[str, Any] = {"degraded": [], "down": {}}
    for name, mine in sorted(faults.items()):
        for fault in mine:
            if fault["fault"] == "nccl-degraded":
                state["degraded"].append(name)
            elif fault["fault"] == "rail-down":
                state["down"].setdefault(name, []).append(fault["netdev"])
    text = json.dumps(state, sort_keys=True)
    for node in cluster.nodes:
        container = lab.container(node.name)
        if node.role == "gpu" and pm.is_running(container):
            _sh(
                container,
                f"mkdir -p /etc/gpufleet-replay && echo {shlex.quote(text)} > {FABRIC_FAULTS}",
            )


def rail_down(site: str, node_name: str, rail: int, say: Say = print) -> None:
    lab, cluster = core.open_lab(site)
    node = _node(cluster, node_name)
    dev = _netdev(node, rail)
    container = _running(lab, node)
    _sh(container, f"ip link set {dev} down")
    faults = load(lab)
    faults.setdefault(node.name, []).append({"fault": "rail-down", "rail": rail, "netdev": dev})
    _save(lab, faults)
    _sync_fabric(lab, cluster, faults)
    say(f"{node.name}: rail {rail} ({dev}) is down")


def nccl_degraded(site: str, node_name: str, say: Say = print) -> None:
    lab, cluster = core.open_lab(site)
    node = _gpu_node(cluster, node_name)
    _running(lab, node)
    faults = load(lab)
    if any(f["fault"] == "nccl-degraded" for f in faults.get(node.name, [])):
        raise UserError(f"{node.name}'s NCCL is degraded already (--clear first)")
    faults.setdefault(node.name, []).append({"fault": "nccl-degraded"})
    _save(lab, faults)
    _sync_fabric(lab, cluster, faults)
    say(f"{node.name}: nccl-tests jobs that include it now run at a fifth of the healthy busbw")


# The --slow-gpu cap: 15% of one core (CFS quota 15 ms per 100 ms period).
SLOW_QUOTA_US = 15000
CFS_PERIOD_US = 100000


# The --slow-gpu weight: cgroup v1 cpu.shares (lab nodes have core.LAB_CPU_SHARES, 4096) or
# v2 cpu.weight (podman maps 4096 shares to about 157).
SLOW_SHARES = "64"
SLOW_WEIGHT = "2"


def _cpu_files(container: str) -> tuple[Path, str, str, Path, str]:
    """The container's CPU quota file with its capped and uncapped values, and its CPU weight
    file with the weight --slow-gpu gives it (cgroup v2, or v1 with the cpu controller)."""
    path = pm.podman("inspect", "--format", "{{.State.CgroupPath}}", container).stdout.strip()
    if not path:
        raise UserError(f"podman reports no cgroup for {container}: cannot cap its CPU")
    v2 = Path("/sys/fs/cgroup") / path.lstrip("/")
    if (v2 / "cpu.max").exists():
        return (v2 / "cpu.max", f"{SLOW_QUOTA_US} {CFS_PERIOD_US}", f"max {CFS_PERIOD_US}",
                v2 / "cpu.weight", SLOW_WEIGHT)  # fmt: skip
    for controller in ("cpu,cpuacct", "cpu"):
        v1 = Path("/sys/fs/cgroup") / controller / path.lstrip("/")
        if (v1 / "cpu.cfs_quota_us").exists():
            return v1 / "cpu.cfs_quota_us", str(SLOW_QUOTA_US), "-1", v1 / "cpu.shares", SLOW_SHARES
    raise UserError(f"no CPU quota file for {container}'s cgroup {path}")


def slow_gpu(site: str, node_name: str, say: Say = print) -> None:
    lab, cluster = core.open_lab(site)
    node = _gpu_node(cluster, node_name)
    container = _running(lab, node)
    faults = load(lab)
    if any(f["fault"] == "slow-gpu" for f in faults.get(node.name, [])):
        raise UserError(f"{node.name} is slow already (--clear first)")
    quota, capped, _, weight, low = _cpu_files(container)
    before = weight.read_text().strip()
    quota.write_text(capped)
    weight.write_text(low)
    faults.setdefault(node.name, []).append({"fault": "slow-gpu", "weight": before})
    _save(lab, faults)
    say(f"{node.name}: capped at {SLOW_QUOTA_US / CFS_PERIOD_US:.0%} of a CPU core, CPU weight "
        f"{before} -> {low}: the burn-in will measure a slow GPU")  # fmt: skip


def _gpu_node(cluster: Cluster, name: str) -> Node:
    node = _node(cluster, name)
    if node.role != "gpu":
        raise UserError(f"{node.name} is a {node.role} node: this fault needs a GPU node")
    return node


def swap_rails(site: str, node_name: str, say: Say = print) -> None:
    lab, cluster = core.open_lab(site)
    node = _node(cluster, node_name)
    if len(node.rails) < 2:
        raise UserError(f"{node.name} has {len(node.rails)} rail(s): nothing to swap")
    a, b = _netdev(node, 0), _netdev(node, 1)
    container = _running(lab, node)
    faults = load(lab)
    if any(f["fault"] == "swap-rails" for f in faults.get(node.name, [])):
        raise UserError(f"{node.name}: rails 0 and 1 are already swapped (--clear first)")
    _rename_swap(container, a, b)
    faults.setdefault(node.name, []).append({"fault": "swap-rails", "netdevs": [a, b]})
    _save(lab, faults)
    say(f"{node.name}: rails 0 and 1 swapped ({a} is now on rail 1's network, {b} on rail 0's)")


# The codes the replayed dmesg has recordings of (src/gpufleet/lab/replay/bin/dmesg).
XID_CODES = (48, 63, 94, 119)


def xid(site: str, node_name: str, code: int, say: Say = print) -> None:
    lab, cluster = core.open_lab(site)
    node = _node(cluster, node_name)
    if node.role != "gpu":
        raise UserError(f"{node.name} is a {node.role} node: only GPU nodes log Xid errors")
    if code not in XID_CODES:
        raise UserError(
            f"no recording of Xid {code}: the lab replays Xid {', '.join(map(str, XID_CODES))}"
        )
    _set_once(lab, node, {"fault": "xid", "code": code},
              f"echo {code} > /etc/gpufleet-replay/xid", "already logs an Xid")  # fmt: skip
    say(f"{node.name}: the kernel log now carries Xid {code} (recorded on an H100 node)")


# The stand-in's fault switch (src/gpufleet/lab/modelserver/vllm, --stand-in-fault-file).
MODEL_SERVER_FAULTS = ("error", "hang", "slow", "crash")
MODEL_SERVER_FAULT_FILE = "/etc/gpufleet-lab/model-server-fault"


def model_server(site: str, node_name: str, mode: str, say: Say = print) -> None:
    if mode not in MODEL_SERVER_FAULTS:
        raise UserError(
            f"--model-server {mode!r}: the lab's model server knows "
            + ", ".join(MODEL_SERVER_FAULTS)
        )
    lab, cluster = core.open_lab(site)
    node = _node(cluster, node_name)
    if not any(node.name in m.nodes for m in cluster.serving.models):
        raise UserError(f"{node.name} serves no model (serving.models in the spec)")
    script = f"mkdir -p /etc/gpufleet-lab && echo {mode} > {MODEL_SERVER_FAULT_FILE}"
    _set_once(lab, node, {"fault": "model-server", "mode": mode}, script,
              "has a faulty model server already")  # fmt: skip
    say(f"{node.name}: its model servers now {mode} on every request")


def clear(site: str, node_name: str, say: Say = print) -> None:
    lab, cluster = core.open_lab(site)
    node = _node(cluster, node_name)
    faults = load(lab)
    mine = faults.pop(node.name, [])
    if not mine:
        say(f"{node.name}: no faults set")
        return
    container = _running(lab, node)
    for fault in reversed(mine):
        if fault["fault"] == "rail-down":
            _sh(container, f"ip link set {fault['netdev']} up")
        elif fault["fault"] == "swap-rails":
            _rename_swap(container, *fault["netdevs"])
        elif fault["fault"] == "xid":
            _sh(container, "rm -f /etc/gpufleet-replay/xid")
        elif fault["fault"] == "model-server":
            _sh(container, f"rm -f {MODEL_SERVER_FAULT_FILE}")
        elif fault["fault"] == "slow-gpu":
            quota, _, uncapped, weight, _ = _cpu_files(container)
            quota.write_text(uncapped)
            if fault.get("weight"):
                weight.write_text(str(fault["weight"]))
        say(f"{node.name}: cleared {fault['fault']}")
    _save(lab, faults)
    if any(f["fault"] in ("rail-down", "nccl-degraded") for f in mine):
        _sync_fabric(lab, cluster, faults)
