"""The task journal: replay, torn lines, compaction, and a cost that does not grow with the run."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path

import pytest

from batchflow.state import store as store_module
from batchflow.state.model import RunState, TaskRecord, new_state, set_step_status, state_from_json
from batchflow.state.store import StateStore


def make_state(tasks: int) -> RunState:
    state = new_state(run="run-j", workflow="w", workflow_file="w.yaml", fingerprint="f", steps=["tasks"])
    for index in range(tasks):
        state.tasks[f"task-{index}"] = TaskRecord(f"task-{index}")
    return state


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    store = StateStore(tmp_path / "run-j")
    store.save(make_state(4))
    return store


def journal_lines(store: StateStore) -> list[dict]:
    return [json.loads(line) for line in store.journal_path.read_text().splitlines()]


def test_recorded_transitions_are_replayed_on_load(store: StateStore) -> None:
    running = TaskRecord("task-1", state="running", node_id="node-1", start_time="2026-01-01T00:00:00Z")
    assert store.record_tasks([running]) == 1
    done = TaskRecord("task-1", state="completed", exit_code=0, result="success", node_id="node-1")
    failed = TaskRecord(
        "task-2",
        state="completed",
        exit_code=3,
        result="failure",
        failure={"category": "usererror", "message": "exit code 3"},
    )
    assert store.record_tasks([done, failed]) == 2

    fresh = StateStore(store.directory)
    loaded = fresh.load()
    assert fresh.warnings == []
    assert loaded.tasks["task-1"] == done, "the last record of a task wins"
    assert loaded.tasks["task-2"] == failed
    assert loaded.tasks["task-0"] == TaskRecord("task-0")
    assert loaded == store.state
    # Nothing of this touched the snapshot.
    assert state_from_json(store.state_path.read_text()).tasks["task-1"] == TaskRecord("task-1")


def test_records_that_change_nothing_are_not_written(store: StateStore) -> None:
    assert store.record_tasks([TaskRecord("task-0"), TaskRecord("task-1")]) == 0
    assert not store.journal_path.exists()
    running = TaskRecord("task-0", state="running")
    assert store.record_tasks([running, TaskRecord("task-1")]) == 1
    assert store.record_tasks([TaskRecord("task-0", state="running")]) == 0
    assert len(journal_lines(store)) == 1


def test_within_one_batch_the_last_record_of_a_task_wins(store: StateStore) -> None:
    store.record_tasks(
        [TaskRecord("task-0", state="running"), TaskRecord("task-0", state="completed", exit_code=0, result="success")]
    )
    assert StateStore(store.directory).load().tasks["task-0"].state == "completed"


def test_a_recorded_task_changes_only_through_the_journal(store: StateStore) -> None:
    failure = {"category": "usererror", "code": "FailureExitCode", "message": "exit 1"}
    record = TaskRecord("task-0", state="completed", exit_code=1, result="failure", failure=failure)
    store.record_tasks([record])
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.state = "running"  # type: ignore[misc]
    failure["message"] = "changed by the caller afterwards"
    store.compact()
    assert StateStore(store.directory).load().tasks["task-0"].failure["message"] == "exit 1"


def test_a_truncated_last_line_is_ignored(store: StateStore) -> None:
    store.record_tasks([TaskRecord("task-0", state="running")])
    store.record_tasks([TaskRecord("task-1", state="running")])
    whole = store.journal_path.read_bytes()
    # What a kill -9 in the middle of an append leaves: a line without its end.
    with open(store.journal_path, "ab") as handle:
        handle.write(b'{"n":3,"id":"task-2","state":"comp')
    loaded = StateStore(store.directory).load()
    assert loaded.tasks["task-0"].state == "running"
    assert loaded.tasks["task-1"].state == "running"
    assert loaded.tasks["task-2"].state == "active"
    assert store.journal_path.read_bytes().startswith(whole), "loading writes nothing"


def test_a_complete_json_line_without_its_newline_counts_as_torn(store: StateStore) -> None:
    store.record_tasks([TaskRecord("task-0", state="running")])
    with open(store.journal_path, "ab") as handle:
        handle.write(json.dumps({"n": 2, "id": "task-1", "state": "running"}).encode())
    assert StateStore(store.directory).load().tasks["task-1"].state == "active"


def test_appending_after_a_torn_line_cuts_it_off_first(store: StateStore) -> None:
    store.record_tasks([TaskRecord("task-0", state="running")])
    with open(store.journal_path, "ab") as handle:
        handle.write(b'{"n":2,"id":"task-1","sta')
    resumed = StateStore(store.directory)
    resumed.load()
    resumed.record_tasks([TaskRecord("task-3", state="running")])
    again = StateStore(store.directory)
    loaded = again.load()
    assert again.warnings == []
    assert loaded.tasks["task-0"].state == "running"
    assert loaded.tasks["task-3"].state == "running"
    assert [line["id"] for line in journal_lines(store)] == ["task-0", "task-3"]


def test_a_corrupt_line_in_the_middle_is_skipped_with_a_warning(store: StateStore) -> None:
    store.record_tasks([TaskRecord("task-0", state="running")])
    with open(store.journal_path, "ab") as handle:
        handle.write(b"garbage\n")
    store.record_tasks([TaskRecord("task-1", state="running")])
    fresh = StateStore(store.directory)
    loaded = fresh.load()
    assert loaded.tasks["task-0"].state == loaded.tasks["task-1"].state == "running"
    assert len(fresh.warnings) == 1 and "line 2" in fresh.warnings[0]


def test_compaction_folds_the_journal_into_the_snapshot(store: StateStore) -> None:
    store.record_tasks([TaskRecord("task-0", state="running")])
    store.record_tasks([TaskRecord("task-0", state="completed", exit_code=0, result="success")])
    serial = store.state.serial
    assert store.journal_length == 2
    reader = StateStore(store.directory)
    reader.load()
    assert reader.journal_length == 2, "a new process sees what is left to fold"
    assert store.compact() is True
    assert store.journal_length == 0
    assert store.journal_path.stat().st_size == 0
    snapshot = state_from_json(store.state_path.read_text())
    assert snapshot.tasks["task-0"].state == "completed"
    assert snapshot.serial == serial + 1
    assert snapshot.journal_seq == 2
    assert StateStore(store.directory).load() == store.state
    assert store.compact() is False, "nothing new to fold"
    # Numbering goes on after a compaction.
    store.record_tasks([TaskRecord("task-1", state="running")])
    assert journal_lines(store)[0]["n"] == 3


def test_a_crash_between_snapshot_and_emptying_the_journal_replays_nothing_twice(store: StateStore) -> None:
    store.record_tasks([TaskRecord("task-0", state="running")])
    store.record_tasks([TaskRecord("task-0", state="completed", exit_code=0, result="success")])
    stale_journal = store.journal_path.read_bytes()
    store.compact()
    # As if the process died after the rename of state.json, before the truncation.
    store.journal_path.write_bytes(stale_journal.split(b"\n")[0] + b"\n")
    loaded = StateStore(store.directory).load()
    assert loaded.tasks["task-0"].state == "completed", "an already folded record must not be replayed"


def test_save_refuses_a_different_object_that_lacks_recorded_transitions(store: StateStore) -> None:
    from batchflow.state.store import StateConflict

    stale = StateStore(store.directory).load()
    store.record_tasks([TaskRecord("task-0", state="running")])
    with pytest.raises(StateConflict, match="recorded"):
        store.save(stale)


def test_recording_needs_a_state(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="load"):
        StateStore(tmp_path / "none").record_tasks([TaskRecord("t")])


def test_a_malformed_record_writes_nothing(store: StateStore) -> None:
    with pytest.raises(ValueError, match="state must be one of"):
        store.record_tasks([TaskRecord("task-0", state="running"), TaskRecord("task-1", state="exploded")])
    assert not store.journal_path.exists()
    assert store.state.tasks["task-0"].state == "active"


@pytest.mark.parametrize("tasks", [10, 20_000])
def test_recording_a_transition_writes_the_same_bytes_whatever_the_run_size(tmp_path: Path, tasks: int) -> None:
    """The requirement itself: one transition appends one line and leaves the snapshot alone."""
    store = StateStore(tmp_path / "run")
    store.save(make_state(tasks))
    snapshot = store.state_path.stat()
    store.record_tasks([TaskRecord("task-7", state="running", node_id="node-1")])
    assert store.journal_path.stat().st_size == len(
        b'{"n":1,"id":"task-7","state":"running","exit_code":null,"result":null,"retry_count":0,'
        b'"node_id":"node-1","start_time":null,"end_time":null,"failure":null}\n'
    )
    after = store.state_path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (snapshot.st_ino, snapshot.st_mtime_ns, snapshot.st_size)


def test_a_snapshot_after_a_poll_encodes_only_the_records_that_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner saves the state at every step boundary; a poll changes a few of 20,000 tasks."""
    encoded: list[str] = []
    real_task_json = store_module.task_json

    def counting_task_json(record: TaskRecord) -> str:
        encoded.append(record.task_id)
        return real_task_json(record)

    monkeypatch.setattr(store_module, "task_json", counting_task_json)
    store = StateStore(tmp_path / "run")
    state = make_state(20_000)
    store.save(state)
    assert len(encoded) == 20_000
    for poll in range(3):
        encoded.clear()
        done = [
            TaskRecord(f"task-{poll * 10 + i}", state="completed", exit_code=0, result="success") for i in range(10)
        ]
        store.record_tasks(done)
        set_step_status(state, "tasks", ("running", "done")[poll % 2])
        assert store.save(state) is True
        assert sorted(encoded) == sorted(r.task_id for r in done), "each changed record encoded once, no other"
    on_disk = StateStore(store.directory).load()
    assert on_disk == state
    assert on_disk.tasks["task-29"].state == "completed"
    assert state_from_json(store.state_path.read_text()) == state


RECORDER = """
    import sys
    from pathlib import Path
    from batchflow.state.model import TaskRecord
    from batchflow.state.store import StateStore

    store = StateStore(Path(sys.argv[1]))
    state = store.load()
    count = 0
    while True:
        for index in range(len(state.tasks)):
            count += 1
            store.record_tasks([TaskRecord(f"task-{index}", state="running", retry_count=count,
                                           failure={"message": "m" * (count % 300)})])
            if count == 20:
                print("recording", flush=True)
"""


def test_journal_survives_sigkill_of_a_recorder(tmp_path: Path, spawn) -> None:
    directory = tmp_path / "run"
    StateStore(directory).save(make_state(50))
    for round_number in range(4):
        recorder = spawn(RECORDER, str(directory), wait_for="recording")
        time.sleep(0.01 * round_number)
        os.kill(recorder.pid, signal.SIGKILL)
        recorder.wait(timeout=10)
        store = StateStore(directory)
        state = store.load()
        assert store.warnings == []
        assert any(record.state == "running" for record in state.tasks.values())
    # The survivors' records fold into a snapshot that loads cleanly.
    store = StateStore(directory)
    state = store.load()
    store.compact()
    assert StateStore(directory).load() == state
