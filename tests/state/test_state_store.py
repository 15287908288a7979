"""StateStore snapshots: round trip, serial, backup, recovery from corrupt files, SIGKILL mid-write."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from batchflow.state.model import (
    FORMAT_VERSION,
    RunState,
    StateFormatError,
    StateVersionError,
    TaskRecord,
    new_state,
    set_step_status,
    state_from_json,
)
from batchflow.state.store import StateConflict, StateStore


def make_state(tasks: int = 3) -> RunState:
    state = new_state(
        run="run-a",
        workflow="topwords",
        workflow_file="topwords.yaml",
        fingerprint="sha256:aa",
        steps=["containers", "uploads"],
    )
    for index in range(tasks):
        state.tasks[f"task-{index}"] = TaskRecord(f"task-{index}")
    return state


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / ".batchflow" / "run-a"


def test_load_without_state_returns_none(run_dir: Path) -> None:
    store = StateStore(run_dir)
    assert store.load() is None
    assert store.warnings == []
    assert not run_dir.exists(), "loading must not create anything"


def test_save_then_load_round_trips(run_dir: Path) -> None:
    state = make_state()
    set_step_status(state, "containers", "done", summary={"created": 2})
    state.resources["pool"] = {"id": "p", "created": True}
    assert StateStore(run_dir).save(state) is True
    loaded = StateStore(run_dir).load()
    assert loaded == state
    assert loaded.serial == 1


def test_serial_goes_up_only_when_content_changes(run_dir: Path) -> None:
    store = StateStore(run_dir)
    state = make_state()
    store.save(state)
    inode = store.state_path.stat().st_ino
    updated = state.updated

    assert store.save(state) is False
    assert state.serial == 1 and state.updated == updated
    assert store.state_path.stat().st_ino == inode, "an unchanged state is not rewritten"

    # A fresh store (a new process) compares with the file, not with memory.
    again = StateStore(run_dir)
    reloaded = again.load()
    assert again.save(reloaded) is False and reloaded.serial == 1

    set_step_status(reloaded, "uploads", "running")
    assert again.save(reloaded) is True
    assert reloaded.serial == 2
    assert json.loads(again.state_path.read_text())["serial"] == 2


def test_previous_snapshot_is_kept_as_backup(run_dir: Path) -> None:
    store = StateStore(run_dir)
    state = make_state()
    store.save(state)
    assert not store.backup_path.exists(), "the first snapshot has no predecessor"
    set_step_status(state, "containers", "done")
    store.save(state)
    backup = state_from_json(store.backup_path.read_text())
    assert backup.serial == 1 and backup.steps["containers"].status == "pending"
    set_step_status(state, "uploads", "done")
    store.save(state)
    assert state_from_json(store.backup_path.read_text()).serial == 2
    assert state_from_json(store.state_path.read_text()).serial == 3


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: text[: len(text) // 2], id="truncated"),
        pytest.param(lambda text: "", id="empty"),
        pytest.param(lambda text: "\x00" * len(text), id="zeroed"),
        pytest.param(lambda text: text.replace('"lineage"', '"lineage_"'), id="wrong-shape"),
    ],
)
def test_corrupt_state_falls_back_to_backup_with_warning(run_dir: Path, damage) -> None:
    store = StateStore(run_dir)
    state = make_state()
    store.save(state)
    set_step_status(state, "containers", "done")
    store.save(state)
    store.state_path.write_text(damage(store.state_path.read_text()))

    recovering = StateStore(run_dir)
    loaded = recovering.load()
    assert loaded is not None and loaded.serial == 1
    assert len(recovering.warnings) == 1
    assert "unreadable" in recovering.warnings[0] and "state.json.backup" in recovering.warnings[0]

    # Saving repairs state.json and leaves the good backup alone.
    assert recovering.save(loaded) is True
    assert state_from_json(recovering.state_path.read_text()) == loaded
    assert state_from_json(recovering.backup_path.read_text()).serial == 1
    clean = StateStore(run_dir)
    clean.load()
    assert clean.warnings == []


def test_missing_state_with_backup_uses_backup(run_dir: Path) -> None:
    store = StateStore(run_dir)
    state = make_state()
    store.save(state)
    set_step_status(state, "containers", "done")
    store.save(state)
    store.state_path.unlink()
    recovering = StateStore(run_dir)
    assert recovering.load().serial == 1
    assert "missing" in recovering.warnings[0]


def test_corrupt_state_and_backup_raise(run_dir: Path) -> None:
    store = StateStore(run_dir)
    state = make_state()
    store.save(state)
    set_step_status(state, "containers", "done")
    store.save(state)
    store.state_path.write_text("{")
    store.backup_path.write_text("nope")
    with pytest.raises(StateFormatError, match="unreadable too"):
        StateStore(run_dir).load()


def test_corrupt_state_without_backup_raises(run_dir: Path) -> None:
    StateStore(run_dir).save(make_state())
    (run_dir / "state.json").write_text("{")
    with pytest.raises(StateFormatError, match="no state.json.backup"):
        StateStore(run_dir).load()


def test_state_from_newer_batchflow_is_refused_not_replaced_by_backup(run_dir: Path) -> None:
    store = StateStore(run_dir)
    state = make_state()
    store.save(state)
    set_step_status(state, "containers", "done")
    store.save(state)
    document = json.loads(store.state_path.read_text())
    document["version"] = FORMAT_VERSION + 1
    store.state_path.write_text(json.dumps(document))
    with pytest.raises(StateVersionError, match="newer batchflow"):
        StateStore(run_dir).load()
    with pytest.raises(StateVersionError):
        StateStore(run_dir).save(make_state())


def test_another_lineage_is_not_overwritten(run_dir: Path) -> None:
    StateStore(run_dir).save(make_state())
    with pytest.raises(StateConflict, match="another run's state"):
        StateStore(run_dir).save(make_state())


def test_an_older_copy_is_not_saved_over_a_newer_state(run_dir: Path) -> None:
    store = StateStore(run_dir)
    state = make_state()
    store.save(state)
    old_copy = StateStore(run_dir).load()
    set_step_status(state, "containers", "done")
    store.save(state)
    set_step_status(old_copy, "uploads", "done")
    with pytest.raises(StateConflict, match="older"):
        StateStore(run_dir).save(old_copy)


def test_a_failed_write_leaves_the_state_and_its_serial_untouched(run_dir: Path) -> None:
    store = StateStore(run_dir)
    state = make_state()
    store.save(state)
    before = store.state_path.read_bytes()
    state.resources["bad"] = float("inf")
    with pytest.raises(ValueError):
        store.save(state)
    assert state.serial == 1
    assert store.state_path.read_bytes() == before
    assert [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_temporary_files_left_by_a_killed_writer_are_removed(run_dir: Path) -> None:
    store = StateStore(run_dir)
    state = make_state()
    store.save(state)
    leftover = run_dir / ".state.json.0123abcd.tmp"
    leftover.write_text("{half")
    writer = StateStore(run_dir)
    loaded = writer.load()
    set_step_status(loaded, "containers", "done")
    writer.save(loaded)
    assert not leftover.exists()


WRITER = """
    import sys
    from pathlib import Path
    from batchflow.state.model import TaskRecord, new_state
    from batchflow.state.store import StateStore

    store = StateStore(Path(sys.argv[1]))
    state = store.load()
    if state is None:
        state = new_state(run="run-a", workflow="w", workflow_file="w.yaml", fingerprint="f")
        # Enough tasks that one snapshot takes a while to write, so kills land mid-write.
        for index in range(5000):
            state.tasks[f"task-{index:05d}"] = TaskRecord(f"task-{index:05d}", failure={"message": "x" * 50})
    counter = state.resources.get("counter", 0)
    while True:
        counter += 1
        state.resources["counter"] = counter
        store.save(state)
        if counter % 3 == 0:
            print("saved", flush=True)
"""


def test_snapshot_survives_sigkill_of_a_writer_in_a_loop(run_dir: Path, spawn) -> None:
    """Kill a writer mid-write (as soon as its temporary file appears) and at other instants."""
    last_counter = 0
    killed_mid_write = 0
    for round_number in range(8):
        writer = spawn(WRITER, str(run_dir), wait_for="saved")
        if round_number % 2 == 0:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if any(entry.name.endswith(".tmp") for entry in os.scandir(run_dir)):
                    break
        else:
            time.sleep(0.002 * round_number * round_number)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=10)
        killed_mid_write += any(path.name.endswith(".tmp") for path in run_dir.iterdir())

        # Whatever instant the kill hit, both files are whole snapshots.
        document = json.loads((run_dir / "state.json").read_text())
        assert len(document["tasks"]) == 5000
        state_from_json((run_dir / "state.json.backup").read_text())
        store = StateStore(run_dir)
        state = store.load()
        assert store.warnings == []
        counter = state.resources["counter"]
        assert counter >= last_counter + 1, "the next round resumed from the last snapshot"
        assert state.serial == counter
        last_counter = counter
    assert killed_mid_write, "no kill landed between creating the temporary file and the rename"
