"""Check the local service's JSON responses against the azure-batch SDK's own models.

Each response body is compared, recursively, with the model the SDK reads it
into: every key must be a REST field name of that model, and every value of an
enum-typed field one of the enum's values. The SDK ignores what it does not
know, so an invented field (``previousState`` on a node) or a misspelt enum
value would otherwise pass every other test.
"""

from __future__ import annotations

import datetime
import enum
import json
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any

from azure.batch import models

# The model of each handler's 2xx answer: (model, is a list answer with "value").
RESPONSE_MODELS: dict[str, tuple[type, bool]] = {
    "list_pools": (models.BatchPool, True),
    "get_pool": (models.BatchPool, False),
    "list_nodes": (models.BatchNode, True),
    "get_node": (models.BatchNode, False),
    "list_node_files": (models.BatchNodeFile, True),
    "list_task_files": (models.BatchNodeFile, True),
    "list_supported_images": (models.BatchSupportedImage, True),
    "list_jobs": (models.BatchJob, True),
    "get_job": (models.BatchJob, False),
    "task_counts": (models.BatchTaskCountsResult, False),
    "list_tasks": (models.BatchTask, True),
    "get_task": (models.BatchTask, False),
    "add_task_collection": (models.BatchCreateTaskCollectionResult, False),
}
#: Keys OData adds to every answer, outside any model.
ODATA_KEYS = {"odata.metadata", "odata.nextLink"}


def _hints(model: type) -> dict[str, Any]:
    namespace = {**vars(models), "_models": models, **vars(typing), "datetime": datetime}
    return typing.get_type_hints(model, globalns=namespace)


@lru_cache(maxsize=None)
def _fields(model: type) -> dict[str, Any]:
    """REST name -> annotation, for one SDK model."""
    model()  # the SDK fills in its field table on first use
    hints = _hints(model)
    return {field._rest_name: hints[attr] for attr, field in model._attr_to_rest_field.items()}  # type: ignore[attr-defined]


def problems(value: Any, annotation: Any, where: str) -> list[str]:
    """What in ``value`` does not fit ``annotation`` (a model, enum, list, dict, union or plain type)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:
        arms = [a for a in args if a is not type(None)]
        if value is None:
            return []
        enums = [a for a in arms if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums and isinstance(value, str):
            allowed = {m.value for e in enums for m in e}
            return [] if value in allowed else [f"{where}: {value!r} is not one of {sorted(allowed)}"]
        results = [problems(value, arm, where) for arm in arms]
        return [] if any(not r for r in results) else min(results, key=len)
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [p for i, item in enumerate(value) for p in problems(item, args[0], f"{where}[{i}]")]
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        return [p for k, item in value.items() for p in problems(item, args[1], f"{where}.{k}")]
    if isinstance(annotation, type) and hasattr(annotation, "_attr_to_rest_field"):
        if not isinstance(value, dict):
            return [f"{where}: expected an object for {annotation.__name__}"]
        fields = _fields(annotation)
        found = []
        for key, item in value.items():
            if key in ODATA_KEYS and where.count(".") == 0:
                continue
            if key not in fields:
                found.append(f"{where}.{key}: not a field of {annotation.__name__}")
                continue
            found += problems(item, fields[key], f"{where}.{key}")
        return found
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        allowed = {m.value for m in annotation}
        return [] if value in allowed else [f"{where}: {value!r} is not one of {sorted(allowed)}"]
    if annotation is datetime.datetime:
        try:
            datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            return []
        except ValueError:
            return [f"{where}: {value!r} is not a time"]
    if annotation is bool:
        return [] if isinstance(value, bool) else [f"{where}: expected true or false"]
    if annotation in (int, float):
        # int64 values are JSON strings in the spec ("13"); the SDK reads either.
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
            annotation is int and isinstance(value, str) and value.lstrip("-").isdigit()
        )
        return [] if ok else [f"{where}: expected a number"]
    if annotation is str:
        return [] if isinstance(value, str) else [f"{where}: expected a string"]
    return []  # Any, bytes and the like: nothing to check


def check_recording(path: Path) -> list[str]:
    """Every problem in a BATCHFLOW_WIRE_RECORD file, with the handler that answered."""
    found: list[str] = []
    if not path.exists():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        handler, status, body = entry["handler"] or f"{entry['method']} (no route)", entry["status"], entry["body"]
        if status >= 400:
            model, listed = models.BatchError, False
        elif handler in RESPONSE_MODELS:
            model, listed = RESPONSE_MODELS[handler]
        else:
            found.append(f"{handler}: answered JSON, but no model is mapped for it in tests/local/wire_models.py")
            continue
        if listed:
            items = body.get("value")
            extra = set(body) - ODATA_KEYS - {"value"}
            found += [f"{handler}: {key}: not part of a list answer" for key in sorted(extra)]
            found += [p for i, item in enumerate(items or []) for p in problems(item, model, f"{handler}.value[{i}]")]
        else:
            found += problems(body, model, handler)
    return sorted(set(found))
