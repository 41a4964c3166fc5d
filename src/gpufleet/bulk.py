"""`bulk`: run a function that builds a large tree of objects with the cyclic GC paused.

Reading a 4,096-node site allocates about a million small dicts, lists, tuples
and dataclasses in a few hundred milliseconds. Each allocation burst past the
collector's threshold makes it walk every tracked object, which cost a quarter
of `load_cluster`'s time and more of the inventory's (bench/bench_spec.py).
These builds make no reference cycles that matter: reference counting frees
everything; whatever cycles exist are collected once the collector is back on.
Nested use is fine: only the outermost call turns the collector back on.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def bulk(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return run
