"""The lab's apt cache: a second converge downloads nothing from the mirror; no cache, no failure.

A real apt-cacher-ng (the Debian package scripts/bootstrap installs) is started by this
test on a port of its own, with its own cache and log directories, so it never touches
the host's cache or a running lab. Node containers from the node image get the same
apt hook the lab and molecule mount (src/gpufleet/lab/aptcache), pointed at that port,
and are converged with the real `base` role (it installs chrony) over podman:

1. a first converge of a fresh node fills the cache;
2. a second converge of another fresh node (the same scenario run again) is served
   from the cache: the cache's log has no download ("I" record) of a package, only
   deliveries ("O") to the node;
3. with the cache stopped, a third fresh node still converges, from the mirror.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpufleet.lab import podman as pm

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "src/gpufleet/lab/aptcache"
NODE_IMAGE = "localhost/gpufleet-node:bookworm"
ACNG = shutil.which("apt-cacher-ng") or "/usr/sbin/apt-cacher-ng"

pytestmark = pytest.mark.system

CONVERGE = """\
- name: Converge the base role (it installs chrony)
  hosts: all
  gather_facts: true
  vars:
    base_hosts_group: all
    base_hosts_address_var: node_address
    base_hosts_domain: lab.gpufleet.test
    base_ntp_servers: [127.0.0.1]
    base_chrony_clock_control: false
    base_manage_hostname: false
  roles:
    - role: base
"""


def _free_port() -> int:
    """A free port below 32768: apt-cacher-ng 3.7 cannot bind a higher one ("Error resolving
    address for binding"), and the kernel's ephemeral ports start at 32768."""
    for port in random.sample(range(20000, 32768), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port between 20000 and 32767")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Cache:
    """One apt-cacher-ng process with its own port, cache and log directories."""

    def __init__(self, root: Path) -> None:
        self.port = _free_port()
        self.cache = root / "cache"
        self.logs = root / "logs"
        self.cache.mkdir()
        self.logs.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Settings on the command line override /etc/apt-cacher-ng (where bootstrap put the
        # Debian mirror this machine reaches); ForeGround keeps it our child.
        self.proc = subprocess.Popen(
            [ACNG, "-c", "/etc/apt-cacher-ng", "ForeGround=1", f"Port={self.port}",
             "BindAddress=0.0.0.0", f"CacheDir={self.cache}", f"LogDir={self.logs}",
             f"SocketPath={self.cache}/socket", f"PidFile={self.cache}/pid"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not _answers(self.port):
            assert self.proc.poll() is None, "apt-cacher-ng exited at start"
            assert time.monotonic() < deadline, "apt-cacher-ng did not open its port"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        assert not _answers(self.port)

    def log(self) -> list[str]:
        path = self.logs / "apt-cacher.log"
        return path.read_text().splitlines() if path.exists() else []


def _package_records(lines: list[str], kind: str) -> list[str]:
    """apt-cacher-ng's transfer log: time|I (from upstream) or O (to a client)|size|client|path."""
    return [line for line in lines if line.split("|")[1:2] == [kind] and line.endswith(".deb")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cache]:
    if not Path(ACNG).exists():
        pytest.fail("apt-cacher-ng is not installed: run scripts/bootstrap packages")
    c = Cache(tmp_path_factory.mktemp("acng"))
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def hook(tmp_path_factory: pytest.TempPathFactory, cache: Cache) -> Path:
    """The lab's hook, unchanged, with this test's port in its port file."""
    d = tmp_path_factory.mktemp("hook")
    for f in HOOK.iterdir():
        shutil.copy2(f, d / f.name)
    (d / "apt-cache-port").write_text(f"{cache.port}\n")
    # pytest makes its directories 0700; apt runs the hook as _apt, which must read them.
    d.chmod(0o755)
    (d / "apt-cache-port").chmod(0o644)
    return d


def _converge(podman: str, hook: Path, name: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """A fresh node from the node image, converged with the base role, then removed."""
    conf = "00gpufleet-lab-apt-cache"
    subprocess.run(
        [podman, "run", "-d", "--name", name, "--privileged", "--systemd=always", "--no-hosts",
         "--volume", f"{hook}:/usr/local/lib/gpufleet-lab:ro",
         "--volume", f"{hook / conf}:/etc/apt/apt.conf.d/{conf}:ro",
         NODE_IMAGE, "/sbin/init"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        (tmp / "converge.yml").write_text(CONVERGE)
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
               "ANSIBLE_ROLES_PATH": str(REPO / "roles")}  # fmt: skip
        return subprocess.run(
            [str(REPO / ".venv/bin/ansible-playbook"), "-i", f"{name},",
             "-c", "containers.podman.podman", "-e", "ansible_python_interpreter=/usr/bin/python3",
             "-e", "node_address=198.18.1.10",
             str(tmp / "converge.yml")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
    finally:
        pm.podman("rm", "-f", "-t", "0", name)


def test_second_converge_downloads_nothing_and_a_stopped_cache_is_no_failure(
    podman: str, cache: Cache, hook: Path, tmp_path: Path
) -> None:
    first = _converge(podman, hook, "gpufleet-test-aptcache-1", tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    after_first = cache.log()
    served = _package_records(after_first, "O")
    assert any("/chrony_" in line for line in served), "the first node did not use the cache"

    second = _converge(podman, hook, "gpufleet-test-aptcache-2", tmp_path)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-2000:]
    new = cache.log()[len(after_first) :]
    assert any("/chrony_" in line for line in _package_records(new, "O")), new
    assert _package_records(new, "I") == [], "the second converge downloaded from the mirror"

    cache.stop()
    third = _converge(podman, hook, "gpufleet-test-aptcache-3", tmp_path)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-2000:]
    task = third.stdout.split("TASK [apt_packages : Install the missing packages]", 1)[-1]
    result = task.split("\n", 1)[-1].lstrip()
    assert result.startswith("changed:"), "chrony was not installed from the mirror"
