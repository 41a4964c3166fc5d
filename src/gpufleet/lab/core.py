"""Bring the lab up, show it, take it down.

The lab turns `inventories/<site>/cluster.yaml` (profile `lab`) into
privileged systemd containers from the node image, on podman networks built
from the address plan, each with a Redfish BMC served by `gpufleet.lab.bmc`.
Nodes are created powered off and powered on through their BMC, then
"installed" the way an OS installer would: the operator user with the lab's
own SSH key and sudo. Everything the lab creates carries the label
`io.gpufleet.lab=<lab>` or lives in its state directory, so `down` removes
exactly that and nothing else.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import bcrypt

from gpufleet.errors import Problem, UserError
from gpufleet.inventory import render_inventory, write_inventory
from gpufleet.lab import podman as pm
from gpufleet.model import Cluster, Interface, Node, Subnet, load_cluster

NODE_IMAGE = "localhost/gpufleet-node:bookworm"
APT_CACHE_CONF = "00gpufleet-lab-apt-cache"
APT_CACHE_PORT = 3142
CONNECTION_FILE = Path("group_vars") / "all" / "lab-connection.yml"
Say = Callable[[str], None]


@dataclass(frozen=True)
class Lab:
    """Names and paths of one lab, derived from its site directory."""

    site_dir: Path
    site: str
    state_dir: Path

    @property
    def name(self) -> str:
        return f"gpufleet-{self.site}"

    def container(self, node: str) -> str:
        return f"{self.name}-{node}"

    def network(self, net: str) -> str:
        return f"{self.name}-{net}"

    @property
    def key(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def bmc_password_file(self) -> Path:
        return self.state_dir / "bmc-password"

    @property
    def facts_dir(self) -> Path:
        """Ansible's fact cache for this lab's nodes: `down` removes it with the state,
        and a node whose container is created anew loses its cached facts."""
        return self.state_dir / "facts"

    @property
    def vault_password_file(self) -> Path:
        """The lab's Ansible Vault password: the serving secrets in the lab's group_vars are
        vault-encrypted with it, as a site keeps its own."""
        return self.state_dir / "vault-password"

    def ansible_env(self) -> dict[str, str]:
        """Environment for ansible-playbook against this lab (the lab's own fact cache and its
        vault password)."""
        env = {"ANSIBLE_CACHE_PLUGIN_CONNECTION": str(self.facts_dir.resolve())}
        if self.vault_password_file.exists():
            env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(self.vault_password_file.resolve())
        return env


def open_lab(site: str | Path) -> tuple[Lab, Cluster]:
    cluster = load_cluster(site)
    if cluster.spec_file is None:
        raise UserError(f"{site}: the lab needs a site directory")
    site_dir = cluster.spec_file.parent
    problems = [
        Problem(f"nodes[{n.name}].profile", f"'{n.profile_name}' is not a container profile",
                "use profile: lab")
        for n in cluster.nodes
        if not n.profile.container
    ]  # fmt: skip
    problems += [
        Problem(f"profiles.{n.profile_name}.fabric_netdevs", "the lab needs the rails' names",
                "name them, e.g. [eth1, eth2]")
        for n in cluster.nodes
        if n.rails and n.rails[0].netdev is None
    ][:1]  # fmt: skip
    if problems:
        title = f"{site_dir}: not a lab site (container nodes need profile lab)"
        raise UserError(problems, title=title)
    repo_cache = Path(os.environ.get("GPUFLEET_LAB_STATE", Path.cwd() / ".cache" / "lab"))
    name = cluster.site.name
    return Lab(site_dir=site_dir, site=name, state_dir=repo_cache / name), cluster


# --- BMC emulator -----------------------------------------------------------


def _bmc_endpoint(cluster: Cluster) -> tuple[str, int]:
    urls = {(urlparse(n.bmc.url).hostname, urlparse(n.bmc.url).port or 80) for n in cluster.nodes}
    if len(urls) != 1:
        raise UserError("lab nodes must share one BMC emulator (same host and port in bmc.url)")
    host, port = urls.pop()
    if host not in ("127.0.0.1", "localhost"):
        raise UserError(f"lab BMC URLs must point at 127.0.0.1, not {host}")
    return "127.0.0.1", port


def _bmc_alive(port: int) -> bool:
    try:
        # The service root needs no credentials (Redfish spec); everything below it does.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/redfish/v1", timeout=2) as r:
            status: int = r.status
            return status == 200
    except OSError:
        return False


def bmc_password(lab: Lab) -> str:
    """The lab's BMC password: from the environment variable the spec names, else generated."""
    env = os.environ.get("GPUFLEET_LAB_BMC_PASSWORD")
    if env:
        return env
    if not lab.bmc_password_file.exists():
        lab.bmc_password_file.write_text(secrets.token_urlsafe(18))
        lab.bmc_password_file.chmod(0o600)
    return lab.bmc_password_file.read_text().strip()


def _write_htpasswd(lab: Lab, cluster: Cluster) -> None:
    """Basic-auth users of the emulated BMCs, bcrypt-hashed (never the password itself)."""
    password = bmc_password(lab).encode()
    users = sorted({n.bmc.username for n in cluster.nodes})
    lines = [f"{u}:{bcrypt.hashpw(password, bcrypt.gensalt()).decode()}" for u in users]
    path = lab.state_dir / "bmc-htpasswd"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def start_bmc(lab: Lab, cluster: Cluster, say: Say) -> int:
    host, port = _bmc_endpoint(cluster)
    nodes = {n.name: {"mac": n.boot_mac, "memory_gib": 4, "cpus": 2} for n in cluster.nodes}
    (lab.state_dir / "bmc-nodes.json").write_text(json.dumps(nodes, indent=2, sort_keys=True))
    _write_htpasswd(lab, cluster)
    if _bmc_alive(port):
        say(f"BMC emulator already serving on {host}:{port}")
        return port
    log = open(lab.state_dir / "bmc.log", "ab")  # noqa: SIM115 (the daemon keeps it)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufleet.lab.bmc", "--lab", lab.name,
         "--state-dir", str(lab.state_dir), "--host", host, "--port", str(port)],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    (lab.state_dir / "bmc.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 30
    while not _bmc_alive(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (lab.state_dir / "bmc.log").read_text()[-2000:]
            raise UserError(f"the lab BMC emulator did not start on {host}:{port}:\n{tail}")
        time.sleep(0.3)
    say(f"BMC emulator (sushy-tools, podman driver) serving on http://{host}:{port}")
    return port


def stop_bmc(lab: Lab, say: Say) -> None:
    pid_file = lab.state_dir / "bmc.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink()
    say(f"stopped BMC emulator (pid {pid})")


def redfish_power(lab: Lab, node: Node, action: str) -> None:
    """Press the node's power button through its BMC (a real Redfish client)."""
    # sushy takes half a second to import; only commands that power nodes pay for it.
    import sushy

    url = node.bmc.url
    root = url.split("/redfish/v1/")[0] + "/redfish/v1"
    conn = sushy.Sushy(root, username=node.bmc.username, password=bmc_password(lab))
    system = conn.get_system(urlparse(url).path)
    system.reset_system(sushy.ResetType(action))


# --- up ----------------------------------------------------------------------


def _ensure_key(lab: Lab, say: Say) -> str:
    if not lab.key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{lab.name}-operator",
             "-f", str(lab.key)],
            check=True,
        )  # fmt: skip
        say(f"generated the lab's SSH key pair {lab.key}")
    return lab.key.with_suffix(".pub").read_text().strip()


def _ensure_networks(lab: Lab, subnets: tuple[Subnet, ...], say: Say) -> None:
    for subnet in subnets:
        name = lab.network(subnet.name)
        if pm.network_exists(name):
            continue
        args = ["network", "create", "--label", f"{pm.LABEL}={lab.name}",
                "--subnet", str(subnet.cidr)]  # fmt: skip
        if subnet.gateway:
            args += ["--gateway", str(subnet.gateway)]
        if subnet.mtu and subnet.mtu != 1500:
            args += ["--opt", f"mtu={subnet.mtu}"]
        try:
            pm.podman(*args, name)
        except pm.PodmanError as err:
            raise UserError(
                f"cannot create network {name} ({subnet.cidr}): {err}. Another podman network "
                "may use that subnet: `podman network ls`"
            ) from err
        say(f"network {name} {subnet.cidr}")


def container_interfaces(node: Node) -> list[tuple[str, Interface]]:
    """(name in the container, interface): the frontend is eth0 (the boot NIC), each rail
    takes the name its profile gives it (`fabric_netdevs`, so the inventory's
    gpufleet_fabric_interfaces is true in the lab), then storage, and oob on the
    management nodes, on the next free ethN."""
    names: list[tuple[str, Interface]] = [("eth0", node.frontend)]
    names += [(r.netdev or f"rail{r.rail}", r) for r in node.rails]
    rest = [node.storage] if node.storage is not None else []
    if node.role in ("head", "monitoring"):
        rest.append(node.oob)
    taken = {name for name, _ in names}
    n = 0
    for iface in rest:
        while f"eth{n}" in taken:
            n += 1
        taken.add(f"eth{n}")
        names.append((f"eth{n}", iface))
    return names


# The CPU weight of a lab node against other containers on the host (podman's default is
# 1024): the lab measures failover and detection times and compares burn-in rates between
# nodes, and other container work on the same cores (make test runs molecule scenarios
# beside the lab's system test) must not skew them.
LAB_CPU_SHARES = 4096


def _create_node(lab: Lab, node: Node, say: Say) -> None:
    name = lab.container(node.name)
    if pm.container_exists(name):
        return
    args = ["create", "--name", name, "--hostname", node.name, "--privileged",
            "--systemd=always", "--no-hosts", "--label", f"{pm.LABEL}={lab.name}",
            "--label", f"io.gpufleet.node={node.name}",
            f"--cpu-shares={LAB_CPU_SHARES}"]  # fmt: skip
    args += _apt_cache_mounts()
    if node.role == "gpu":
        args += _torch_mount()
    for netdev, iface in container_interfaces(node):
        opts = f"ip={iface.address},interface_name={netdev}"
        if iface.network == "frontend":
            opts += f",mac={node.boot_mac}"
        args += ["--network", f"{lab.network(iface.network)}:{opts}"]
    pm.podman(*args, NODE_IMAGE)
    # Facts cached for an earlier container of this name describe a node that is gone.
    for cached in lab.facts_dir.glob(f"*{node.name}"):
        if cached.name.endswith(f"_{node.name}") or cached.name == node.name:
            cached.unlink()
    say(f"node {node.name}: container {name} created (powered off)")


def _apt_cache_mounts() -> list[str]:
    """Point the node's apt at the host's apt cache (scripts/bootstrap's apt-cacher-ng).

    The hook falls back to the mirror when the cache does not answer. It is mounted
    into lab containers (and molecule's, .config/molecule/config.yml), never written
    by a role, so production nodes never carry it.
    """
    path = Path(str(resources.files("gpufleet.lab") / "aptcache"))
    conf = f"{path / APT_CACHE_CONF}:/etc/apt/apt.conf.d/{APT_CACHE_CONF}:ro"
    return ["--volume", f"{path}:/usr/local/lib/gpufleet-lab:ro", "--volume", conf]


# Where lab GPU nodes find torch for the burn-in (`gpufleet_verify.burnin_pythonpath` in the
# lab's group_vars): the host's own, mounted read-only. Lab only: on hardware the cluster_verify
# role installs torch into a virtual environment on each GPU node.
LAB_TORCH_PATH = "/opt/gpufleet-lab/python"


def _torch_mount() -> list[str]:
    """The site-packages folder that holds the host's torch (a CPU run needs no CUDA)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return []
    site_packages = Path(spec.origin).parent.parent  # .../site-packages/torch/__init__.py
    return ["--volume", f"{site_packages}:{LAB_TORCH_PATH}:ro"]


def apt_cache_answers() -> bool:
    """Whether the host's apt cache accepts connections (the nodes' hook probes the same)."""
    try:
        with socket.create_connection(("127.0.0.1", APT_CACHE_PORT), timeout=1):
            return True
    except OSError:
        return False


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise UserError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def _port_open(address: str, port: int = 22) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1) as sock:
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


# One `podman exec` per node on every `up` (each costs a few hundred ms of CPU on a
# 2-core host): wait for boot, what an OS installer does (the operator account, its key,
# sudo), then print the node's SSH host key and the digest of the replay tools it holds.
_INSTALL = r"""
set -eu
user=$1 pubkey=$2
i=0
while :; do
  state=$(systemctl is-system-running 2>/dev/null || true)
  case $state in running | degraded) break ;; esac
  i=$((i + 1))
  [ "$i" -le 450 ] || { echo "not booted after 90 s: $state" >&2; exit 3; }
  sleep 0.2
done
id -u "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
install -d -m 0700 -o "$user" -g "$user" "/home/$user/.ssh"
printf '%s\n' "$pubkey" > "/home/$user/.ssh/authorized_keys"
chown "$user:$user" "/home/$user/.ssh/authorized_keys"
chmod 0600 "/home/$user/.ssh/authorized_keys"
printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$user" > "/etc/sudoers.d/90-$user"
chmod 0440 "/etc/sudoers.d/90-$user"
# GPU nodes: the GPUs' device files, made at every boot as the driver would (a container's
# /dev starts empty, and a power cycle through the BMC does not run this script).
if [ "$3" -gt 0 ]; then
  unit=/etc/systemd/system/gpufleet-lab-gpus.service
  last=$(($3 - 1))
  mk='[ -e /dev/nvidia$i ] || mknod -m 0666 /dev/nvidia$i c 195 $i'
  printf '%s\n' '[Unit]' \
    'Description=gpufleet lab: device files of the replayed GPUs (lab only, never a role)' \
    '[Service]' 'Type=oneshot' 'RemainAfterExit=yes' \
    "ExecStart=/bin/sh -c 'for i in \$(seq 0 $last); do $mk; done'" \
    '[Install]' 'WantedBy=multi-user.target' > "$unit.new"
  if cmp -s "$unit.new" "$unit"; then rm "$unit.new"
  else mv "$unit.new" "$unit"; systemctl daemon-reload; fi
  systemctl enable -q gpufleet-lab-gpus.service
  systemctl restart gpufleet-lab-gpus.service
fi
cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub
cat /etc/gpufleet-replay/digest 2>/dev/null || echo none
"""


def _install(lab: Lab, node: Node, user: str, pubkey: str) -> tuple[str, str]:
    """Install the node the way an OS installer would; (host key line, replay digest)."""
    name = lab.container(node.name)
    gpus = str(LAB_REPLAY_GPUS if node.role == "gpu" else 0)
    result = pm.exec_in(name, "sh", "-c", _INSTALL, "install", user, pubkey, gpus, check=False)
    if result.returncode != 0:
        raise UserError(f"{node.name}: installing the operator account failed: "
                        f"{result.stderr.strip() or result.stdout.strip()}")  # fmt: skip
    lines = result.stdout.split("\n")
    keytype, blob = lines[0].split()[:2]
    return f"{node.frontend.address},{node.name} {keytype} {blob}", lines[1].strip()


REPLAY_TOOLS = ("nvidia-smi", "nv-fabricmanager", "ibstat", "ibdev2netdev", "dmesg")
# The replayed nccl-tests (replay/bin/nccl-tests), one name per collective, where the lab's
# group_vars tell the verification phase to find its binaries (`gpufleet_verify.nccl_tests_bin`).
NCCL_TESTS_REPLAY = "/usr/local/lib/gpufleet-replay/nccl-tests"
NCCL_TESTS_COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "alltoall", "sendrecv")
# GPUs of a lab GPU node: the replayed nvidia-smi's recordings are 8 x H100 nodes, and `up`
# makes as many device files (/dev/nvidia0-7, NVIDIA's major number 195) for Slurm's GRES.
LAB_REPLAY_GPUS = 8
LAB_GPU_DEVICES = tuple(f"/dev/nvidia{i}" for i in range(LAB_REPLAY_GPUS))
# Package data: the tools and the recordings they print (each with its provenance line).
REPLAY = resources.files("gpufleet.lab") / "replay"


def replay_digest() -> str:
    """SHA-256 over the replay tools and recordings (names and contents)."""
    digest = hashlib.sha256()
    for sub in ("bin", "recordings"):
        for entry in sorted((REPLAY / sub).iterdir(), key=lambda e: e.name):
            digest.update(f"{sub}/{entry.name}\0".encode())
            digest.update(entry.read_bytes())
    return digest.hexdigest()


def _install_replay(lab: Lab, node_name: str, digest: str) -> None:
    """GPU nodes only: replay tools that print outputs recorded on real H100 systems
    (gpufleet/lab/replay: bin/ and recordings/ with their sources) where the real tools
    would be. The lab installs them, as a stand-in for hardware; roles never do. Copied
    only when the node's copy differs (its digest); a recording set a fault chose stays."""
    name = lab.container(node_name)
    stage = "/usr/local/lib/gpufleet-replay-stage"
    pm.exec_in(name, "rm", "-rf", stage)
    with resources.as_file(REPLAY) as path:
        pm.podman("cp", str(path), f"{name}:{stage}")
    tools = " ".join(REPLAY_TOOLS)
    collectives = " ".join(NCCL_TESTS_COLLECTIVES)
    pm.exec_in(
        name,
        "sh",
        "-c",
        f"""set -eu
install -d -m 0755 /usr/share/gpufleet-replay /etc/gpufleet-replay
install -m 0644 -o root -g root {stage}/recordings/* /usr/share/gpufleet-replay/
for tool in {tools}; do install -m 0755 -o root -g root {stage}/bin/$tool /usr/local/bin/$tool; done
install -d -m 0755 {NCCL_TESTS_REPLAY}
install -m 0755 -o root -g root {stage}/bin/nccl-tests {NCCL_TESTS_REPLAY}/nccl-tests
for c in {collectives}; do ln -sfn nccl-tests {NCCL_TESTS_REPLAY}/${{c}}_perf; done
rm -rf {stage}
[ -s /etc/gpufleet-replay/set ] || echo healthy > /etc/gpufleet-replay/set
echo {digest} > /etc/gpufleet-replay/digest""",
    )


WEBHOOK = resources.files("gpufleet.lab") / "webhook"
# Where the lab's alert receiver listens on a monitoring node, and what it records.
ALERT_RECEIVER = "http://127.0.0.1:9095"
ALERT_LOG = "/var/log/gpufleet-lab-alerts.jsonl"


def _install_alert_receiver(lab: Lab, node_name: str) -> None:
    """Monitoring nodes only: the lab's webhook receiver (gpufleet/lab/webhook), which records
    every notification of the lab's Alertmanager in ALERT_LOG, as a site's pager would
    receive them. The lab installs it; roles never do."""
    name = lab.container(node_name)
    stage = "/usr/local/lib/gpufleet-webhook-stage"
    pm.exec_in(name, "rm", "-rf", stage)
    with resources.as_file(WEBHOOK) as path:
        pm.podman("cp", str(path), f"{name}:{stage}")
    pm.exec_in(
        name,
        "sh",
        "-c",
        f"""set -eu
install -m 0755 -o root -g root {stage}/gpufleet-lab-alert-receiver /usr/local/sbin/
install -m 0644 -o root -g root {stage}/gpufleet-lab-alert-receiver.service /etc/systemd/system/
rm -rf {stage}
systemctl daemon-reload
systemctl enable --now gpufleet-lab-alert-receiver.service >/dev/null 2>&1""",
    )


MODELSERVER = resources.files("gpufleet.lab") / "modelserver"


def _install_model_server(lab: Lab, node_name: str, paths: list[str]) -> None:
    """GPU nodes that serve a model: the lab's stand-in for vLLM as /usr/local/bin/vllm (the
    model_server role runs it with vLLM's command line) and each model's directory, as a site
    copies its models to local disk. The lab installs them; roles never do."""
    name = lab.container(node_name)
    with resources.as_file(MODELSERVER / "vllm") as path:
        pm.podman("cp", str(path), f"{name}:/usr/local/bin/vllm")
    dirs = " ".join(shlex.quote(p) for p in paths)
    pm.exec_in(name, "sh", "-c", f"chmod 0755 /usr/local/bin/vllm && install -d -m 0755 {dirs}")


def serving_secrets(lab: Lab, cluster: Cluster) -> dict[str, str]:
    """The lab's serving secrets, made once and kept in the lab's state: a CA and a certificate
    for the VIP's name and address (openssl) and an API key. Lab only: a site
    keeps its own in Ansible Vault."""
    tls = lab.state_dir / "serving"
    tls.mkdir(mode=0o700, parents=True, exist_ok=True)
    vip = next((v for v in cluster.vips if v.name == cluster.serving.vip), None)
    if vip is not None and not (tls / "site.crt").exists():

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True)

        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-days", "3650", "-subj", f"/CN={lab.name} lab CA", "-keyout", str(tls / "ca.key"),
                "-out", str(tls / "ca.crt"))  # fmt: skip
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", f"/CN={vip.hostname}", "-keyout", str(tls / "site.key"),
                "-out", str(tls / "site.csr"))  # fmt: skip
        (tls / "san.ext").write_text(f"subjectAltName=DNS:{vip.hostname},IP:{vip.address}\n")
        openssl("x509", "-req", "-in", str(tls / "site.csr"), "-CA", str(tls / "ca.crt"),
                "-CAkey", str(tls / "ca.key"), "-CAcreateserial", "-days", "825",
                "-extfile", str(tls / "san.ext"), "-out", str(tls / "site.crt"))  # fmt: skip
    if not (tls / "api-key").exists():
        (tls / "api-key").write_text(secrets.token_urlsafe(24) + "\n")
        (tls / "api-key").chmod(0o600)
    out = {"api_key": (tls / "api-key").read_text().strip(), "ca": str(tls / "ca.crt")}
    if (tls / "site.crt").exists():
        out["pem"] = (tls / "site.crt").read_text() + (tls / "site.key").read_text()
    return out


# AIDE on one GPU node and one head node of the lab unless GPUFLEET_LAB_AIDE=all.
LAB_AIDE_NODES = (
    "((groups['gpu_nodes'] | default([]))[:1] + (groups['head_nodes'] | default([]))[:1])"
)


def lab_aide_vars() -> str:
    """The lab's AIDE setting for lab-connection.yml, from GPUFLEET_LAB_AIDE (unset or `all`).

    Every node pays AIDE's setup once: about 25 s of CPU for the aide-common package (it
    registers its 219 rule snippets with ucf, one shell script run each) and for the first
    database. Real nodes pay it on their own cores; the lab's nodes share the lab host's,
    where seven of them made AIDE a third of the first converge. So the lab keeps AIDE on
    the first GPU node and the first head node, and every other part of the hardening on
    every node."""
    value = os.environ.get("GPUFLEET_LAB_AIDE", "")
    if value == "all":
        return "# GPUFLEET_LAB_AIDE=all: AIDE on every lab node, as on real nodes.\n"
    if value:
        raise UserError(
            f"GPUFLEET_LAB_AIDE={value!r}: the only value is 'all' (AIDE on every "
            "lab node); unset, the lab runs AIDE on its first GPU and head node"
        )
    return (
        "# AIDE (hardening_os) on the first GPU node and the first head node only: its setup\n"
        "# (the aide-common package's ucf registrations, the first database) costs every\n"
        "# node about 25 s of CPU, which real nodes pay on their own cores and the lab's\n"
        "# nodes on the lab host's shared ones. Every other hardening setting is on every\n"
        "# node. GPUFLEET_LAB_AIDE=all at `gpufleet lab up` puts AIDE on every node.\n"
        f'hardening_os_aide_enabled: "{{{{ inventory_hostname in {LAB_AIDE_NODES} }}}}"\n'
    )


def connection_vars(lab: Lab, pubkey: str, gpu_nodes: list[str] | None = None,
                    serving: dict[str, str] | None = None) -> str:  # fmt: skip
    replayed = "".join(f"  {n}: {LAB_REPLAY_GPUS}\n" for n in gpu_nodes or [])
    return (
        "# Written by `gpufleet lab up`: how Ansible reaches the lab's container nodes.\n"
        "# Not generated from cluster.yaml and not committed (see .gitignore).\n"
        f"ansible_ssh_private_key_file: {lab.key}\n"
        f"ansible_ssh_common_args: -o UserKnownHostsFile={lab.known_hosts} "
        "-o StrictHostKeyChecking=yes\n"
        "# The lab's operator key replaces the example key of cluster.yaml.\n"
        f"gpufleet_ssh_public_keys:\n  - {pubkey}\n"
        "# GPUs the replay tools show on each lab GPU node (the profile has none: no GPU roles\n"
        "# run here); playbooks/slurm.yml offers them as GRES.\n"
        + (
            f"gpufleet_lab_replay_gpus:\n{replayed}"
            if replayed
            else "gpufleet_lab_replay_gpus: {}\n"
        )
        + "# A job requeued by a failing prolog waits cred_expire seconds (120 by default)\n"
        "# before it may start again; the lab waits 30.\n"
        "gpufleet_slurm_conf_overrides:\n  AuthInfo: cred_expire=30\n"
        "# Alertmanager notifies the lab's webhook receiver on the monitoring node, which records\n"
        f"# every notification in {ALERT_LOG}; it groups for 5 s and re-notifies changes\n"
        "# (resolved alerts) after 10 s, and the node health metrics refresh every 10 s, so a\n"
        "# fault reaches the receiver within about a minute (scrape and evaluation: 10 s,\n"
        "# cluster.yaml's monitoring section).\n"
        "gpufleet_alertmanager_webhooks:\n"
        + "".join(f"  {sev}: [{ALERT_RECEIVER}/{sev}]\n" for sev in ("critical", "warning", "info"))
        + "gpufleet_alertmanager_group_wait: 5s\n"
        "gpufleet_alertmanager_group_interval: 10s\n"
        "gpufleet_node_health_metrics_interval: 10\n"
        + LAB_VERIFY_VARS
        + (_serving_vars(lab, serving) if serving else "")
    )


# The verification phase in the lab (playbooks/verify.yml, docs/verify.md): the same playbook
# and jobs as on hardware, with the replayed nccl-tests and a burn-in on CPU (torch from the
# host), and limits for CPU containers that share two cores instead of H100s.
LAB_VERIFY_VARS = f"""\
# The verification phase (docs/verify.md, "The lab"): nccl-tests are the lab's replay (runs
# recorded on H100 systems); the burn-in runs for real on CPU with the host's torch, for a few
# seconds; the expected busbw per rail is the healthy replayed pair's (23.6 GB/s); CPU
# containers sharing two cores measure GEMM rates within about 25% of each other under load,
# so a node is slow below 60% of the fleet's rate (--slow-gpu caps one at 15% of a core,
# about a fifth of the others' rate, and gives it a 64th of their CPU weight).
gpufleet_verify:
  nccl_tests_bin: {NCCL_TESTS_REPLAY}
  build_nccl_tests: false
  burnin_python: /usr/bin/python3
  burnin_pythonpath: {LAB_TORCH_PATH}
  install_burnin_venv: false
  burnin_seconds: 4
  burnin_args: [--device, cpu, --size, "256", --check-interval, "1"]
  # Lab nodes have 2 CPUs, too few for one rank per GPU; the replay's rank 0 prints the run.
  ranks_per_node: 1
  # A job waits this long for its nodes (srun --immediate): on two shared cores a node can
  # stay COMPLETING in its epilog for a while when other containers keep the cores busy.
  wait_s: 300
  profile: hgx-h100-8gpu-ib
  expected_rail_gbps: 23.6
  noise: 0.15
  compute_warn_fraction: 0.75
  compute_fail_fraction: 0.6
  burnin_rules: {{fleet_warn_pct: -35, fleet_fail_pct: -45, min_load_efficiency: 0.3,
                 require_nvml: 0}}
"""


def _vaulted(lab: Lab, value: str, indent: str) -> str:
    """`value` as an inline Ansible Vault string (`!vault |`), encrypted with the lab's vault
    password (made once, kept in the lab's state, mode 0600)."""
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret

    pw = lab.vault_password_file
    if not pw.exists():
        pw.write_text(secrets.token_urlsafe(32) + "\n")
        pw.chmod(0o600)
    secret = VaultSecret(pw.read_text().strip().encode())
    blob = VaultLib([(DEFAULT_VAULT_ID_MATCH, secret)]).encrypt(value, secret).decode()
    return "!vault |\n" + "".join(f"{indent}{line}\n" for line in blob.splitlines())


def _serving_vars(lab: Lab, serving: dict[str, str]) -> str:
    """The serving phase's lab settings: the stand-in as vLLM, and the lab's secrets encrypted
    with the lab's vault password (`lab converge` passes it), as a site keeps its own."""
    pem = serving.get("pem")
    return (
        "# Serving: the lab's stand-in for vLLM (installed by `lab up`), not pip's vLLM.\n"
        "gpufleet_model_server_install: false\n"
        "gpufleet_model_server_vllm_bin: /usr/local/bin/vllm\n"
        "# The lab's serving secrets (certificate and key from the lab CA, API key), vaulted.\n"
        f"gpufleet_serving_api_keys:\n  lab: {_vaulted(lab, serving['api_key'], '    ')}"
        + (f"gpufleet_serving_tls_pem: {_vaulted(lab, pem, '  ')}" if pem else "")
    )


def ssh(
    lab: Lab, user: str, address: str, *cmd: str, key: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command on a lab node over real SSH, as an operator would."""
    return subprocess.run(
        ["ssh", "-i", str(key or lab.key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", f"UserKnownHostsFile={lab.known_hosts}", "-o", "StrictHostKeyChecking=yes",
         "-o", "ConnectTimeout=5", f"{user}@{address}", *cmd],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def up(site: str | Path, say: Say = print, power_on: bool = True) -> dict[str, Any]:
    """Networks, nodes, BMCs; then (power_on) power on, install and check SSH."""
    lab, cluster = open_lab(site)
    aide = lab_aide_vars()  # a bad GPUFLEET_LAB_AIDE stops here, before anything is made
    if not pm.image_exists(NODE_IMAGE):
        raise UserError(f"the node image {NODE_IMAGE} is missing: run scripts/bootstrap image")
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    pubkey = _ensure_key(lab, say)
    if not apt_cache_answers():
        say(f"warning: no apt cache on port {APT_CACHE_PORT} (scripts/bootstrap aptcache starts "
            "apt-cacher-ng); the nodes download Debian packages from the mirror")  # fmt: skip
    _ensure_networks(lab, cluster.subnets, say)
    for node in cluster.nodes:
        _create_node(lab, node, say)
    start_bmc(lab, cluster, say)
    if not power_on:
        say("nodes left powered off: `pulumi up` powers them on through their BMCs")
        return {"nodes": len(cluster.nodes), "seconds": round(time.monotonic() - start, 1)}
    for node in cluster.nodes:
        if not pm.is_running(lab.container(node.name)):
            redfish_power(lab, node, "On")
            say(f"node {node.name}: powered on through its BMC")
    user = cluster.site.ssh_user
    digest = replay_digest()
    host_keys = []
    for node in cluster.nodes:
        host_key, node_digest = _install(lab, node, user, pubkey)
        host_keys.append(host_key)
        if node.role == "gpu" and node_digest != digest:
            _install_replay(lab, node.name, digest)
        if node.role == "monitoring":
            _install_alert_receiver(lab, node.name)
        served = [m.path for m in cluster.serving.models if node.name in m.nodes]
        if served:
            _install_model_server(lab, node.name, served)
    lab.known_hosts.write_text("\n".join(host_keys) + "\n")
    write_inventory(lab.site_dir, render_inventory(cluster))
    gpu_nodes = [n.name for n in cluster.nodes if n.role == "gpu"]
    serving = serving_secrets(lab, cluster) if cluster.serving.models else None
    connection = lab.site_dir / CONNECTION_FILE
    connection.write_text(connection_vars(lab, pubkey, gpu_nodes, serving) + aide)
    connection.chmod(0o600)

    def check_ssh(node: Node) -> None:
        address = str(node.frontend.address)
        _wait(functools.partial(_port_open, address), 60, f"sshd on {node.name} ({address})")
        result = ssh(lab, user, address, "true")
        if result.returncode != 0:
            raise UserError(f"{node.name}: SSH with the lab key failed: {result.stderr.strip()}")

    # All nodes at once: each check mostly waits on the network and the node's sshd.
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(check_ssh, cluster.nodes))
    summary = {"nodes": len(cluster.nodes), "seconds": round(time.monotonic() - start, 1)}
    _record(lab, "up", summary)
    say(f"lab {lab.name}: {len(cluster.nodes)} nodes up, SSH checked with the lab key "
        f"({summary['seconds']} s); inventory in {lab.site_dir}")  # fmt: skip
    return summary


def _record(lab: Lab, what: str, data: dict[str, Any]) -> None:
    path = lab.state_dir / "runs.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[what] = {"at": time.strftime("%Y-%m-%d %H:%M:%S"), **data}
    path.write_text(json.dumps(runs, indent=2, sort_keys=True))


def record_run(site: str | Path, what: str, data: dict[str, Any]) -> None:
    lab, _ = open_lab(site)
    _record(lab, what, data)


def status(site: str | Path) -> dict[str, Any]:
    lab, cluster = open_lab(site)
    port = _bmc_endpoint(cluster)[1]
    rows = []
    for node in cluster.nodes:
        name = lab.container(node.name)
        exists = pm.container_exists(name)
        rows.append({
            "node": node.name,
            "role": node.role,
            "container": name if exists else None,
            "power": ("On" if pm.is_running(name) else "Off") if exists else "absent",
            "frontend": str(node.frontend.address),
            "rails": [str(r.address) for r in node.rails],
            "bmc": node.bmc.url,
        })  # fmt: skip
    runs_file = lab.state_dir / "runs.json"
    verified = lab.site_dir / "reports" / "verify" / "latest"
    summary = verified / "summary.json"
    return {
        "lab": lab.name,
        "bmc_emulator": "up" if _bmc_alive(port) else "down",
        "nodes": rows,
        "networks": pm.labelled("network", lab.name),
        "last_runs": json.loads(runs_file.read_text()) if runs_file.exists() else {},
        "last_verify": (
            {**json.loads(summary.read_text()), "local_report": str(verified / "report.html")}
            if summary.exists()
            else None
        ),
    }


def down(site: str | Path, say: Say = print) -> None:
    lab, _ = open_lab(site)
    stop_bmc(lab, say)
    for name in pm.labelled("container", lab.name):
        pm.podman("rm", "-f", "-t", "0", name)
        say(f"removed container {name}")
    for name in pm.labelled("network", lab.name):
        pm.podman("network", "rm", name)
        say(f"removed network {name}")
    conn = lab.site_dir / CONNECTION_FILE
    if conn.exists():
        conn.unlink()
    if lab.state_dir.exists():
        # The state directory holds the lab's Pulumi file backend too. Its stack
        # describes containers that no longer exist, so it is reset (removed) rather
        # than destroyed: a destroy would ask BMCs that are already gone to power
        # off. The next `make lab` starts from an empty stack.
        shutil.rmtree(lab.state_dir)
        say(f"removed {lab.state_dir} (lab state and the lab stack's Pulumi state)")


# --- pulumi up on the lab's stack ---------------------------------------------


def repo_root() -> Path:
    """The checkout whose playbooks and Pulumi stack the lab runs (site.yml, ansible.cfg,
    stacks/cluster): $GPUFLEET_REPO, else the current directory. The package itself
    carries no playbooks: an installed gpufleet still needs the repository."""
    env = os.environ.get("GPUFLEET_REPO")
    root = Path(env) if env else Path.cwd()
    missing = [p for p in ("site.yml", "ansible.cfg", "stacks/cluster/Pulumi.yaml")
               if not (root / p).is_file()]  # fmt: skip
    if missing:
        where = "GPUFLEET_REPO" if env else "the current directory"
        raise UserError(
            [
                Problem(
                    where,
                    f"{root} is not a gpufleet checkout (no {', '.join(missing)})",
                    "run from the repository root or set GPUFLEET_REPO=/path/to/gpufleet",
                )
            ]
        )
    return root


# The lab's state is local and its secrets are the lab's own; a fixed passphrase
# keeps `make lab` non-interactive. Real sites set PULUMI_CONFIG_PASSPHRASE.
LAB_PASSPHRASE = "gpufleet-lab"


# Stack settings of a lab site without its own stacks/cluster/Pulumi.<site>.yaml (a test
# lab, a second lab): those of the committed lab stack, Pulumi.lab.yaml.
LAB_STACK_CONFIG = {
    "bootTarget": "Pxe",
    "bootEnabled": "Once",
    "powerState": "On",
    "powerTimeout": "120",
    "powerPollInterval": "1",
    "bmcTimeout": "10",
}


def _private_stack(lab: Lab, repo: Path) -> Path:
    """A copy of the stack project in the lab's state directory, with this site's config.

    `pulumi stack init` writes the stack's config file (with its encryption salt) next to
    Pulumi.yaml; for a site that has none committed, that file and the project copy live in
    the lab's state directory, so `lab down` removes them with the state.
    """
    stack_dir = repo / "stacks" / "cluster"
    private = lab.state_dir / "stack"
    private.mkdir(parents=True, exist_ok=True)
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy2(stack_dir / name, private / name)
    config_file = private / f"Pulumi.{lab.site}.yaml"
    salt = ""
    if config_file.exists():
        salt = next((ln for ln in config_file.read_text().splitlines()
                     if ln.startswith("encryptionsalt:")), "")  # fmt: skip
    values = {"spec": str(lab.site_dir.resolve()), "ansibleRoot": str(repo),
              **LAB_STACK_CONFIG}  # fmt: skip
    settings = [f"  gpufleet-cluster:{key}: {json.dumps(value)}" for key, value in values.items()]
    header = "# Written by `gpufleet lab pulumi-up` for this lab site (removed by `lab down`)."
    lines = [header, "config:", *settings]
    config_file.write_text("\n".join([*lines, salt]).rstrip("\n") + "\n")
    return private


def pulumi_up(site: str | Path, say: Say = print) -> dict[str, Any]:
    """`pulumi up` of stacks/cluster on stack <site>: BMC power, boot, inventory as state."""
    lab, _ = open_lab(site)
    repo = repo_root()
    stack_dir = repo / "stacks" / "cluster"
    if not (stack_dir / f"Pulumi.{lab.site}.yaml").exists():
        stack_dir = _private_stack(lab, repo)
    backend = lab.state_dir / "pulumi"
    backend.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "PULUMI_CONFIG_PASSPHRASE": os.environ.get("PULUMI_CONFIG_PASSPHRASE", LAB_PASSPHRASE),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        # Final state only: per-step checkpoints cost more than the lab's whole up
        # (docs/pulumi.md, "Where the time goes"); every provider reads before it writes.
        "PULUMI_SKIP_CHECKPOINTS": "true",
        "GPUFLEET_LAB_BMC_PASSWORD": bmc_password(lab),
    }

    def run(*args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["pulumi", *args, "--non-interactive"], cwd=stack_dir, env=env, text=True,
            capture_output=capture, check=False, timeout=1800,
        )  # fmt: skip

    if run("stack", "select", lab.site, capture=True).returncode != 0:
        init = run("stack", "init", lab.site, capture=True)
        if init.returncode != 0:
            raise UserError(f"pulumi stack init {lab.site} failed: {init.stderr.strip()}")
    say(f"pulumi up --stack {lab.site} (state in {backend})")
    up_run = run("up", "--yes", "--stack", lab.site)
    if up_run.returncode != 0:
        raise UserError(f"pulumi up --stack {lab.site} failed (see the output above)")
    history = run(
        "stack", "history", "--json", "--page-size", "1", "--stack", lab.site, capture=True
    )
    changes = json.loads(history.stdout)[0].get("resourceChanges", {}) if history.stdout else {}
    changed = sum(v for k, v in changes.items() if k != "same")
    summary = {"resources": sum(changes.values()), "changed": changed}
    _record(lab, "pulumi", summary)
    say("pulumi up: " + ("0 changes" if changed == 0 else f"{changed} changes") + f" {changes}")
    return summary
