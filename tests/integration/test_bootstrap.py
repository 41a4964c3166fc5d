"""scripts/bootstrap refuses a bad environment with a clear message and changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "scripts" / "bootstrap"


def _path_without(tmp: Path, *hidden: str) -> str:
    """A PATH holding every system tool except the named ones (/bin is /usr/bin here)."""
    bindir = tmp / "bin"
    bindir.mkdir()
    for sysdir in (Path("/usr/sbin"), Path("/usr/bin"), Path("/usr/local/bin")):
        for tool in sysdir.iterdir():
            if tool.name not in hidden and not (bindir / tool.name).exists():
                (bindir / tool.name).symlink_to(tool)
    return str(bindir)


def _run(*args: str, env: dict[str, str], user: int | None = None) -> subprocess.CompletedProcess:
    cmd = ["bash", str(BOOTSTRAP), *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_no_podman(tmp_path):
    env = {"PATH": _path_without(tmp_path, "podman"), "HOME": str(tmp_path)}
    result = _run("podman", env=env)
    assert result.returncode == 1
    assert "podman not found" in result.stderr and "scripts/bootstrap packages" in result.stderr


def test_no_go_and_no_pulumi(tmp_path):
    path = _path_without(tmp_path, "go", "pulumi")
    env = {"PATH": path, "HOME": str(tmp_path), "GPUFLEET_CACHE": str(tmp_path / "cache")}
    result = _run("pulumi", env=env)
    assert result.returncode == 1
    assert "no Pulumi CLI v3." in result.stderr and "no Go toolchain" in result.stderr
    assert "scripts/bootstrap go" in result.stderr
    assert "https://www.pulumi.com/docs/install/" in result.stderr
    assert not (tmp_path / "cache" / "pulumi").exists(), "nothing may be written"


def test_no_disk_space(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tiny tmpfs and needs root, as make test does")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        path = _path_without(tmp_path, "pulumi")
        env = {"PATH": f"{path}:{Path(shutil.which('go') or '/usr/local/go/bin/go').parent}",
               "HOME": str(tmp_path), "GPUFLEET_CACHE": str(small)}  # fmt: skip
        result = _run("pulumi", env=env)
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert result.returncode == 1
    assert "MB free on" in result.stderr and "GPUFLEET_CACHE" in result.stderr


def test_not_root():
    # pytest's tmp_path is private to root; nobody needs a home it can write.
    home = Path(tempfile.mkdtemp(prefix="gpufleet-nobody-"))
    shutil.chown(home, user="nobody")
    try:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
        result = _run("image", env=env, user=65534)
    finally:
        shutil.rmtree(home)
    assert result.returncode == 1
    assert "needs root" in result.stderr and "nothing was changed" in result.stderr


def test_unknown_step():
    result = _run("frobnicate", env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert result.returncode == 1
    assert "unknown step 'frobnicate'" in result.stderr


def _pinned(name: str) -> str:
    for line in BOOTSTRAP.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{name} not found in scripts/bootstrap")


@pytest.mark.system
def test_go_step_on_stock_debian_12_gets_the_pinned_toolchain(podman):
    """Debian 12 ships Go 1.19, too old to build the Pulumi CLI. In a stock Debian 12
    container (the node image: no Go at all), `scripts/bootstrap go` installs Debian's Go
    from bookworm-backports and gets the pinned toolchain from the Go module proxy."""
    toolchain = _pinned("GO_TOOLCHAIN")
    hook = REPO / "src/gpufleet/lab/aptcache"
    conf = "00gpufleet-lab-apt-cache"
    script = (
        "set -e; ! command -v go; bash /repo/scripts/bootstrap go; "
        f"GOTOOLCHAIN={toolchain} /usr/lib/go-1.23/bin/go version"
    )
    # The container trusts what this machine trusts and uses its proxy settings, as a Debian
    # 12 machine on this network would (a TLS-inspecting egress proxy signs with its own CA).
    bundle = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
    network: list[str] = []
    if bundle.is_file():
        network += ["--volume", f"{bundle}:/run/gpufleet-host-ca.crt:ro",
                    "--env", "SSL_CERT_FILE=/run/gpufleet-host-ca.crt"]  # fmt: skip
    for name in ("GOPROXY", "GOSUMDB", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        if name in os.environ:
            network += ["--env", f"{name}={os.environ[name]}"]
    result = subprocess.run(
        [podman, "run", "--rm", "--volume", f"{REPO}:/repo:ro",
         "--volume", f"{hook}:/usr/local/lib/gpufleet-lab:ro",
         "--volume", f"{hook / conf}:/etc/apt/apt.conf.d/{conf}:ro", *network,
         "localhost/gpufleet-node:bookworm", "bash", "-c", script],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert f"go: {toolchain} (GOTOOLCHAIN through /usr/lib/go-1.23/bin/go)" in result.stdout
    assert f"go version {toolchain} linux/" in result.stdout
