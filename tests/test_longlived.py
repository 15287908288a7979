"""The collector pause that loading, fingerprinting and renaming build under (batchflow.longlived), and the
command line's freezing of what it loaded."""

from __future__ import annotations

import argparse
import gc
from pathlib import Path

from batchflow.cli.workflow import load
from batchflow.longlived import collector_paused
from tests.support.project import sweep


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


def test_the_command_line_freezes_a_loaded_sweep_without_the_collector_walking_it(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(sweep("    id: t{{ value }}\n    command: echo {{ value }}\n", 2000))
    args = argparse.Namespace(file=path, assignments=[], vars_files=[], output="json")
    collections: list[int] = []

    def started(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()  # no collection due as loading starts
    frozen = gc.get_freeze_count()
    gc.callbacks.append(started)
    try:
        result = load(args)
    finally:
        gc.callbacks.remove(started)
    try:
        assert len(result.workflow.tasks) == 2000
        assert collections == [], "a collection walked the objects loading made"
        assert gc.get_freeze_count() - frozen > 2000, "the loaded tasks are left for the collector to walk"
        assert gc.isenabled()
    finally:
        gc.unfreeze()
