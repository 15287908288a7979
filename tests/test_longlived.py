"""The collector pause that loading and renaming build under (batchflow.longlived)."""

from __future__ import annotations

import gc

from batchflow.longlived import collector_paused


def test_the_collector_is_paused_inside_and_what_was_built_is_frozen_after() -> None:
    assert gc.isenabled()
    frozen_before = gc.get_freeze_count()
    try:
        with collector_paused():
            assert not gc.isenabled()
            with collector_paused():
                built = [[index] for index in range(1000)]
            assert not gc.isenabled(), "an inner block leaves the collector as the outer one set it"
            assert gc.get_freeze_count() == frozen_before, "only the outermost block freezes"
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen_before + len(built), "what the block made is left out of collections"
    finally:
        gc.unfreeze()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
