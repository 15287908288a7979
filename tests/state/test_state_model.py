"""RunState and its JSON format: round trip, versions, and what is refused."""

from __future__ import annotations

import dataclasses
import json

import pytest

from batchflow import __version__
from batchflow.state.model import (
    FORMAT_VERSION,
    UPGRADES,
    RunState,
    StateFormatError,
    StateVersionError,
    StepRecord,
    TaskRecord,
    content_key,
    new_state,
    set_step_status,
    state_from_dict,
    state_from_json,
    state_to_dict,
    state_to_json,
)


def full_state() -> RunState:
    state = new_state(
        run="topwords-3f2a",
        workflow="topwords",
        workflow_file="workflows/topwords.yaml",
        fingerprint="sha256:0123abcd",
        steps=["containers", "uploads", "pool"],
    )
    set_step_status(state, "containers", "done", summary={"created": ["input", "output"], "existing": []})
    set_step_status(state, "uploads", "running")
    state.resources = {
        "containers": {"input": "created", "output": "existing"},
        "pool": {"id": "PythonTutorialPool", "created": True},
        "job": {"id": "topwords-3f2a", "created": True},
    }
    state.tasks["task-0"] = TaskRecord(
        "task-0",
        state="completed",
        exit_code=0,
        result="success",
        node_id="node-1",
        start_time="2026-01-01T00:00:00Z",
        end_time="2026-01-01T00:00:05Z",
        transition_time="2026-01-01T00:00:05.123456Z",
    )
    state.tasks["task-1"] = TaskRecord(
        "task-1",
        state="completed",
        exit_code=2,
        result="failure",
        retry_count=1,
        failure={
            "category": "usererror",
            "code": "FailureExitCode",
            "message": "The task exited with exit code 2",
            "details": [],
        },
    )
    state.tasks["tâche-ü"] = TaskRecord("tâche-ü", state="running")
    return state


def test_round_trip_keeps_every_field_and_order() -> None:
    state = full_state()
    text = state_to_json(state)
    back = state_from_json(text)
    assert back == state
    assert list(back.steps) == ["containers", "uploads", "pool"]
    assert list(back.tasks) == ["task-0", "task-1", "tâche-ü"]
    # The hand-laid-out text is still ordinary JSON with the documented fields.
    document = json.loads(text)
    assert document["version"] == FORMAT_VERSION == 3
    assert document["batchflow_version"] == __version__
    assert set(document) >= {
        "version",
        "serial",
        "lineage",
        "run",
        "workflow",
        "workflow_file",
        "fingerprint",
        "created",
        "updated",
        "steps",
        "resources",
        "tasks",
    }
    assert "task_id" not in document["tasks"]["task-0"]


def test_round_trip_of_an_empty_state() -> None:
    state = new_state(run="r", workflow="w", workflow_file="w.yaml", fingerprint="f")
    assert state_from_json(state_to_json(state)) == state
    assert json.loads(state_to_json(state))["tasks"] == {}


def test_each_state_gets_its_own_lineage() -> None:
    first = new_state(run="r", workflow="w", workflow_file="w.yaml", fingerprint="f")
    second = new_state(run="r", workflow="w", workflow_file="w.yaml", fingerprint="f")
    assert first.lineage != second.lineage


def test_set_step_status_stamps_start_and_finish() -> None:
    state = full_state()
    record = set_step_status(state, "pool", "running")
    assert record.started and record.finished is None
    set_step_status(state, "pool", "failed", summary={"error": "start task failed"})
    assert record.finished and record.summary == {"error": "start task failed"}
    set_step_status(state, "pool", "running")
    assert record.finished is None, "a retried step is not finished"
    with pytest.raises(ValueError, match="step status"):
        set_step_status(state, "pool", "finished")


def test_newer_format_version_is_refused_with_advice() -> None:
    document = state_to_dict(full_state())
    document["version"] = FORMAT_VERSION + 1
    with pytest.raises(
        StateVersionError, match=rf"format version {FORMAT_VERSION + 1}.*newer batchflow.*upgrade batchflow"
    ):
        state_from_dict(document)


@pytest.mark.parametrize("version", [0, -1, "1", None, True])
def test_unknown_or_malformed_versions_are_refused(version: object) -> None:
    document = state_to_dict(full_state())
    document["version"] = version
    with pytest.raises(StateFormatError):
        state_from_dict(document)


def test_every_readable_version_has_an_upgrade() -> None:
    assert sorted(UPGRADES) == list(range(1, FORMAT_VERSION + 1))


def test_upgrade_v1_is_applied_when_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def spy(document: dict) -> dict:
        seen.append(document["version"])
        return document

    monkeypatch.setitem(UPGRADES, 1, spy)
    document = state_to_dict(full_state())
    document["version"] = 1
    state_from_dict(document)
    assert seen == [1]


def test_a_version_1_file_reads_and_a_cached_task_round_trips() -> None:
    """Version 2 added ``cached_from``; a version 1 document (without it) still reads."""
    document = state_to_dict(full_state())
    document["version"] = 1
    old = state_from_dict(document)
    assert old.version == FORMAT_VERSION
    assert all(record.cached_from is None for record in old.tasks.values())
    state = full_state()
    state.tasks["task-0"] = dataclasses.replace(state.tasks["task-0"], cached_from="topwords-0123456789")
    back = state_from_json(state_to_json(state))
    assert back.tasks["task-0"].cached_from == "topwords-0123456789"
    assert "cached_from" not in state_to_dict(state)["tasks"]["task-1"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("lineage"),
        lambda d: d.update(serial="3"),
        lambda d: d.update(surprise=1),
        lambda d: d["steps"].update(x={"status": "sleeping"}),
        lambda d: d["tasks"].update(t={"state": "exploded"}),
        lambda d: d["tasks"].update(t={"state": "running", "colour": "red"}),
        lambda d: d["tasks"].update(t={"state": "completed", "exit_code": "0"}),
    ],
)
def test_malformed_documents_are_refused(damage) -> None:
    document = state_to_dict(full_state())
    damage(document)
    with pytest.raises(StateFormatError):
        state_from_dict(document)


def test_text_that_is_not_json_is_refused() -> None:
    text = state_to_json(full_state())
    with pytest.raises(StateFormatError, match="not valid JSON"):
        state_from_json(text[: len(text) // 2])


@pytest.mark.parametrize("value", [(1, 2), float("nan"), {1: "x"}, object()])
def test_values_that_would_not_read_back_are_refused(value: object) -> None:
    state = full_state()
    state.resources["bad"] = value
    with pytest.raises(ValueError):
        state_to_json(state)


def test_content_key_ignores_write_bookkeeping_only() -> None:
    state = full_state()
    key = content_key(state)
    state.serial += 5
    state.updated = "2030-01-01T00:00:00Z"
    state.journal_seq = 99
    assert content_key(state) == key
    state.steps["pool"] = StepRecord(status="done")
    assert content_key(state) != key
