"""The real Pulumi engine, the pinned CLI and its Python language host, end to end.

preview -> up -> up (no changes) -> config change shows as one update -> destroy,
on a file backend in a temporary directory with a passphrase.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from conftest import REPO, json_documents, pulumi_bin_dir, run_pulumi

PROJECT = Path(__file__).with_name("pulumi_smoke")


def test_pulumi_version_is_pinned(pulumi_env):
    version = re.search(
        r"^PULUMI_VERSION=(\S+)$", (REPO / "scripts/bootstrap").read_text(), re.M
    ).group(1)
    out = subprocess.run(
        [str(pulumi_bin_dir() / "pulumi"), "version"],
        env=pulumi_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == version


def test_preview_up_noop_update_destroy(pulumi_env, tmp_path):
    work = tmp_path / "project"
    shutil.copytree(PROJECT, work)
    backend = tmp_path / "state"
    backend.mkdir()
    env = {**pulumi_env, "PULUMI_BACKEND_URL": f"file://{backend}"}
    marker = tmp_path / "marker.txt"

    run_pulumi(env, work, "stack", "init", "smoke")
    run_pulumi(env, work, "config", "set", "path", str(marker))

    preview = run_pulumi(env, work, "preview", "--json")
    steps = json.loads(preview)["steps"]
    assert [s["op"] for s in steps if s["urn"].endswith("::marker")] == ["create"]
    assert not marker.exists(), "preview must not create anything"

    run_pulumi(env, work, "up", "--yes")
    # The Python program really ran through the language host: the provider wrote the file.
    assert marker.read_text() == "hello from gpufleet"
    outputs = json.loads(run_pulumi(env, work, "stack", "output", "--json"))
    assert outputs["path"] == str(marker)
    assert len(outputs["digest"]) == 64

    events = json_documents(run_pulumi(env, work, "up", "--yes", "--json"))
    summary = next(e["summaryEvent"] for e in events if "summaryEvent" in e)
    assert summary["resourceChanges"] == {"same": 2}
    assert summary["result"] == "succeeded"

    run_pulumi(env, work, "config", "set", "content", "changed")
    changed = json.loads(run_pulumi(env, work, "preview", "--json"))
    assert changed["changeSummary"] == {"same": 1, "update": 1}

    run_pulumi(env, work, "destroy", "--yes")
    assert not marker.exists(), "destroy must run the provider's delete"
