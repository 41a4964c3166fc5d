"""A small lab end to end, checked from outside: SSH, Redfish power, inventory, Slurm,
monitoring, teardown.

Uses its own site (the lab's 7 nodes: 1 head, 2 lb, 1 monitoring, 3 gpu) in 198.19.0.0/16 and
its own BMC port, so it never touches a running `make lab`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest
import sushy
import yaml

from gpufleet import dashboards
from gpufleet.lab import core, faults
from gpufleet.lab import podman as pm
from gpufleet.lab import serving as sv
from gpufleet.model import load_cluster

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "lab-test-bmc-password"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _small_site(tmp: Path, port: int) -> Path:
    data = yaml.safe_load((REPO / "inventories/lab/cluster.yaml").read_text())
    data["site"]["name"] = "labtest"
    data["site"]["domain"] = "labtest.gpufleet.test"
    data["site"]["ntp_servers"] = ["198.19.1.1"]
    data["networks"]["oob"] = {"cidr": "198.19.0.0/24", "gateway": "198.19.0.1"}
    data["networks"]["frontend"] = {
        "cidr": "198.19.1.0/24",
        "gateway": "198.19.1.1",
        "vips": [{"name": "inference", "address": "198.19.1.5"}],
    }
    data["networks"]["fabric"]["rails"] = ["198.19.10.0/24", "198.19.11.0/24"]
    keep = [n for n in data["nodes"] if n["name"] != "x"]  # the whole lab: 7 nodes
    for n in keep:
        n["bmc"]["url"] = f"http://127.0.0.1:{port}/redfish/v1/Systems/{n['name']}"
    data["nodes"] = keep
    site = tmp / "labtest"
    site.mkdir()
    (site / "cluster.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return site


def _podman_lists() -> tuple[set[str], set[str]]:
    """Every container and network a lab could have made: a lab's label or name prefix. (The
    other integration tests run beside this module, with containers of their own.)"""

    def labs(items: list[dict], name: Callable[[dict], str], labels: str) -> set[str]:
        def mine(i: dict) -> bool:
            return name(i).startswith("gpufleet-lab") or pm.LABEL in (i.get(labels) or {})

        return {name(i) for i in items if mine(i)}

    ps = json.loads(pm.podman("ps", "-a", "--format", "json").stdout or "[]")
    nets = json.loads(pm.podman("network", "ls", "--format", "json").stdout or "[]")
    return labs(ps, lambda c: c["Names"][0], "Labels"), labs(nets, lambda n: n["name"], "labels")


def _gpufleet(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / ".venv/bin/gpufleet"), *args],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def lab_site(tmp_path_factory, podman):
    tmp = tmp_path_factory.mktemp("lab")
    port = _free_port()
    site = _small_site(tmp, port)
    env = {**os.environ, "GPUFLEET_LAB_BMC_PASSWORD": PASSWORD,
           "GPUFLEET_LAB_STATE": str(tmp / "state")}  # fmt: skip
    before = _podman_lists()
    # The sequence of `make lab`: nodes created powered off, `pulumi up` powers them on
    # through their BMCs (a stack of this site's own in the lab state), then install.
    for step in (("up", "--no-power-on"), ("pulumi-up",), ("up",)):
        run = _gpufleet("lab", *step, "--site", str(site), env=env)
        if run.returncode != 0:
            # A failed step must not leave the half-built lab (its BMC emulator, containers,
            # networks) behind: take it down before failing.
            down = _gpufleet("lab", "down", "--site", str(site), env=env)
            pytest.fail(f"lab {' '.join(step)}: {run.stdout[-3000:]}{run.stderr}\n"
                        f"lab down after it: exit {down.returncode} {down.stderr}")  # fmt: skip
    os.environ["GPUFLEET_LAB_STATE"] = env["GPUFLEET_LAB_STATE"]
    yield site, env, port, before
    down = _gpufleet("lab", "down", "--site", str(site), env=env)
    assert down.returncode == 0, down.stdout + down.stderr


def test_each_node_answers_ssh_with_the_lab_key_only(lab_site, tmp_path):
    site, _, _, _ = lab_site
    lab, cluster = core.open_lab(site)
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    for node in cluster.nodes:
        address = str(node.frontend.address)
        ok = core.ssh(lab, cluster.site.ssh_user, address, "hostname")
        assert ok.returncode == 0 and ok.stdout.strip() == node.name, ok.stderr
        refused = core.ssh(lab, cluster.site.ssh_user, address, "true", key=stranger)
        assert refused.returncode == 255 and "Permission denied" in refused.stderr


def test_inventory_matches_the_plan(lab_site):
    site, _, _, _ = lab_site
    plan = load_cluster(site)
    hosts = yaml.safe_load((site / "hosts.yml").read_text())
    groups = hosts["all"]["children"]
    seen = {}
    for group in groups.values():
        for name, hv in (group.get("hosts") or {}).items():
            seen[name] = hv
    assert set(seen) == {n.name for n in plan.nodes}
    for node in plan.nodes:
        assert seen[node.name]["ansible_host"] == str(node.frontend.address)
        rails = [r["address"] for r in seen[node.name]["gpufleet_fabric_rails"]]
        assert rails == [str(r.address) for r in node.rails]
        # The container really has those addresses.
        addrs = pm.exec_in(f"gpufleet-labtest-{node.name}", "ip", "-4", "-o", "addr").stdout
        for iface in (node.frontend, *node.rails):
            assert f"{iface.address}/" in addrs
        # Each rail sits on the interface the inventory names (gpufleet_fabric_interfaces).
        netdevs = seen[node.name]["gpufleet_fabric_interfaces"]
        assert netdevs == [r.netdev for r in node.rails] == ["eth1", "eth2"]
        by_dev = {line.split()[1]: line.split()[3] for line in addrs.splitlines()}
        assert [by_dev[d].split("/")[0] for d in netdevs] == [str(r.address) for r in node.rails]


def test_redfish_power_off_stops_the_container_and_on_brings_ssh_back(lab_site):
    site, _, port, _ = lab_site
    lab, cluster = core.open_lab(site)
    conn = sushy.Sushy(f"http://127.0.0.1:{port}/redfish/v1", username="admin", password=PASSWORD)
    system = conn.get_system("/redfish/v1/Systems/gpu2")
    assert system.power_state == sushy.PowerState.ON
    system.reset_system(sushy.ResetType.FORCE_OFF)
    assert not pm.is_running("gpufleet-labtest-gpu2")
    system.refresh()
    assert system.power_state == sushy.PowerState.OFF
    system.reset_system(sushy.ResetType.ON)
    address = "198.19.1.102"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        result = core.ssh(lab, cluster.site.ssh_user, address, "systemctl", "is-system-running")
        if result.stdout.strip() in ("running", "degraded"):
            break
        time.sleep(1)
    assert result.stdout.strip() == "running", result.stderr


def test_bmc_rejects_a_wrong_password(lab_site):
    _, _, port, _ = lab_site
    conn = sushy.Sushy(f"http://127.0.0.1:{port}/redfish/v1", username="admin", password="wrong")
    with pytest.raises(sushy.exceptions.AccessError):
        conn.get_system("/redfish/v1/Systems/head1")


def test_boot_override_persists(lab_site):
    _, _, port, _ = lab_site
    conn = sushy.Sushy(f"http://127.0.0.1:{port}/redfish/v1", username="admin", password=PASSWORD)
    system = conn.get_system("/redfish/v1/Systems/head1")
    system.set_system_boot_options(
        sushy.BootSource.PXE, enabled=sushy.BootSourceOverrideEnabled.ONCE
    )
    again = conn.get_system("/redfish/v1/Systems/head1")
    assert again.boot.target == sushy.BootSource.PXE


def test_status_reports_nodes_power_and_addresses(lab_site):
    site, env, _, _ = lab_site
    out = _gpufleet("lab", "status", "--site", str(site), "--json", env=env)
    assert out.returncode == 0, out.stderr

    info = json.loads(out.stdout)
    assert info["bmc_emulator"] == "up"
    assert {r["node"]: r["power"] for r in info["nodes"]} == {
        "head1": "On",
        "lb1": "On",
        "lb2": "On",
        "mon1": "On",
        "gpu1": "On",
        "gpu2": "On",
        "gpu3": "On",
    }
    assert "up" in info["last_runs"]


def test_down_restores_podman_state(tmp_path, podman):
    # A separate tiny lab so that teardown itself is asserted.
    port = _free_port()
    site = _small_site(tmp_path, port)
    data = yaml.safe_load((site / "cluster.yaml").read_text())
    data["site"]["name"] = "labdown"
    data["nodes"] = data["nodes"][:1]
    # One head node: no VIP, nothing to serve.
    data["networks"]["frontend"].pop("vips", None)
    data.pop("serving", None)
    for key, cidr in (("oob", "198.19.20"), ("frontend", "198.19.21")):
        data["networks"][key]["cidr"] = f"{cidr}.0/24"
        data["networks"][key]["gateway"] = f"{cidr}.1"
    data["networks"]["fabric"]["rails"] = ["198.19.30.0/24", "198.19.31.0/24"]
    data["site"]["ntp_servers"] = ["198.19.21.1"]
    (site / "cluster.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    env = {**os.environ, "GPUFLEET_LAB_BMC_PASSWORD": PASSWORD,
           "GPUFLEET_LAB_STATE": str(tmp_path / "state")}  # fmt: skip
    before = _podman_lists()
    up = _gpufleet("lab", "up", "--site", str(site), env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert _podman_lists() != before
    down = _gpufleet("lab", "down", "--site", str(site), env=env)
    assert down.returncode == 0, down.stderr
    assert _podman_lists() == before
    assert not (tmp_path / "state" / "labdown").exists()


def test_gpu_nodes_replay_recorded_h100_tools_and_others_have_none(lab_site):
    """Replay tools (recorded on real H100 systems) sit where the real tools would, on GPU
    nodes only; the commands are selected by their arguments as the real tools are."""
    site, _, _, _ = lab_site
    lab, cluster = core.open_lab(site)
    user = cluster.site.ssh_user
    for node in cluster.nodes:
        address = str(node.frontend.address)
        smi = core.ssh(lab, user, address, "nvidia-smi")
        if node.role != "gpu":
            assert smi.returncode == 127, (node.name, smi.stdout)
            continue
        assert smi.returncode == 0, smi.stderr
        assert smi.stdout.count("NVIDIA H100 80GB HBM3") == 8
        assert "Driver Version: 550.90.07" in smi.stdout
        query = core.ssh(lab, user, address, "nvidia-smi", "-q")
        assert query.stdout.count("Product Name") == 8
        ib = core.ssh(lab, user, address, "ibstat")
        assert ib.stdout.count("State: Active") >= 8, ib.stdout
        netdevs = core.ssh(lab, user, address, "ibdev2netdev").stdout
        assert "mlx5_0 port 1 ==> ibp24s0 (Up)" in netdevs
        unknown = core.ssh(lab, user, address, "nvidia-smi", "--query-gpu=name")
        assert unknown.returncode == 2 and "no recording" in unknown.stderr
        # The GPUs' device files, for Slurm's gres.conf: character devices 195,0-7.
        devs = core.ssh(lab, user, address, "stat", "-c", "'%F %t %T'", *core.LAB_GPU_DEVICES)
        assert devs.stdout.split("\n")[:8] == [f"character special file c3 {i:x}" for i in range(8)]
        # The kernel log replay adds nothing until a fault asks for an Xid.
        dmesg = core.ssh(lab, user, address, "sudo", "dmesg")
        assert dmesg.returncode == 0 and "NVRM: Xid" not in dmesg.stdout, dmesg.stderr


def test_lab_up_again_installs_nothing_new_and_keeps_the_replay_set(lab_site):
    """A second `lab up` on the running lab: the operator's key still works, the replay tools
    are copied only when their digest differs (a node's chosen recording set stays), and a
    replay tool removed from a node comes back when its digest no longer matches."""
    site, env, _, _ = lab_site
    lab, cluster = core.open_lab(site)
    gpu1 = next(n for n in cluster.nodes if n.name == "gpu1")
    name = lab.container("gpu1")
    pm.exec_in(name, "sh", "-c", "echo unhealthy > /etc/gpufleet-replay/set")
    again = _gpufleet("lab", "up", "--site", str(site), env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    node_state = pm.exec_in(name, "cat", "/etc/gpufleet-replay/set", "/etc/gpufleet-replay/digest")
    assert node_state.stdout.split() == ["unhealthy", core.replay_digest()]
    # A stale copy (digest changed, a tool missing) is replaced; the set still stays.
    stale = "rm /usr/local/bin/ibstat; echo stale > /etc/gpufleet-replay/digest"
    pm.exec_in(name, "sh", "-c", stale)
    again = _gpufleet("lab", "up", "--site", str(site), env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    user = cluster.site.ssh_user
    ib = core.ssh(lab, user, str(gpu1.frontend.address), "ibstat")
    assert ib.returncode == 0 and ib.stdout.count("State: Active") >= 8, ib.stderr
    node_state = pm.exec_in(name, "cat", "/etc/gpufleet-replay/set", "/etc/gpufleet-replay/digest")
    assert node_state.stdout.split() == ["unhealthy", core.replay_digest()]
    pm.exec_in(name, "sh", "-c", "echo healthy > /etc/gpufleet-replay/set")


def _fabric(site: Path, env: dict[str, str], *limit: str) -> subprocess.CompletedProcess[str]:
    args = ("--limit", ",".join(limit)) if limit else ()
    return _gpufleet("lab", "converge", "--site", str(site), "--playbook", "playbooks/fabric.yml",
                     *args, env=env)  # fmt: skip


def _fault(site: Path, env: dict[str, str], *args: str) -> None:
    run = _gpufleet("lab", "fault", *args, "--site", str(site), env=env)
    assert run.returncode == 0, run.stdout + run.stderr


def test_rails_reach_every_peer_and_faults_are_named(lab_site):
    """playbooks/fabric.yml on the lab: every node pings every rail peer at the rail MTU with
    don't-fragment set, sourced from the rail (policy routing); `lab fault` takes a rail down
    and swaps two cables, and the checks name the node, the rail and the swap."""
    site, env, _, _ = lab_site
    lab, cluster = core.open_lab(site)
    ok = _fabric(site, env)
    assert ok.returncode == 0, ok.stdout[-5000:] + ok.stderr
    # Facts are cached in the lab's own state (ansible-runner would keep them in its
    # temporary artifacts, and every converge would gather them again).
    cached = sorted(f.name.rsplit("_", 1)[-1] for f in lab.facts_dir.iterdir())
    assert cached == sorted(n.name for n in cluster.nodes), cached
    gpu1 = next(n for n in cluster.nodes if n.name == "gpu1")
    rules = core.ssh(lab, cluster.site.ssh_user, str(gpu1.frontend.address), "ip", "rule").stdout
    for rail in gpu1.rails:
        assert f"from {rail.address} lookup {100 + rail.rail}" in rules, rules

    # The faults on gpu1 and gpu2 only (each other's rail peers): a third of the converge.
    gpu2 = next(n for n in cluster.nodes if n.name == "gpu2")
    _fault(site, env, "gpu2", "--rail-down", "1")
    down = _fabric(site, env, "gpu1", "gpu2")
    assert down.returncode != 0
    dev = gpu2.rails[1].netdev
    assert f"gpu2: rail 1: {dev} is down" in down.stdout, down.stdout[-5000:]
    assert f"gpu1 rail 1: gpu2 ({gpu2.rails[1].address}) does not answer on rail 1" in down.stdout
    _fault(site, env, "gpu2", "--clear")

    _fault(site, env, "gpu2", "--swap-rails")
    swapped = _fabric(site, env, "gpu1", "gpu2")
    assert swapped.returncode != 0
    for r, s in ((0, 1), (1, 0)):
        assert f"gpu2's rail {r} interface hears the peers of rail {s}" in swapped.stdout, (
            swapped.stdout[-5000:]
        )
    assert "(rails swapped)" in swapped.stdout
    _fault(site, env, "gpu2", "--clear")
    again = _fabric(site, env, "gpu1", "gpu2")
    assert again.returncode == 0, again.stdout[-5000:]


def _slurm_on_head(lab: core.Lab, cluster, *cmd: str) -> str:
    """A command (Slurm's, mostly) as the operator on the head node, over SSH; its stdout."""
    head = cluster.node("head1")
    run = core.ssh(lab, cluster.site.ssh_user, str(head.frontend.address), *cmd)
    assert run.returncode == 0, f"{' '.join(cmd)}: {run.stdout}{run.stderr}"
    return run.stdout


def _until(what: str, probe, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1)


def _nodes(lab, cluster) -> dict[str, tuple[str, str, str]]:
    """sinfo, node by node: state, GRES, reason. Slurm shows an idle node that its backfill
    scheduler holds for a pending multi-node job as `plnd` (PLANNED, 21.08 on), and can still
    show it just after such jobs ran (CI saw all three GPU nodes `plnd` right after the
    verification phase's all-node jobs); it is idle here."""
    out = _slurm_on_head(lab, cluster, "sinfo", "-N", "-h", "-o", "'%N|%t|%G|%E'")
    rows = (line.split("|", 3) for line in out.splitlines())
    return {n: ("idle" if t == "plnd" else t, g, e) for n, t, g, e in rows}


# An MPI program built against Debian's OpenMPI (mpi4py): rank 0 sends a list around the ring,
# each rank adds its host name, rank 0 prints what comes back.
RING = """
from mpi4py import MPI
c = MPI.COMM_WORLD
r, n = c.Get_rank(), c.Get_size()
me = MPI.Get_processor_name()
if r == 0:
    c.send([me], dest=1 % n)
    print("ring", n, ",".join(c.recv(source=n - 1)))
else:
    c.send(c.recv(source=r - 1) + [me], dest=(r + 1) % n)
"""


def _converge(site: Path, env: dict[str, str], playbook: str) -> None:
    ok = _gpufleet("lab", "converge", "--site", str(site), "--playbook", playbook, env=env)
    assert ok.returncode == 0, ok.stdout[-6000:] + ok.stderr


@pytest.fixture(scope="module")
def slurm_lab(lab_site):
    """The lab with playbooks/slurm.yml converged (the health check's metrics timer included:
    the small site has a monitoring node)."""
    site, env, _, _ = lab_site
    _converge(site, env, "playbooks/slurm.yml")
    return lab_site


def test_slurm_runs_mpi_jobs_and_drains_a_node_with_an_xid(slurm_lab):
    """playbooks/slurm.yml on the lab (issue 17): every GPU node idle with gpu:h100:8, an MPI
    ring across the three through srun --mpi=pmix, sacct recording it, --gres=gpu:2 giving two
    devices; an Xid on gpu2 drains it at the next job's prolog with the reason, the job runs
    on the other nodes, and after --clear a passing health check returns gpu2 to service."""
    site, env, _, _ = slurm_lab
    lab, cluster = core.open_lab(site)
    gpus = ["gpu1", "gpu2", "gpu3"]
    idle = _until(
        "every GPU node idle",
        lambda: (
            (n := _nodes(lab, cluster)) and all(n.get(g, ("",))[0] == "idle" for g in gpus) and n
        ),
    )
    # sinfo's %G adds the sockets the GPUs are bound to: gpu:h100:8(S:0)
    assert {g: idle[g][1].split("(")[0] for g in gpus} == dict.fromkeys(gpus, "gpu:h100:8"), idle

    # The MPI program is the user's: installed on the GPU nodes as a user would install it.
    for g in gpus:
        address = str(cluster.node(g).frontend.address)
        inst = core.ssh(lab, cluster.site.ssh_user, address, "sudo", "apt-get", "install", "-y",
                        "-q", "--no-install-recommends", "python3-mpi4py")  # fmt: skip
        assert inst.returncode == 0, inst.stdout[-2000:] + inst.stderr
    ring = _slurm_on_head(lab, cluster, "srun", "-N3", "-n3", "--mpi=pmix", "python3", "-c",
                          f"'{RING}'")  # fmt: skip
    assert ring.strip() == "ring 3 gpu1,gpu2,gpu3", ring
    acct = _until("sacct to record the MPI job", lambda: [
        line for line in _slurm_on_head(lab, cluster, "sacct", "-X", "-n", "-P", "-o",
                                        "JobName,State,NNodes").splitlines()
        if line == "python3|COMPLETED|3"])  # fmt: skip
    assert acct

    two = _slurm_on_head(lab, cluster, "srun", "-N1", "--gres=gpu:2", "printenv",
                         "CUDA_VISIBLE_DEVICES")  # fmt: skip
    assert two.strip() == "0,1", two

    # An Xid 48 (uncorrectable ECC, recorded on an H100) on gpu2: the next job that lands on it
    # is stopped by gpu2's prolog, gpu2 drains with the reason, the job runs elsewhere.
    _fault(site, env, "gpu2", "--xid", "48")
    job = _slurm_on_head(lab, cluster, "sbatch", "--parsable", "-N2", "--wrap",
                         "'srun hostname'").strip()  # fmt: skip
    drained = _until(
        "gpu2 drained", lambda: (n := _nodes(lab, cluster)["gpu2"])[0] in ("drain", "drng") and n
    )
    assert drained[2] == "gpufleet: Xid 48 on GPU 0000:19:00 since boot", drained
    done = _until(f"job {job} to complete", lambda: [
        line for line in _slurm_on_head(lab, cluster, "sacct", "-X", "-n", "-P", "-j", job,
                                        "-o", "State,NodeList").splitlines()
        if line.startswith("COMPLETED|")], timeout=120)  # fmt: skip
    assert done == ["COMPLETED|gpu[1,3]"], done
    state = "/var/lib/gpufleet/node-health"
    report = json.loads(
        pm.exec_in(lab.container("gpu2"), "cat", f"{state}/last-prolog.json").stdout
    )
    assert report["problems"] == ["Xid 48 on GPU 0000:19:00 since boot"], report
    print(f"gpu2's failing prolog took {report['seconds']:.2f} s")
    passed = json.loads(
        pm.exec_in(lab.container("gpu1"), "cat", f"{state}/last-prolog.json").stdout
    )
    assert passed["healthy"], passed
    print(f"gpu1's passing prolog took {passed['seconds']:.2f} s")

    # Still there: the HealthCheckProgram keeps gpu2 drained. Cleared: it resumes gpu2.
    gpu2 = str(cluster.node("gpu2").frontend.address)
    check = ["sudo", "/usr/local/sbin/gpufleet-slurm-healthcheck"]
    still = core.ssh(lab, cluster.site.ssh_user, gpu2, *check)
    assert "FAIL xid" in still.stdout, still.stdout + still.stderr
    assert _nodes(lab, cluster)["gpu2"][0] in ("drain", "drng")
    _fault(site, env, "gpu2", "--clear")
    healthy = core.ssh(lab, cluster.site.ssh_user, gpu2, *check)
    assert healthy.returncode == 0 and "gpu2: healthy" in healthy.stdout, healthy.stdout
    back = _until("gpu2 back in service", lambda: _nodes(lab, cluster)["gpu2"][0] == "idle")
    assert back


def _prometheus(lab: core.Lab, query: str) -> list[dict]:
    """An instant query to Prometheus on mon1, from mon1 (its API answers the admin networks
    only); the result vector."""
    url = "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": query})
    code = "import sys,urllib.request as u; print(u.urlopen(sys.argv[1]).read().decode())"
    out = pm.exec_in(lab.container("mon1"), "python3", "-c", code, url).stdout
    reply = json.loads(out)
    assert reply["status"] == "success", reply
    return reply["data"]["result"]


def _notifications(lab: core.Lab) -> list[dict]:
    """What the lab's webhook receiver on mon1 has recorded, oldest first."""
    run = pm.exec_in(lab.container("mon1"), "cat", core.ALERT_LOG, check=False)
    return [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


def _notices(lab: core.Lab, alert: str, status: str, since: float) -> list[tuple[float, dict]]:
    """(received, alert) of every `alert` alert with `status` that the receiver got after
    `since` (unix time)."""
    return [
        (n["received"], a)
        for n in _notifications(lab)
        if n["received"] >= since
        for a in n["body"]["alerts"]
        if a["labels"].get("alertname") == alert and a["status"] == status
    ]


def _faults_to_notices(
    lab: core.Lab, site: Path, env: dict[str, str], injected: list[tuple[str, list[str], str]]
) -> dict[str, tuple[dict, float, float]]:
    """Inject each (node, fault, alert) at once, wait for every alert to reach the webhook
    receiver naming its node alone, clear the faults, wait for each to resolve. Per alert: (the
    firing alert, seconds from its fault to it, seconds from its --clear to resolved)."""
    started = {}
    for node, fault, alert in injected:
        started[alert] = time.time()
        _fault(site, env, node, *fault)
    fired = {}
    for node, _, alert in injected:
        got = _until(f"{alert} at the webhook receiver",
                     lambda a=alert: _notices(lab, a, "firing", started[a]), 150)  # fmt: skip
        assert {a["labels"]["instance"] for _, a in got} == {node}, got
        fired[alert] = got[0]
    cleared = {}
    for node, _, alert in injected:
        cleared[alert] = time.time()
        _fault(site, env, node, "--clear")
    out = {}
    for node, _, alert in injected:
        got = _until(f"{alert} resolved at the webhook receiver",
                     lambda a=alert: _notices(lab, a, "resolved", cleared[a]), 150)  # fmt: skip
        assert {a["labels"]["instance"] for _, a in got} == {node}, got
        out[alert] = (fired[alert][1], fired[alert][0] - started[alert], got[0][0] - cleared[alert])
    return out


@pytest.fixture(scope="module")
def monitoring_lab(slurm_lab):
    """The lab with playbooks/monitoring.yml converged too (node_exporter on every node,
    Prometheus and Alertmanager on mon1)."""
    site, env, _, _ = slurm_lab
    _converge(site, env, "playbooks/monitoring.yml")
    return slurm_lab


def test_monitoring_scrapes_every_node_and_faults_reach_the_webhook(monitoring_lab):
    """playbooks/monitoring.yml on the lab (issue 18): node_exporter up on every node in
    Prometheus on mon1, the GPU nodes' health metrics in it, every dashboard panel not marked
    hardware-only with a series; an Xid 48 on gpu2 reaches the lab's webhook receiver naming
    gpu2 and the code, a rail down on gpu3 naming gpu3 and the rail, and each resolves after
    --clear. The lab
    scrapes and evaluates every 10 s, the health metrics refresh every 10 s and Alertmanager
    waits 5 s before a group's first notification, 10 s before the next (resolved) one."""
    site, env, _, _ = monitoring_lab
    lab, cluster = core.open_lab(site)

    names = sorted(n.name for n in cluster.nodes)
    up = _until(
        "node_exporter up on every node",
        lambda: (
            (r := _prometheus(lab, 'up{job="node"} == 1'))
            and sorted(x["metric"]["instance"] for x in r) == names
            and r
        ),
        timeout=60,
    )
    assert {x["metric"]["role"] for x in up} == {"head", "lb", "monitoring", "gpu"}
    gpus = ["gpu1", "gpu2", "gpu3"]
    health = _until(
        "the health metrics of every GPU node",
        lambda: (
            (r := _prometheus(lab, "gpufleet_gpu_count"))
            and sorted(x["metric"]["instance"] for x in r) == gpus
            and r
        ),
        timeout=60,
    )
    assert {x["value"][1] for x in health} == {"8"}  # the replayed 8 x H100 nodes

    assert not _prometheus(lab, 'ALERTS{alertstate="firing",severity="critical"}')

    # The faults, then the notifications: the time between them is the lab's detection time.
    # Xid 48 (the lab replays only Xids recorded on real H100s: 48, 63, 94, 119) on gpu2 and
    # a rail's interface down on gpu3 (the health check's rails check; the alert waits 30 s).
    seen = _faults_to_notices(lab, site, env, [
        ("gpu2", ["--xid", "48"], "GpuXidDoubleBitEcc"),
        ("gpu3", ["--rail-down", "1"], "FabricRailDown"),
    ])  # fmt: skip
    alert, fired, resolved = seen["GpuXidDoubleBitEcc"]
    assert (alert["labels"]["code"], alert["labels"]["severity"]) == ("48", "critical"), alert
    assert "nvidia-smi -r" in alert["annotations"]["action"]
    print(f"Xid 48 on gpu2 to the webhook receiver: {fired:.1f} s; --clear to resolved: "
          f"{resolved:.1f} s")  # fmt: skip
    alert, fired, resolved = seen["FabricRailDown"]
    assert (alert["labels"]["rail"], alert["labels"]["device"]) == ("1", "eth2"), alert
    print(f"rail 1 down on gpu3 to the webhook receiver: {fired:.1f} s; --clear to resolved: "
          f"{resolved:.1f} s")  # fmt: skip

    # Every dashboard panel that is not marked hardware-only has a series in the lab (the
    # per-node dashboards asked for gpu1). Last: rate() and increase() panels need a few
    # minutes of samples.
    queries = [q for q in dashboards.all_queries(REPO / "monitoring/dashboards")
               if q.hardware_only is None]  # fmt: skip

    def empty() -> list[str]:
        return [f"{q.dashboard} / {q.panel} / {q.ref_id}: {q.expr}" for q in queries
                if not _prometheus(lab, dashboards.lab_query(q.expr, "gpu1"))]  # fmt: skip

    try:
        _until("every lab panel's query to return a series", lambda: not empty(), timeout=60)
    except pytest.fail.Exception:
        pytest.fail("panels without a series in the lab:\n" + "\n".join(empty()))
    print(f"{len(queries)} dashboard queries, each with a series in the lab")


# A client on another node (head1): requests over TLS to the VIP, checked against the lab CA and
# the VIP's name; prints one JSON line per request (status, X-Served-By, body).
def _verify(site: Path, env: dict[str, str]) -> tuple[int, dict, dict, str]:
    """`gpufleet verify run` on the lab: exit code, summary.json, report.json, output."""
    start = time.monotonic()
    run = _gpufleet("verify", "run", "--site", str(site), env=env)
    latest = site / "reports" / "verify" / "latest"
    assert (latest / "summary.json").is_file(), run.stdout[-6000:] + run.stderr
    summary = json.loads((latest / "summary.json").read_text())
    report = json.loads((latest / "report.json").read_text())
    took = time.monotonic() - start
    print(f"verify run: {summary['line']} ({took:.1f} s in all, {summary['seconds']} s on the "
          f"controller, {len(summary['rounds'])} rounds)")  # fmt: skip
    return run.returncode, summary, report, run.stdout + run.stderr


# Each fault, the node it is set on, and words the drain reason must carry.
VERIFY_FAULTS = [
    ("gpu2", ("--nccl-degraded",), "node-wide"),
    ("gpu3", ("--rail-down", "1"), "rail"),
    # The planner ("a compute straggler") or the burn-in's threshold pack (per GPU) may fail it
    ("gpu1", ("--slow-gpu",), "below the fleet median"),
]


def _verify_failed_checks(lab: core.Lab) -> float | None:
    """What Prometheus scraped last from head1's node_exporter: the report's failed checks."""
    found = _prometheus(lab, 'gpufleet_verify_failed_checks{instance="head1"}')
    return float(found[0]["value"][1]) if found else None


def test_verify_finds_drains_and_returns_exactly_the_faulty_node(monitoring_lab):
    """playbooks/verify.yml on the lab through `gpufleet verify run` (issue 20): one fault at a
    time (degraded NCCL on gpu2, rail 1 down on gpu3, a slow GPU on gpu1) makes the phase fail,
    name that node, and drain it alone with the reason, the failed checks reaching Prometheus;
    the next run, after --clear, returns it to service; the last run, on the healthy lab,
    passes with nothing drained (and every GPU node's burn-in in sacct). The verify play of
    site.yml, run after it unchanged, names that pass instead of measuring again."""
    site, env, _, _ = monitoring_lab
    lab, cluster = core.open_lab(site)
    gpus = ["gpu1", "gpu2", "gpu3"]
    previous = None
    for node, fault, words in VERIFY_FAULTS:
        _fault(site, env, node, *fault)
        rc, summary, report, out = _verify(site, env)
        assert rc == 1 and summary["verdict"] == "fail", out[-6000:]
        assert list(summary["drained"]) == [node], summary
        reason = summary["drained"][node]
        assert reason.startswith(f"gpufleet-verify: {node}") and words in reason, reason
        if fault[0] == "--rail-down":
            assert "rail 1" in reason, reason
        failed = {v["metrics"].get("node", v["subject"]) for v in report["verdicts"]
                  if v["status"] == "fail"}  # fmt: skip
        assert node in failed and not failed & (set(gpus) - {node}), failed
        states = _nodes(lab, cluster)
        assert states[node][0] == "drain" and states[node][2] == reason, states
        assert all(states[g][0] == "idle" for g in gpus if g != node), states
        if previous:
            assert previous in summary["resumed"], summary
        else:
            failing = report["counts"]["fail"]
            assert _until("the failed checks in Prometheus",
                          lambda f=failing: _verify_failed_checks(lab) == f)  # fmt: skip
        print(f"{' '.join(fault)} on {node}: {reason}")
        _fault(site, env, node, "--clear")
        previous = node
    rc, summary, report, out = _verify(site, env)
    assert rc == 0 and summary["verdict"] == "pass" and summary["resumed"] == [previous], out
    assert summary["drained"] == {} and summary["line"].startswith("PASS: 3 of 3 GPU nodes"), out
    assert report["counts"]["fail"] == 0, report["counts"]
    states = _nodes(lab, cluster)
    assert all(states[g][0] == "idle" for g in gpus), states
    burnins = _slurm_on_head(lab, cluster, "sacct", "-a", "-X", "-n", "-P", "--name",
                             "gpufleet-verify-burnin", "-o", "NodeList,State")  # fmt: skip
    assert {line for line in burnins.splitlines()} >= {f"{g}|COMPLETED" for g in gpus}, burnins
    assert _until("the healthy report in Prometheus", lambda: _verify_failed_checks(lab) == 0)
    # site.yml's verify play on the unchanged lab names that pass and measures nothing again.
    folders = _slurm_on_head(lab, cluster, "ls", "-l", "--full-time", "/var/lib/gpufleet/verify")
    assert "last.json" in folders, folders
    again = _gpufleet("lab", "converge", "--site", str(site), "--playbook",
                      "playbooks/verify.yml", env=env)  # fmt: skip
    assert again.returncode == 0, again.stdout[-5000:]
    said = f"unchanged since {summary['finished_at']}: {summary['line']}"
    assert said in again.stdout, again.stdout[-5000:]
    after = _slurm_on_head(lab, cluster, "ls", "-l", "--full-time", "/var/lib/gpufleet/verify")
    assert after == folders, (folders, after)


CLIENT = r"""
import http.client, json, ssl, sys
host, name, ca, key, model, count = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca)
out = []
for _ in range(int(count)):
    try:
        c = http.client.HTTPSConnection(host, 443, context=ctx, timeout=15)
        c.sock = ctx.wrap_socket(__import__("socket").create_connection((host, 443), 15),
                                 server_hostname=name)
        h = {"Content-Type": "application/json"}
        if key:
            h["Authorization"] = "Bearer " + key
        body = json.dumps({"model": model, "prompt": "hello lab", "max_tokens": 4})
        c.request("POST", "/v1/completions", body=body, headers=h)
        r = c.getresponse()
        by = r.getheader("X-Served-By")
        out.append({"status": r.status, "by": by, "body": r.read().decode()})
    except Exception as e:
        out.append({"status": 0, "by": None, "body": repr(e)})
print(json.dumps(out))
"""


def _vip_requests(lab, cluster, key: str, model: str, count: int = 1) -> list[dict]:
    vip = next(v for v in cluster.vips if v.name == "inference")
    head = lab.container("head1")
    pm.podman("cp", str(lab.state_dir / "serving/ca.crt"), f"{head}:/tmp/lab-ca.pem")
    run = pm.exec_in(head, "python3", "-c", CLIENT, str(vip.address), vip.hostname,
                     "/tmp/lab-ca.pem", key, model, str(count))  # fmt: skip
    return json.loads(run.stdout)


def test_serving_through_the_vip_routes_by_model_and_fails_over(lab_site):
    """playbooks/serving.yml on the lab (issue 19), from head1 through the VIP over TLS: a known
    model with the key answered, no key 401, an unknown model 404 with a clear body, model-a
    only ever on gpu1/gpu2 and model-b on gpu3; a backend failing its health endpoint out of
    rotation within 3 s with no failed request after; the VIP on lb2 within 4 s of lb1's
    HAProxy stopping, and back on lb1 within 4 s of lb2 being powered off through Redfish."""
    site, env, port, _ = lab_site
    lab, cluster = core.open_lab(site)
    _converge(site, env, "playbooks/serving.yml")
    key = core.serving_secrets(lab, cluster)["api_key"]
    vip = str(next(v for v in cluster.vips if v.name == "inference").address)
    assert sv.holds(lab, "lb1", vip) and not sv.holds(lab, "lb2", vip)

    ok = _vip_requests(lab, cluster, key, "model-a", 20)
    assert [r["status"] for r in ok] == [200] * 20, ok[:2]
    assert {r["by"] for r in ok} == {"gpu1", "gpu2"}
    b = _vip_requests(lab, cluster, key, "model-b", 6)
    assert {(r["status"], r["by"]) for r in b} == {(200, "gpu3")}
    no_key = _vip_requests(lab, cluster, "", "model-a")[0]
    assert no_key["status"] == 401 and "API key" in no_key["body"], no_key
    unknown = _vip_requests(lab, cluster, key, "model-z")[0]
    assert unknown["status"] == 404 and "model-z is not served here" in unknown["body"], unknown

    # gpu1's server fails its health endpoint: lb1's HAProxy takes it out (its own log line).
    # Timed from the fault file's modification time (the containers share the host's clock).
    _fault(site, env, "gpu1", "--model-server", "error")
    stat = ("stat", "-c", "%.9Y", faults.MODEL_SERVER_FAULT_FILE)
    failed = float(pm.exec_in(lab.container("gpu1"), *stat).stdout)
    try:
        logged = _until("gpu1 out of rotation at lb1",
                        lambda: sv.backend_down_at(lab, "lb1", "gpu1", failed), 15)  # fmt: skip
        print(f"gpu1 out of rotation {logged - failed:.2f} s after failing its health endpoint")
        assert logged - failed <= 3.0
        after = _vip_requests(lab, cluster, key, "model-a", 20)
        assert {(r["status"], r["by"]) for r in after} == {(200, "gpu2")}
    finally:
        _fault(site, env, "gpu1", "--clear")

    # lb1's HAProxy stops: the VIP moves to lb2 (its keepalived's own log line).
    stop = "date +%s.%N && systemctl stop haproxy"
    stopped = float(pm.exec_in(lab.container("lb1"), "sh", "-c", stop).stdout.split()[0])
    took = _until("the VIP on lb2", lambda: sv.became_master(lab, "lb2", stopped), timeout=15)
    print(f"VIP on lb2 {took - stopped:.2f} s after lb1's HAProxy stopped")
    assert took - stopped < 4 and sv.holds(lab, "lb2", vip)
    assert {r["status"] for r in _vip_requests(lab, cluster, key, "model-b", 3)} == {200}
    pm.exec_in(lab.container("lb1"), "systemctl", "start", "haproxy")

    # lb2 powered off through its BMC: the VIP comes back to lb1.
    bmc = sushy.Sushy(f"http://127.0.0.1:{port}/redfish/v1", username="admin", password=PASSWORD)
    lb2 = bmc.get_system("/redfish/v1/Systems/lb2")
    off = time.time()
    lb2.reset_system(sushy.ResetType.FORCE_OFF)
    back = _until("the VIP on lb1", lambda: sv.became_master(lab, "lb1", off), timeout=15)
    print(f"VIP on lb1 {back - off:.2f} s after lb2 was powered off through Redfish")
    assert back - off < 4 and sv.holds(lab, "lb1", vip)
    assert {r["status"] for r in _vip_requests(lab, cluster, key, "model-a", 3)} == {200}
    lb2.reset_system(sushy.ResetType.ON)


def test_down_after_the_make_lab_sequence_leaves_nothing(lab_site):
    """`lab down` after `up --no-power-on`, `pulumi-up`, `up` (what `make lab` runs): exit 0,
    podman as before, and no state left, the lab stack's Pulumi state included (reset, so the
    next `make lab` starts from an empty stack). Last in this file: it takes the lab down."""
    site, env, _, before = lab_site
    state = Path(env["GPUFLEET_LAB_STATE"]) / "labtest"
    assert (state / "pulumi").is_dir(), "pulumi-up kept no state: the sequence did not run"
    down = _gpufleet("lab", "down", "--site", str(site), env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _podman_lists() == before
    assert not state.exists()
