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
from dataclasses import is_dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, Union

from batchflow.cloud.storage import file_md5
from batchflow.longlived import collector_paused
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
    with collector_paused():  # the columns are many short-lived tuples, and none forms a cycle
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
    """The tasks as ``_json(tasks)`` writes them, byte for byte, encoded a field at a time.

    Encoding 100,000 tasks one by one took most of a second, though a sweep's tasks have one
    shape and share most of their values (see ``model.load._tasks``): here each field is
    encoded across all tasks at once (:func:`_encoded`), a field that holds one object in
    every task is encoded once, and the pieces of all tasks are joined in one go.
    """
    if not tasks:
        return "[]"
    encoded = _encoded(list(tasks))
    if isinstance(encoded, str):
        return "[" + ",".join([encoded] * len(tasks)) + "]"
    stride, pieces = encoded
    pieces[stride - 1 :: stride] = [last + "," for last in pieces[stride - 1 :: stride]]  # a comma after each task
    pieces[-1] = pieces[-1][:-1]  # but the last
    return "[" + "".join(pieces) + "]"


#: The JSON of a column of values: one text, when every value has the same; else ``(stride, pieces)``,
#: where the text of value ``i`` is ``"".join(pieces[i * stride : (i + 1) * stride])``.
_Column = Union[str, tuple[int, list[str]]]


def _encoded(values: list[Any]) -> _Column:
    """The JSON of each of ``values`` (not empty), as :func:`_value_json` writes it, made a column at a time.

    Values of one ``spec`` dataclass are split into a column per field, tuples of one length into a
    column per position, and each column is encoded the same way; values without one shape are
    encoded one by one.
    """
    first = values[0]
    if all(map(operator.is_, values, repeat(first))):
        return _value_json(first)
    kinds = set(map(type, values))
    if len(kinds) == 1:
        (kind,) = kinds
        if kind is str:
            return 1, list(map(_STRING, values))
        keys = _SPEC_KEYS.get(kind)
        if keys:
            names = [name for name, _ in keys]
            attributes = list(map(vars, values))
            if len(names) == 1:
                fields: Any = [list(map(operator.itemgetter(names[0]), attributes))]
            else:
                fields = zip(*map(operator.itemgetter(*names), attributes), strict=True)
            columns = [_encoded(list(field)) for field in fields]
            return _interleaved([("," if index else "{") + key for index, (_, key) in enumerate(keys)], columns, "}")
        if kind is tuple:
            lengths = set(map(len, values))
            if len(lengths) == 1:
                (length,) = lengths
                columns = [_encoded(list(position)) for position in zip(*values, strict=True)]
                return _interleaved(["["] + [","] * (length - 1), columns, "]") if length else "[]"
    return 1, list(map(_value_json, values))


def _interleaved(before: list[str], columns: list[_Column], end: str) -> _Column:
    """The column whose value ``i`` is ``before[0] + columns[0][i] + before[1] + ... + end``.

    A column of one text joins the text around it; the others' pieces are laid between the
    texts by slice assignment, one column and offset at a time, never one value at a time.
    """
    layout: list[_Column] = []
    text = ""
    for prefix, column in zip(before, columns, strict=True):
        text += prefix
        if isinstance(column, str):
            text += column
        else:
            layout += [text, column]
            text = ""
    if not layout:
        return text + end
    layout.append(text + end)
    count = next(len(part[1]) // part[0] for part in layout if not isinstance(part, str))
    stride = sum(1 if isinstance(part, str) else part[0] for part in layout)
    pieces = [""] * (stride * count)
    offset = 0
    for part in layout:
        if isinstance(part, str):
            pieces[offset::stride] = [part] * count
            offset += 1
        else:
            width, inner = part
            for within in range(width):
                pieces[offset + within :: stride] = inner[within::width]
            offset += width
    return stride, pieces


def _value_json(value: Any) -> str:
    """``_json(value)``, with the values tasks hold most written here rather than by the encoder."""
    kind = type(value)
    if kind is str:
        return _STRING(value)
    if value is None:
        return "null"
    if kind is tuple:
        return "[" + ",".join(map(_value_json, value)) + "]"
    keys = _SPEC_KEYS.get(kind)
    if keys:
        attributes = value.__dict__
        return "{" + ",".join([key + _value_json(attributes[name]) for name, key in keys]) + "}"
    return _json(value)


#: For each dataclass of ``spec``, its field names in sorted order, each with its JSON key.
_SPEC_KEYS = {
    kind: [(name, _STRING(name) + ":") for name in sorted(spec.field_names(kind))]
    for kind in vars(spec).values()
    if isinstance(kind, type) and is_dataclass(kind)
}
