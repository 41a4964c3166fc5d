"""Redfish BMCs for the provider and stack tests (and bench/bench_pulumi.py).

- `SushyEmulator`: sushy-tools' `sushy-emulator --fake` on 127.0.0.1 and a free
  port, serving N systems defined in a config file (SUSHY_EMULATOR_FAKE_SYSTEMS),
  its state in a private directory (the fake driver otherwise shares
  /tmp/sushy-emulator/fakedriver.sqlite with every other emulator on the host).
  With `bios=True` it runs through redfish_bios_emulator.py, which adds a Bios
  resource to the fake driver (the stock fake driver has none).
- `FailingBmc`: a tiny HTTP server on 127.0.0.1 that answers every request with
  HTTP 500 and counts them.
- `free_port()`, `closed_port()`: a port nothing listens on models a BMC that is down.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
_NAMESPACE = uuid.UUID("0b6c8f2e-5d0a-4a53-9a43-0f3a3f7b9d21")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


closed_port = free_port  # bound then released: nothing listens there


def system_uuid(name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, name))


class SushyEmulator:
    """One sushy-emulator process serving several fake systems."""

    def __init__(
        self,
        workdir: Path,
        names: list[str],
        *,
        power_state: str = "Off",
        bios: bool = False,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.names = list(names)
        self.power_state = power_state
        self.bios = bios
        self.credentials = credentials  # HTTP basic auth as on a real BMC (None: open)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def system_url(self, name: str) -> str:
        return f"{self.base_url}/redfish/v1/Systems/{system_uuid(name)}"

    def _config(self) -> Path:
        systems = [
            {
                "uuid": system_uuid(n),
                "name": n,
                "power_state": self.power_state,
                "external_notifier": False,
                "nics": [{"mac": f"02:00:00:00:{i // 256:02x}:{i % 256:02x}", "ip": "198.18.0.2"}],
            }
            for i, n in enumerate(self.names)
        ]
        state = self.workdir / "state"
        state.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "emulator.conf"
        text = (
            f"SUSHY_EMULATOR_FAKE_SYSTEMS = {systems!r}\n"
            f"SUSHY_EMULATOR_STATE_DIR = {str(state)!r}\n"
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n"
        )
        if self.credentials is not None:
            self.set_password(*self.credentials)
            text += f"SUSHY_EMULATOR_AUTH_FILE = {str(self.auth_file)!r}\n"
        cfg.write_text(text)
        return cfg

    @property
    def auth_file(self) -> Path:
        return self.workdir / "htpasswd"

    def set_password(self, user: str, password: str) -> None:
        """(Re)write the BMC's only account, bcrypt-hashed; read by the emulator per request."""
        import bcrypt

        self.workdir.mkdir(parents=True, exist_ok=True)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        self.auth_file.write_text(f"{user}:{hashed}\n")
        self.credentials = (user, password)

    def start(self, timeout: float = 30.0) -> SushyEmulator:
        cfg = self._config()
        log = open(self.workdir / "emulator.log", "wb")  # noqa: SIM115 - lives with the process
        cmd = [sys.executable, str(HERE / "redfish_emulator.py")]
        cmd += ["--fake", "--config", str(cfg), "-i", "127.0.0.1", "-p", str(self.port)]
        env = {
            **os.environ,
            "GPUFLEET_EMU_BOOT_STATE": str(self.workdir / "boot-override.json"),
            "GPUFLEET_EMU_BIOS": "1" if self.bios else "0",
        }
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sushy-emulator exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/redfish/v1/", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"sushy-emulator did not answer in {timeout}s: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.workdir / "emulator.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _request(self, path: str, method: str = "GET", body: dict | None = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.credentials is not None:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=10) as rsp:
            return bytes(rsp.read())

    def get(self, path: str) -> dict:
        return dict(json.loads(self._request(path)))

    def system(self, name: str) -> dict:
        return self.get(f"/redfish/v1/Systems/{system_uuid(name)}")

    def set_boot(self, name: str, **boot: str) -> None:
        """PATCH the boot override by hand, as an operator would at the BMC."""
        path = f"/redfish/v1/Systems/{system_uuid(name)}"
        fields = {f"BootSourceOverride{k}": v for k, v in boot.items()}
        self._request(path, "PATCH", {"Boot": fields})

    def reset(self, name: str, kind: str) -> None:
        path = f"/redfish/v1/Systems/{system_uuid(name)}/Actions/ComputerSystem.Reset"
        self._request(path, "POST", {"ResetType": kind})


class _FailingHandler(http.server.BaseHTTPRequestHandler):
    def _fail(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        body = b'{"error": {"message": "constructed failure for tests"}}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = _fail

    def log_message(self, *args: object) -> None:
        pass


class FailingBmc:
    """HTTP 500 for every request (a BMC whose web service is broken)."""

    def __init__(self) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingHandler)
        self.server.hits = 0  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def hits(self) -> int:
        return int(self.server.hits)  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/redfish/v1/Systems/1"

    def __enter__(self) -> FailingBmc:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class FileServer:
    """Serves a directory over HTTP on 127.0.0.1 (installer images for virtual media)."""

    def __init__(self, root: Path) -> None:
        handler = lambda *a, **k: _QuietFiles(*a, directory=str(root), **k)  # noqa: E731
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[SushyEmulator]:
    """A fresh `sushy-emulator --fake` with 4 systems (node1..node4), all Off."""
    emu = SushyEmulator(tmp_path / "emu", [f"node{i}" for i in range(1, 5)]).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def bios_emulator(tmp_path: Path) -> Iterator[SushyEmulator]:
    """The fake driver with a Bios resource added (redfish_bios_emulator.py), 1 system."""
    emu = SushyEmulator(tmp_path / "emu-bios", ["biosnode"], bios=True).start()
    try:
        yield emu
    finally:
        emu.stop()


def site_node_names(count: int) -> list[str]:
    """head1, lb1, lb2, then gpu1.. up to `count` nodes (count >= 4)."""
    return ["head1", "lb1", "lb2"] + [f"gpu{i}" for i in range(1, count - 2)]


def write_site(
    site_dir: Path, emu: SushyEmulator, *, site: str = "emu", password: dict | None = None
) -> Path:
    """A valid cluster.yaml whose BMCs are the emulator's systems (lab-style, /20 networks);
    `password` replaces the lab's BMC password reference ({env: ...} or {secret: ...})."""
    import yaml

    lab = yaml.safe_load((REPO / "inventories" / "lab" / "cluster.yaml").read_text())
    if password is not None:
        lab["defaults"]["bmc"]["password"] = password
    roles = {"head": "head", "lb": "lb", "gpu": "gpu"}
    nodes = []
    for i, name in enumerate(emu.names):
        role = roles[name.rstrip("0123456789")]
        nodes.append(
            {
                "name": name,
                "role": role,
                "bmc": {"url": emu.system_url(name)},
                "boot_mac": f"02:42:c6:13:{i // 256:02x}:{i % 256:02x}",
                "rack": f"r{i // 40:02d}",
                "position": i % 40 + 1,
            }
        )
    spec = {
        "spec_version": 1,
        "site": {**lab["site"], "name": site, "domain": f"{site}.gpufleet.test"},
        "defaults": lab["defaults"],
        "networks": {
            "oob": {"cidr": "198.18.0.0/20", "gateway": "198.18.0.1"},
            "frontend": {
                "cidr": "198.18.16.0/20",
                "gateway": "198.18.16.1",
                "vips": [{"name": "inference", "address": "198.18.16.5"}],
            },
            "fabric": {
                "type": "ethernet",
                "mtu": 1500,
                "rails": ["198.18.32.0/20", "198.18.48.0/20"],
            },
        },
        "versions": lab["versions"],
        "nodes": nodes,
    }
    site_dir.mkdir(parents=True, exist_ok=True)
    path = site_dir / "cluster.yaml"
    path.write_text(
        "# constructed: a site whose BMCs are sushy-emulator systems\n"
        + yaml.safe_dump(spec, sort_keys=False)
    )
    return path
