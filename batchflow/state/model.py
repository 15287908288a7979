"""RunState: what one run has done so far, and its versioned JSON format.

A run's state is what lets ``apply`` resume after any interruption and lets
``destroy`` delete only what the run created. It is a file format, not an
in-memory detail: old files must stay readable after an upgrade of
batchflow, and a file written by a newer batchflow must be refused rather
than misread. Hence the ``version`` field and one ``upgrade_vN`` function
per format version (see :func:`state_from_dict`).

The top-level fields follow Terraform's state file:

``version``
    The format version; :data:`FORMAT_VERSION` for files this code writes.
``serial``
    Goes up by one each time the *content* of the snapshot changes, so two
    snapshots with the same lineage and serial are the same state.
``lineage``
    A UUID set when the run's state is created and never changed; a snapshot
    of another lineage is another run's state, whatever its file name.

Example::

    state = new_state(run="topwords-3f2a", workflow="topwords",
                      workflow_file="workflows/topwords.yaml",
                      fingerprint="sha256:...", steps=["containers", "uploads"])
    set_step_status(state, "containers", "running")
    text = state_to_json(state)
    assert state_from_json(text) == state

This module does no I/O; :mod:`batchflow.state.store` reads and writes it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from batchflow import __version__
from batchflow.errors import BatchflowError

#: The format version this code writes; files with a higher one are refused.
FORMAT_VERSION = 3

#: The life of a step within a run.
STEP_STATUSES = ("pending", "running", "done", "failed")

#: Azure Batch task states (``TaskState`` in the REST API).
TASK_STATES = ("active", "preparing", "running", "completed")

#: Azure Batch task execution results; ``None`` until the task completes.
TASK_RESULTS = (None, "success", "failure")


class StateFormatError(BatchflowError):
    """A state document cannot be read: not JSON, wrong shape, or unknown version."""


class StateVersionError(StateFormatError):
    """The state was written by a newer batchflow; only an upgrade of batchflow can read it.

    Kept apart from other format errors because falling back to the backup
    would be wrong here: the file is fine, this batchflow is too old.
    """


# json.dumps() builds a new encoder on every call that passes options; with one
# call per task, reusing these two is most of the cost of writing a snapshot.
_COMPACT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_INDENTED = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=2)


def now_iso() -> str:
    """The current UTC time as ISO 8601 with a ``Z``, the form every timestamp here uses."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class StepRecord:
    """Where one of the run's steps stands; ``summary`` holds its plain-JSON counts."""

    status: str = "pending"
    started: str | None = None
    finished: str | None = None
    #: What the step reports, e.g. ``{"new": 3, "changed": 0, "unchanged": 2}``.
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskRecord:
    """The last known state of one Batch task, as the service reported it.

    ``task_id`` is the key of :attr:`RunState.tasks` and is not repeated in
    the state file's task entries; it is carried here so that a record can
    travel alone, as a line of the task journal does.

    Frozen: a task's news is a new record, never a change to the one the
    state holds, so the store can serialise each record once and reuse that
    text in every snapshot until the record is replaced.
    """

    task_id: str
    state: str = "active"
    exit_code: int | None = None
    result: str | None = None
    retry_count: int = 0
    node_id: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    #: The service's failure information (category, code, message, details).
    failure: dict[str, Any] | None = None
    #: The run whose outputs this task reused instead of running (see batchflow.runner.cache).
    cached_from: str | None = None
    #: How often Batch put the task back in the queue because its node went away (preemption).
    requeue_count: int = 0
    #: When the service moved the task to ``state`` (``stateTransitionTime``: the service's clock,
    #: ISO 8601 as the service wrote it): a resumed monitor lists only what changed after the newest one.
    transition_time: str | None = None


@dataclass
class RunState:
    """Everything batchflow knows about one run: its steps, what it created, its tasks.

    ``resources`` is plain JSON and records what ``destroy`` may delete, by
    convention::

        {"containers": {"input": "created", "output": "existing"},
         "pool": {"id": "PythonTutorialPool", "created": true},
         "job": {"id": "topwords-3f2a", "created": true}}

    ``journal_seq`` belongs to the store: the number of the last task-journal
    record folded into this snapshot, so that records already folded are not
    replayed over it.
    """

    run: str
    workflow: str
    workflow_file: str
    fingerprint: str
    lineage: str = field(default_factory=lambda: str(uuid.uuid4()))
    serial: int = 0
    version: int = FORMAT_VERSION
    batchflow_version: str = __version__
    created: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    journal_seq: int = 0


def new_state(*, run: str, workflow: str, workflow_file: str, fingerprint: str, steps: Iterable[str] = ()) -> RunState:
    """Start the state of a new run, with a fresh lineage and every step pending."""
    state = RunState(run=run, workflow=workflow, workflow_file=workflow_file, fingerprint=fingerprint)
    for name in steps:
        state.steps[name] = StepRecord()
    return state


def set_step_status(state: RunState, name: str, status: str, *, summary: Mapping[str, Any] | None = None) -> StepRecord:
    """Move step *name* to *status*, stamping ``started`` or ``finished``.

    ``running`` sets ``started`` (and clears an old ``finished`` from an
    earlier attempt); ``done`` and ``failed`` set ``finished``. A *summary*
    replaces the step's previous one.
    """
    if status not in STEP_STATUSES:
        raise ValueError(f"step status must be one of {', '.join(STEP_STATUSES)}, not {status!r}")
    record = state.steps.setdefault(name, StepRecord())
    record.status = status
    if status == "running":
        record.started = now_iso()
        record.finished = None
    elif status in ("done", "failed"):
        record.finished = now_iso()
    elif status == "pending":
        record.started = record.finished = None
    if summary is not None:
        check_plain_json(dict(summary), f"summary of step {name!r}")
        record.summary = dict(summary)
    return record


def check_plain_json(value: Any, what: str) -> None:
    """Raise ``ValueError`` unless *value* is JSON made of dicts, lists, str, int, float, bool, None.

    The state must read back exactly as written; a tuple, a datetime or a NaN
    would not (or would not be valid JSON), so they are refused at the door.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what}: {value!r} is not a finite number")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            check_plain_json(item, f"{what}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{what}: key {key!r} is not a string")
            check_plain_json(item, f"{what}.{key}")
        return
    raise ValueError(f"{what}: {type(value).__name__} is not plain JSON")


def check_task_record(record: TaskRecord) -> None:
    """Raise ``ValueError`` if *record* could not be written and read back as it is.

    Runs for every task of every snapshot written or read, so it compares
    types with ``type(...) is`` (which also keeps ``True`` out of integers)
    rather than calling a generic checker per field.
    """
    task_id = record.task_id
    if type(task_id) is not str or not task_id:
        raise ValueError(f"a task record needs a non-empty string id, not {task_id!r}")
    if record.state not in _TASK_STATE_SET:
        raise ValueError(f"task {task_id!r}: state must be one of {', '.join(TASK_STATES)}, not {record.state!r}")
    if record.result is not None and record.result not in _TASK_RESULT_SET:
        raise ValueError(f"task {task_id!r}: result must be success, failure or None, not {record.result!r}")
    if record.exit_code is not None and type(record.exit_code) is not int:
        raise ValueError(f"task {task_id!r}: exit_code must be an integer or None, not {record.exit_code!r}")
    if type(record.retry_count) is not int:
        raise ValueError(f"task {task_id!r}: retry_count must be an integer, not {record.retry_count!r}")
    if type(record.requeue_count) is not int:
        raise ValueError(f"task {task_id!r}: requeue_count must be an integer, not {record.requeue_count!r}")
    for name, value in (("node_id", record.node_id), ("start_time", record.start_time),
                        ("end_time", record.end_time), ("cached_from", record.cached_from),
                        ("transition_time", record.transition_time)):  # fmt: skip
        if value is not None and type(value) is not str:
            raise ValueError(f"task {task_id!r}: {name} must be a string or None, not {value!r}")
    if record.failure is not None:
        if type(record.failure) is not dict:
            raise ValueError(f"task {task_id!r}: failure must be a dict or None")
        check_plain_json(record.failure, f"task {task_id!r}: failure")


def task_to_dict(record: TaskRecord) -> dict[str, Any]:
    """A task record as JSON fields, without its id (the caller places it); the version 2 and 3 fields only when set."""
    fields = {
        "state": record.state,
        "exit_code": record.exit_code,
        "result": record.result,
        "retry_count": record.retry_count,
        "node_id": record.node_id,
        "start_time": record.start_time,
        "end_time": record.end_time,
        "failure": record.failure,
    }
    if record.cached_from is not None:
        fields["cached_from"] = record.cached_from
    if record.requeue_count:
        fields["requeue_count"] = record.requeue_count
    if record.transition_time is not None:
        fields["transition_time"] = record.transition_time
    return fields


def task_from_dict(task_id: str, data: Any) -> TaskRecord:
    """Build and check a task record from its JSON fields; ``StateFormatError`` if malformed."""
    if type(data) is not dict:
        raise StateFormatError(f"task {task_id!r}: expected an object, found {type(data).__name__}")
    if not data.keys() <= _TASK_FIELD_SET:
        unknown = ", ".join(sorted(set(data) - _TASK_FIELD_SET))
        raise StateFormatError(f"task {task_id!r}: unknown field(s) {unknown}")
    get = data.get
    record = TaskRecord(
        task_id,
        get("state", "active"),
        get("exit_code"),
        get("result"),
        get("retry_count", 0),
        get("node_id"),
        get("start_time"),
        get("end_time"),
        get("failure"),
        get("cached_from"),
        get("requeue_count", 0),
        get("transition_time"),
    )
    try:
        check_task_record(record)
    except ValueError as error:
        raise StateFormatError(str(error)) from None
    return record


_TASK_FIELD_SET = frozenset(
    (
        "state",
        "exit_code",
        "result",
        "retry_count",
        "node_id",
        "start_time",
        "end_time",
        "failure",
        "cached_from",
        "requeue_count",
        "transition_time",
    )
)
_TASK_STATE_SET = frozenset(TASK_STATES)
_TASK_RESULT_SET = frozenset(result for result in TASK_RESULTS if result is not None)


def state_to_dict(state: RunState) -> dict[str, Any]:
    """The JSON document of *state*, checked to be plain JSON; keys in file order."""
    document = head_to_dict(state)
    for task_id, record in state.tasks.items():
        check_task_entry(task_id, record)
    document["tasks"] = {task_id: task_to_dict(record) for task_id, record in state.tasks.items()}
    return document


def check_task_entry(task_id: str, record: TaskRecord) -> None:
    """Raise ``ValueError`` unless *record* is a writable record filed under its own id."""
    if record.task_id != task_id:
        raise ValueError(f"tasks[{task_id!r}] holds the record of task {record.task_id!r}")
    check_task_record(record)


def head_to_dict(state: RunState) -> dict[str, Any]:
    """The JSON document of *state* without its tasks, checked to be plain JSON; keys in file order.

    Apart from :func:`state_to_dict` so that a writer holding the tasks' text
    already (see :class:`batchflow.state.store.StateStore`) checks and encodes
    only this small part again.
    """
    for name, step in state.steps.items():
        if step.status not in STEP_STATUSES:
            raise ValueError(f"step {name!r}: status must be one of {', '.join(STEP_STATUSES)}")
        check_plain_json(step.summary, f"summary of step {name!r}")
    if not isinstance(state.resources, dict):
        raise ValueError(f"resources must be a dict, not {type(state.resources).__name__}")
    check_plain_json(state.resources, "resources")
    return {
        "version": state.version,
        "serial": state.serial,
        "lineage": state.lineage,
        "batchflow_version": state.batchflow_version,
        "run": state.run,
        "workflow": state.workflow,
        "workflow_file": state.workflow_file,
        "fingerprint": state.fingerprint,
        "created": state.created,
        "updated": state.updated,
        "journal_seq": state.journal_seq,
        "steps": {
            name: {"status": s.status, "started": s.started, "finished": s.finished, "summary": s.summary}
            for name, s in state.steps.items()
        },
        "resources": state.resources,
    }


def state_to_json(state: RunState) -> str:
    """Serialise *state* for the state file: indented, one line per task."""
    return document_to_json(state_to_dict(state))


def document_to_json(document: dict[str, Any]) -> str:
    """The state file's text for a document from :func:`state_to_dict`.

    One line per task keeps a file of 100,000 tasks about half the size of
    fully indented JSON, while it stays readable and greppable by task id.
    """
    return json_head(document) + json_tasks(document["tasks"])


def json_head(document: dict[str, Any]) -> str:
    """The state file's text up to the tasks: every other field, then ``"tasks": ``.

    Split from :func:`json_tasks` so that a writer can stamp a new serial
    into the few lines of the head without serialising 100,000 tasks again.
    """
    head = _INDENTED.encode({name: value for name, value in document.items() if name != "tasks"})
    return head[: -len("\n}")] + ',\n  "tasks": '


def json_tasks(tasks: dict[str, Any]) -> str:
    """The state file's text from the tasks object to the end, one line per task."""
    encode = _COMPACT.encode
    return json_task_lines([task_line(task_id, encode(fields)) for task_id, fields in tasks.items()])


def json_task_lines(lines: list[str]) -> str:
    """The state file's text from the tasks object to the end, from each task's :func:`task_line`."""
    if not lines:
        return "{}\n}\n"
    return "{\n" + ",\n".join(lines) + "\n  }\n}\n"


def task_line(task_id: str, fields_json: str) -> str:
    """One task's line in the state file, from its fields as compact JSON (:func:`task_json`)."""
    return f"    {_COMPACT.encode(task_id)}: {fields_json}"


def task_json(record: TaskRecord) -> str:
    """A task record's fields (:func:`task_to_dict`) as compact JSON, the form of the file and the journal."""
    return _COMPACT.encode(task_to_dict(record))


def journal_line(seq: int, record: TaskRecord, fields_json: str) -> str:
    """A task journal line: ``{"n":…,"id":…,`` then the record's fields (:func:`task_json`), and a newline."""
    return f'{{"n":{seq},"id":{_COMPACT.encode(record.task_id)},{fields_json[1:]}\n'


def state_from_json(text: str) -> RunState:
    """Parse a state file's text; ``StateFormatError`` if it is not a readable state."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise StateFormatError(f"not valid JSON ({error})") from None
    return state_from_dict(document)


def upgrade_v1(document: dict[str, Any]) -> dict[str, Any]:
    """Bring a version 1 document to the current format.

    Version 2 added the optional task fields ``cached_from`` and ``requeue_count``; a version 1
    document has none, so only the version changes. Each ``upgrade_vN``
    brings version N one step forward and hands it on, so that every
    readable version reaches :data:`FORMAT_VERSION`.
    """
    return upgrade_v2(dict(document, version=2))


def upgrade_v2(document: dict[str, Any]) -> dict[str, Any]:
    """Bring a version 2 document to version 3.

    Version 3 added the optional task field ``transition_time``; a version 2
    document has none (its monitor, if resumed, lists every completed task
    once), so only the version changes.
    """
    return upgrade_v3(dict(document, version=3))


def upgrade_v3(document: dict[str, Any]) -> dict[str, Any]:
    """Version 3 is the current format: nothing to change."""
    return document


#: The upgrade function for each format version this code can read.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: upgrade_v1, 2: upgrade_v2, 3: upgrade_v3}


def state_from_dict(document: Any) -> RunState:
    """Build a RunState from a decoded document of any known format version.

    The version is read first and the document upgraded to the current
    format before any other field is looked at. A version newer than this
    code knows is refused: guessing would silently drop what the newer
    batchflow recorded, such as a resource ``destroy`` must delete.
    """
    if not isinstance(document, dict):
        raise StateFormatError(f"expected a JSON object, found {type(document).__name__}")
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise StateFormatError(f"the format version is missing or not an integer ({version!r})")
    if version > FORMAT_VERSION:
        raise StateVersionError(
            f"the state file has format version {version}, but batchflow {__version__} reads "
            f"versions up to {FORMAT_VERSION}; it was written by a newer batchflow, so upgrade "
            "batchflow to use this run"
        )
    upgrade = UPGRADES.get(version)
    if upgrade is None:
        raise StateFormatError(f"format version {version} is not one batchflow has ever written")
    document = upgrade(dict(document))
    return _decode_current(document)


def _decode_current(document: dict[str, Any]) -> RunState:
    """Check every field of a current-format document and build the RunState."""

    def need(name: str, kind: type | tuple[type, ...]) -> Any:
        if name not in document:
            raise StateFormatError(f"the field {name!r} is missing")
        value = document[name]
        if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
            raise StateFormatError(f"the field {name!r} has the wrong type ({type(value).__name__})")
        return value

    known = {
        "version", "serial", "lineage", "batchflow_version", "run", "workflow", "workflow_file",
        "fingerprint", "created", "updated", "journal_seq", "steps", "resources", "tasks",
    }  # fmt: skip
    unknown = set(document) - known
    if unknown:
        raise StateFormatError(f"unknown field(s) {', '.join(sorted(unknown))}")

    steps: dict[str, StepRecord] = {}
    for name, data in need("steps", dict).items():
        if not isinstance(data, dict) or data.get("status") not in STEP_STATUSES:
            raise StateFormatError(f"step {name!r} is malformed or has an unknown status")
        summary = data.get("summary", {})
        if not isinstance(summary, dict):
            raise StateFormatError(f"the summary of step {name!r} is not an object")
        if any(data.get(stamp) is not None and not isinstance(data[stamp], str) for stamp in ("started", "finished")):
            raise StateFormatError(f"the times of step {name!r} are not strings")
        steps[name] = StepRecord(
            status=data["status"], started=data.get("started"), finished=data.get("finished"), summary=summary
        )

    tasks = {task_id: task_from_dict(task_id, data) for task_id, data in need("tasks", dict).items()}
    return RunState(
        version=FORMAT_VERSION,
        serial=need("serial", int),
        lineage=need("lineage", str),
        batchflow_version=need("batchflow_version", str),
        run=need("run", str),
        workflow=need("workflow", str),
        workflow_file=need("workflow_file", str),
        fingerprint=need("fingerprint", str),
        created=need("created", str),
        updated=need("updated", str),
        journal_seq=need("journal_seq", int),
        steps=steps,
        resources=need("resources", dict),
        tasks=tasks,
    )


def content_key(state: RunState) -> str:
    """The state's content as one string, leaving out what a write itself changes.

    Two snapshots with equal keys hold the same state, so the serial stays;
    ``serial``, ``updated`` and ``journal_seq`` are bookkeeping of writes.
    """
    return text_content_key(state_to_json(state))


# The bookkeeping fields, as json_head() lays them out: one per line, at the
# top level (two spaces in), before "steps".
_BOOKKEEPING_LINE = re.compile(r'^  "(serial|updated|journal_seq)": [^\n]*$', re.MULTILINE)


def text_content_key(text: str, rest: bytes = b"") -> str:
    """:func:`content_key` computed from a state file's text: the SHA-256 of the text with the bookkeeping
    lines blanked. ``rest`` is the text that follows ``text``, already encoded as UTF-8.

    A loaded file's key comes from its text as read, without serialising
    the state again: for 100,000 tasks that saves most of a second per load.
    A file laid out by other means than :func:`document_to_json` keeps its
    bookkeeping in the key, which at worst costs one extra serial. A digest
    rather than the text itself, and ``rest`` apart, because the text of a
    100,000-task state is 30 MB: the key was kept for the life of the store,
    and joining the parts only to compare them made two more copies.
    """
    digest = hashlib.sha256()
    end = text.find('\n  "steps": ')
    if end < 0:
        digest.update(text.encode("utf-8"))
    else:
        digest.update(_BOOKKEEPING_LINE.sub(r'  "\1": null,', text[:end]).encode("utf-8"))
        digest.update(text[end:].encode("utf-8"))
    digest.update(rest)
    return digest.hexdigest()
