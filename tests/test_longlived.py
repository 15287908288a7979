"""The collector pause that loading, fingerprinting and renaming build under (batchflow.longlived)."""

from __future__ import annotations

import gc

from batchflow.longlived import collector_paused


def test_the_collector_is_paused_inside_and_resumed_after() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            pass
        assert not gc.isenabled(), "an inner block leaves the collector as the outer one set it"
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
