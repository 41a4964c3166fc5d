"""tests/molecule/gpufleet_testinfra.py: failure dumps in molecule's testinfra runs."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = ["pytester"]

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "molecule"

# A constructed test module: a fake testinfra host that echoes the commands it is asked to run.
MODULE = """
import types

import pytest

ON_FAILURE = ["apt-mark showhold", "journalctl -u nvidia-dcgm"]


class FakeHost:
    def run(self, command):
        return types.SimpleNamespace(stdout=f"ran[{command}]", stderr="")


@pytest.fixture
def host():
    return FakeHost()


def test_fails_with_host(host):
    assert False


def test_passes_with_host(host):
    pass


def test_fails_without_host():
    assert False
"""


def _run(pytester, module: str):
    pytester.syspathinsert(PLUGIN_DIR)
    pytester.makepyfile(test_constructed=module)
    return pytester.runpytest("-p", "gpufleet_testinfra")


def test_failed_test_with_host_shows_every_command_once(pytester):
    result = _run(pytester, MODULE)
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    for command in ("apt-mark showhold", "journalctl -u nvidia-dcgm"):
        assert out.count(f"on failure: {command}") == 1
        assert out.count(f"ran[{command}]") == 1


def test_module_without_commands_adds_nothing(pytester):
    result = _run(pytester, MODULE.replace("ON_FAILURE = ", "UNUSED = "))
    result.assert_outcomes(passed=1, failed=2)
    assert "on failure:" not in result.stdout.str()
