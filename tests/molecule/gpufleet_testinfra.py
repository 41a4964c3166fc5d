"""pytest plugin for molecule's testinfra verifier: on a failed test, show what says why.

A test module lists shell commands in ON_FAILURE (apt policy, holds, `journalctl -u UNIT`, ...).
When one of its tests that uses testinfra's `host` fixture fails, each command runs on that host
and its output is appended to the failure report, so a CI log explains the failure without a
second run. A scenario loads it with `-p gpufleet_testinfra` and this folder on PYTHONPATH (see
roles/nvidia_driver/molecule/default/molecule.yml).
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    commands = getattr(getattr(item, "module", None), "ON_FAILURE", ())
    if report.when != "call" or not report.failed or "host" not in getattr(item, "funcargs", {}):
        return
    host = item.funcargs["host"]
    for command in commands:
        result = host.run(command)
        report.sections.append((f"on failure: {command}", result.stdout + result.stderr))
