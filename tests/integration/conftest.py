"""Fixtures shared by the system tests: the toolchain that scripts/bootstrap installs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def pulumi_bin_dir() -> Path:
    """Where scripts/bootstrap puts the pinned Pulumi CLI (same rule as the Makefile)."""
    text = (REPO / "scripts" / "bootstrap").read_text()
    version = re.search(r"^PULUMI_VERSION=(\S+)$", text, re.M)
    assert version, "scripts/bootstrap lost its PULUMI_VERSION line"
    cache = Path(os.environ.get("GPUFLEET_CACHE", Path.home() / ".cache" / "gpufleet"))
    return cache / "pulumi" / version.group(1) / "bin"


@pytest.fixture(scope="session")
def pulumi_env() -> dict[str, str]:
    """Environment that runs the pinned CLI offline on a file backend."""
    bin_dir = pulumi_bin_dir()
    if not (bin_dir / "pulumi").exists():
        pytest.fail(f"no Pulumi CLI in {bin_dir}: run scripts/bootstrap pulumi")
    venv_bin = REPO / ".venv" / "bin"
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bin_dir), str(venv_bin), env.get("PATH", "")])
    env["PULUMI_SKIP_UPDATE_CHECK"] = "true"
    env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
    env["PULUMI_CONFIG_PASSPHRASE"] = "gpufleet-smoke-passphrase"
    env.pop("PULUMI_ACCESS_TOKEN", None)
    return env


@pytest.fixture(scope="session")
def podman() -> str:
    path = shutil.which("podman")
    if path is None:
        pytest.fail("podman not found: run scripts/bootstrap packages")
    return path


def run_pulumi(env: dict[str, str], cwd: Path, *args: str, timeout: float = 400) -> str:
    """Run the pinned CLI non-interactively; fail the test with its output if it fails."""
    proc = subprocess.run(
        ["pulumi", *args, "--non-interactive"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"pulumi {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def json_documents(text: str) -> list[dict]:
    """`pulumi up --json` prints several JSON documents one after the other."""
    decoder, docs, pos = json.JSONDecoder(), [], 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)
    return docs
