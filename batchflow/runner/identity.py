"""Which run a workflow invocation belongs to, and where that run's state lives.

A run is identified by the workflow's name and a fingerprint of its rendered
definition: what it uploads (by content), the pool, the job, the tasks and
the download, and of the target it runs on (a run on ``local`` and one on
``azure`` are different runs, with different state). Fields that cannot change the result (the description, the
monitor's timing, the cleanup policy, the variables themselves) are left
out, so editing them resumes the same run. ``--run NAME`` overrides this.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

from batchflow.cloud.storage import file_md5
from batchflow.model import spec
from batchflow.model.spec import Workflow

#: Top-level fields of Workflow.to_dict() that do not change what a run produces.
IGNORED = ("description", "path", "variables", "monitor", "cleanup", "uploads", "cache")


def _canonical(value: Any) -> Any:
    """A dataclass, path or duration of the workflow as plain data, one level deep, for ``json.dumps``.

    A dataclass is its attribute dict: it holds exactly its fields (none of the classes in
    ``spec`` has slots or caches anything on its instances), and the keys are sorted anyway.
    """
    if is_dataclass(value):
        return value.__dict__
    return spec.plain_part(value)


def upload_digests(workflow: Workflow) -> dict[Path, bytes]:
    """The MD5 of every file to upload, computed once per apply."""
    return {u.local_path: file_md5(u.local_path) for u in workflow.uploads}


def fingerprint(workflow: Workflow, digests: dict[Path, bytes], target: str) -> str:
    """A hex digest of what defines the run's results, and where it runs.

    The digest is of the canonical JSON (sorted keys, no spaces) of
    ``workflow.to_dict()`` without the :data:`IGNORED` fields, plus the target
    and the uploads' contents. It names the run, so it must never change for
    the same definition: a resumed run is found by it.
    """
    definition: dict[str, Any] = {
        name: getattr(workflow, name) for name in spec.field_names(Workflow) if name not in IGNORED
    }
    definition["target"] = target
    definition["uploads"] = sorted([u.container, u.blob_name, digests[u.local_path].hex()] for u in workflow.uploads)
    members = [
        _STRING(name) + ":" + (_tasks_json(value) if name == "tasks" else _json(value))
        for name, value in sorted(definition.items())
    ]
    return hashlib.sha256(("{" + ",".join(members) + "}").encode()).hexdigest()


def run_name(workflow: Workflow, digest: str, explicit: str | None = None) -> str:
    """``<workflow>-<first 10 hex digits>``, or the name given with ``--run``."""
    return explicit or f"{workflow.name}-{digest[:10]}"


def run_directory(state_dir: Path, run: str) -> Path:
    return state_dir / run


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_canonical, check_circular=False)


def _json(value: Any) -> str:
    """``value`` as canonical JSON. The encoder turns each dataclass, path and duration into plain data
    as it meets it, which gives the text to_dict() would and costs a fraction of making it."""
    return _ENCODER.encode(value)


#: A string as JSON, exactly as json.dumps writes it (ASCII, escaped).
_STRING = json.encoder.encode_basestring_ascii


def _tasks_json(tasks: tuple[spec.Task, ...]) -> str:
    """The tasks as ``_json(tasks)`` writes them, put together field by field.

    Encoding 100,000 tasks in one call took a second: the encoder is made again for each
    value handed to ``default``. Here a task's strings and tuples of dataclasses are written
    directly, and a field that holds the very object it held in the task before (a sweep's
    tasks share the values their template does not vary, see ``model.load._tasks``) is
    not encoded again. The text is the same, byte for byte.
    """
    keys = _SPEC_KEYS[spec.Task]
    before: list[Any] = [_UNSEEN] * len(keys)
    encoded = [""] * len(keys)
    items = []
    for task in tasks:
        fields = task.__dict__
        index = 0
        for name, key in keys:
            value = fields[name]
            if value is not before[index]:
                before[index] = value
                encoded[index] = key + (_STRING(value) if type(value) is str else _value_json(value))
            index += 1
        items.append("{" + ",".join(encoded) + "}")
    return "[" + ",".join(items) + "]"


def _value_json(value: Any) -> str:
    """``_json(value)``, with the values tasks hold most written here rather than by the encoder."""
    kind = type(value)
    if kind is str:
        return _STRING(value)
    if value is None:
        return "null"
    if kind is tuple:
        return "[" + ",".join(map(_value_json, value)) + "]"
    layout = _SPEC_LAYOUTS.get(kind)
    if layout is not None:
        text, values_of = layout
        return text % tuple(map(_value_json, values_of(value.__dict__)))
    return _json(value)


#: For each dataclass of ``spec``, its field names in sorted order, each with its JSON key.
_SPEC_KEYS = {
    kind: [(name, _STRING(name) + ":") for name in sorted(spec.field_names(kind))]
    for kind in vars(spec).values()
    if isinstance(kind, type) and is_dataclass(kind)
}


def _layout(keys: list[tuple[str, str]]) -> tuple[str, Callable[[dict[str, Any]], Any]]:
    """A dataclass's JSON with ``%s`` where each value goes, and what takes the values from its attributes."""
    names = [name for name, _ in keys]
    text = "{" + ",".join(key.replace("%", "%%") + "%s" for _, key in keys) + "}"
    if len(names) == 1:
        (only,) = names
        return text, lambda attributes: (attributes[only],)
    return text, operator.itemgetter(*names)


#: For each dataclass of ``spec`` with fields, its :func:`_layout`.
_SPEC_LAYOUTS = {kind: _layout(keys) for kind, keys in _SPEC_KEYS.items() if keys}
#: What no field holds, so that every field of the first task is encoded.
_UNSEEN = object()
