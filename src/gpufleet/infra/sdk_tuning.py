"""Two costs of the Pulumi Python SDK that grow with the stack, removed for this program.

Measured with cProfile on `pulumi preview` of 1,024 servers (4,101 resources,
checkpoints skipped; docs/pulumi.md "Where the time goes"), 81 s of program CPU:

1. Debug messages: the SDK sends about five per resource to the engine, each
   over a blocking gRPC call (19,494 calls, 16.7 s). The engine shows them only
   with `pulumi --debug` or verbose logging. `quiet_sdk_debug` keeps them in
   the process unless GPUFLEET_PULUMI_SDK_DEBUG=1 (set it with `--debug` when
   you need the SDK's own chatter); our own messages use info/warn and are
   unaffected.
2. Waiting for outstanding outputs: after the program, `wait_for_rpcs` waits on
   every pending output with `asyncio.wait(..., FIRST_COMPLETED)` and puts the
   others back, so each output that resolves costs one callback on every
   output still pending: quadratic (1,053,838 callbacks, 16.3 s, at 1,024
   servers). `linear_output_drain` makes that wait return when all the
   outputs handed to it are done: one callback each. The SDK's loop then awaits
   each finished task as before (exceptions surface the same way, only after
   the others have finished) and picks up outputs created meanwhile.

Both patch module attributes the SDK looks up at call time (`pulumi.log.debug`,
the `asyncio` name inside `pulumi.runtime.stack`); `apply()` checks they are
still there, so an SDK upgrade that moves them fails loudly
(tests/unit/test_infra_sdk_tuning.py) instead of silently losing the speed.
"""

from __future__ import annotations

import asyncio
import os
import types
from collections.abc import Iterable
from typing import Any

import pulumi
import pulumi.log
import pulumi.runtime.stack

_SDK_DEBUG = pulumi.log.debug


def _quiet_debug(
    msg: str,
    resource: Any = None,
    stream_id: int | None = None,
    ephemeral: bool | None = None,
) -> None:
    """pulumi.log.debug without the engine round trip (GPUFLEET_PULUMI_SDK_DEBUG=1 keeps it)."""


async def _wait_all(
    aws: Iterable[Any], *, timeout: float | None = None, return_when: str = asyncio.ALL_COMPLETED
) -> tuple[set[Any], set[Any]]:
    """asyncio.wait that always waits for all: one done-callback per task."""
    return await asyncio.wait(aws, timeout=timeout, return_when=asyncio.ALL_COMPLETED)


def _asyncio_with_linear_wait() -> types.ModuleType:
    shim = types.ModuleType("asyncio_linear_wait", "asyncio, with wait() waiting for all")
    shim.__dict__.update({k: v for k, v in vars(asyncio).items() if not k.startswith("__")})
    shim.wait = _wait_all  # type: ignore[attr-defined]
    return shim


def apply(environ: dict[str, str] | None = None) -> None:
    """Install both changes (idempotent). Raises RuntimeError if the SDK changed shape."""
    env = os.environ if environ is None else environ
    stack = pulumi.runtime.stack
    if not callable(getattr(pulumi.log, "debug", None)) or not hasattr(stack, "wait_for_rpcs"):
        raise RuntimeError("pulumi SDK changed: pulumi.log.debug or wait_for_rpcs is gone")
    if getattr(stack, "asyncio", None) is not asyncio and not _is_shim(stack):
        raise RuntimeError("pulumi SDK changed: pulumi.runtime.stack no longer uses asyncio")
    if env.get("GPUFLEET_PULUMI_SDK_DEBUG") != "1":
        pulumi.log.debug = _quiet_debug
    if not _is_shim(stack):
        stack.asyncio = _asyncio_with_linear_wait()  # type: ignore[attr-defined]


def _is_shim(stack: Any) -> bool:
    return getattr(getattr(stack, "asyncio", None), "wait", None) is _wait_all


def restore() -> None:
    """Undo apply() (tests)."""
    pulumi.log.debug = _SDK_DEBUG
    pulumi.runtime.stack.asyncio = asyncio  # type: ignore[attr-defined]
