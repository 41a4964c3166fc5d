"""gpufleet.bulk: the collector is paused only inside the outermost call and always comes back."""

from __future__ import annotations

import gc

import pytest

from gpufleet.bulk import bulk


@bulk
def _state() -> bool:
    return gc.isenabled()


@bulk
def _nested() -> tuple[bool, bool]:
    return _state(), gc.isenabled()


@bulk
def _fails() -> None:
    raise RuntimeError("boom")


def test_paused_inside_and_back_after() -> None:
    assert gc.isenabled()
    assert _state() is False
    assert _nested() == (False, False)
    assert gc.isenabled()


def test_back_on_after_an_exception() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        _fails()
    assert gc.isenabled()


def test_a_caller_that_turned_it_off_keeps_it_off() -> None:
    gc.disable()
    try:
        assert _state() is False
        assert not gc.isenabled()
    finally:
        gc.enable()
