"""gpufleet.infra.sdk_tuning: the SDK still has what it patches; the patches do what they say."""

from __future__ import annotations

import asyncio

import pulumi.log
import pulumi.runtime.stack
import pytest

from gpufleet.infra import sdk_tuning


@pytest.fixture
def tuned():
    sdk_tuning.apply({})
    yield
    sdk_tuning.restore()


def test_the_sdk_still_has_what_is_patched() -> None:
    assert pulumi.runtime.stack.asyncio is asyncio
    assert callable(pulumi.log.debug)
    assert "FIRST_COMPLETED" in _source(pulumi.runtime.stack.wait_for_rpcs)


def _source(fn: object) -> str:
    import inspect

    return inspect.getsource(fn)  # type: ignore[arg-type]


def test_debug_stays_in_the_process_unless_asked(tuned) -> None:
    assert pulumi.log.debug is sdk_tuning._quiet_debug
    sdk_tuning.restore()
    sdk_tuning.apply({"GPUFLEET_PULUMI_SDK_DEBUG": "1"})
    assert pulumi.log.debug is sdk_tuning._SDK_DEBUG


def test_the_wait_returns_all_and_stays_linear(tuned) -> None:
    shim = pulumi.runtime.stack.asyncio
    assert shim is not asyncio and shim.sleep is asyncio.sleep

    async def main() -> tuple[int, int, int]:
        tasks = [asyncio.ensure_future(asyncio.sleep(0.001 * (i % 7))) for i in range(500)]
        done, pending = await shim.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return len(done), len(pending), sum(t.done() for t in tasks)

    assert asyncio.run(main()) == (500, 0, 500)


def test_apply_twice_is_harmless_and_restore_undoes(tuned) -> None:
    sdk_tuning.apply({})
    assert pulumi.runtime.stack.asyncio.wait is sdk_tuning._wait_all
    sdk_tuning.restore()
    assert pulumi.runtime.stack.asyncio is asyncio
    assert pulumi.log.debug is sdk_tuning._SDK_DEBUG
