"""Dump the apt and systemd state when a verifier test fails, so CI logs say why."""

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "host" in item.funcargs:
        host = item.funcargs["host"]
        out = host.run(
            "apt-cache policy nvidia-driver; apt-mark showhold; "
            "journalctl -u nvidia-persistenced --no-pager -n 20"
        ).stdout
        report.sections.append(("apt policy, holds, journal", out))
