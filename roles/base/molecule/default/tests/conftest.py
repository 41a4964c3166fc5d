"""Dump the unit's journal when a verifier test fails, so CI logs say why."""

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "host" in item.funcargs:
        journal = item.funcargs["host"].run("journalctl -u chrony --no-pager -n 40").stdout
        report.sections.append(("journalctl -u chrony", journal))
