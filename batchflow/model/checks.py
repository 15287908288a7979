"""Checks a JSON Schema cannot express, run on the rendered workflow before anything touches the network.

Each check reports through the loader's diagnostics (``error(path, message)``
and ``warning(path, message)``), pointing at the value the user must change.
Every function here tolerates parts that failed schema validation, because
all problems are reported together.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from batchflow.model.spec import UploadFile
from batchflow.model.variables import Origin

Path = tuple
_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Reporter(Protocol):
    def error(self, path: Path, message: str, *, key: bool = False) -> None: ...
    def warning(self, path: Path, message: str, *, key: bool = False) -> None: ...


def run(
    data: dict[str, Any],
    uploads: list[UploadFile],
    tasks: list[dict[str, Any]],
    report: Reporter,
    varying: Iterable[Path] | None = None,
) -> None:
    """Run every check on the rendered workflow ``data`` and the rendered ``tasks``.

    ``varying`` holds the paths of the task template's strings, the only values that
    differ between tasks (None: any may); checks of what no template string can
    change look at the first task only.
    """
    declared = _declared_containers(data, report)
    naming = _tasks_naming_containers(tasks, varying)
    if _containers_readable(data):
        _container_references(data, naming, declared, report)
    _upload_targets(uploads, data, report)
    _files_in_has_uploads(data, uploads, declared, report)
    _task_ids(tasks, report)
    _cleanup_keeps_outputs(data, naming, declared, report)
    _pool_has_nodes(data, report)
    _outputs_have_a_container(data, tasks, report)


#: The parts of a task that name containers, and the keys within them that decide which and how.
_CONTAINER_PARTS = frozenset({"resource_files", "output_files", "container_urls", "outputs"})
_CONTAINER_KEYS = frozenset({"container", "access"})


def _tasks_naming_containers(tasks: list[dict[str, Any]], varying: Iterable[Path] | None) -> list[dict[str, Any]]:
    """The tasks whose container references must be read: all when a template string can change
    one (a container, an access, or a whole list, item or mapping that holds them), else the first."""
    if varying is None:
        return tasks
    for path in varying:
        inner = path[2:]  # below ("tasks", "template")
        if inner and inner[0] in _CONTAINER_PARTS and (len(inner) <= 2 or inner[-1] in _CONTAINER_KEYS):
            return tasks
    return tasks[:1]


def _outputs_have_a_container(data: dict[str, Any], tasks: list[dict[str, Any]], report: Reporter) -> None:
    """An output named by a bare string lives in the download container, so there must be one."""
    if _as_dict(data.get("download")).get("container"):
        return
    for task in tasks[:1]:
        for index, output in enumerate(_as_list(task.get("outputs"))):
            if isinstance(output, str):
                report.error(
                    ("tasks", "template", "outputs", index),
                    "a bare output name lives in the download container, and there is no download:; "
                    "write {container: NAME, name: ...} instead",
                )
                return


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _declared_containers(data: dict[str, Any], report: Reporter) -> list[str]:
    names: list[str] = []
    for index, container in enumerate(_as_list(data.get("containers"))):
        name = _as_dict(container).get("name")
        if not isinstance(name, str):
            continue
        if name in names:
            report.error(("containers", index, "name"), f"container {name!r} is declared twice")
        names.append(name)
    return names


def _containers_readable(data: dict[str, Any]) -> bool:
    """Whether the declared containers are known; if not, references to them prove nothing.

    A misspelt ``containers:`` key, or a section the schema refused, would
    otherwise make every reference an error that only repeats the real one.
    """
    if "containers" not in data:
        misspelt = [k for k in data if isinstance(k, str) and difflib.get_close_matches(k, ["containers"], cutoff=0.75)]
        return not misspelt
    containers = data["containers"]
    return isinstance(containers, list) and all(isinstance(_as_dict(c).get("name"), str) for c in containers)


def _references(data: dict[str, Any], tasks: list[dict[str, Any]]) -> Iterable[tuple[Path, Any]]:
    """Every place that names a container, with its path."""
    for index, upload in enumerate(_as_list(data.get("uploads"))):
        yield ("uploads", index, "container"), _as_dict(upload).get("container")
    start = _as_dict(_as_dict(data.get("pool")).get("start_task"))
    for index, resource in enumerate(_as_list(start.get("resource_files"))):
        yield ("pool", "start_task", "resource_files", index, "container"), _as_dict(resource).get("container")
    for_each = _as_dict(_as_dict(data.get("tasks")).get("for_each"))
    if "files_in" in for_each:
        yield ("tasks", "for_each", "files_in"), for_each["files_in"]
    yield ("download", "container"), _as_dict(data.get("download")).get("container")
    policies = _as_dict(data.get("cleanup")).get("containers")
    for name in _as_dict(policies):
        yield ("cleanup", "containers", name), name
    # Rendered tasks share the template's paths: each is reported once, whichever task names it.
    template = ("tasks", "template")
    for task in tasks:
        for index, resource in enumerate(_as_list(task.get("resource_files"))):
            yield template + ("resource_files", index, "container"), _as_dict(resource).get("container")
        for index, output in enumerate(_as_list(task.get("output_files"))):
            yield template + ("output_files", index, "container"), _as_dict(output).get("container")
        for name, url in _as_dict(task.get("container_urls")).items():
            yield template + ("container_urls", name, "container"), _as_dict(url).get("container")
        for index, output in enumerate(_as_list(task.get("outputs"))):
            if isinstance(output, dict):
                yield template + ("outputs", index, "container"), output.get("container")


def _container_references(
    data: dict[str, Any], tasks: list[dict[str, Any]], declared: list[str], report: Reporter
) -> None:
    reported: set[tuple[Path, str]] = set()
    for path, name in _references(data, tasks):
        if not isinstance(name, str) or name in declared or (path, name) in reported:
            continue
        reported.add((path, name))
        close = difflib.get_close_matches(name, declared, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "declare it under containers:"
        is_key = path[:2] == ("cleanup", "containers")
        report.error(path, f"container {name!r} is not declared; {hint}", key=is_key)


def _upload_targets(uploads: list[UploadFile], data: dict[str, Any], report: Reporter) -> None:
    """Two different files must not upload to the same blob."""
    seen: dict[tuple[str, str], UploadFile] = {}
    for upload in uploads:
        key = (upload.container, upload.blob_name)
        first = seen.setdefault(key, upload)
        if first is not upload and first.local_path != upload.local_path:
            index = next(
                (
                    i
                    for i, u in enumerate(_as_list(data.get("uploads")))
                    if _as_dict(u).get("container") == upload.container
                ),
                0,
            )
            report.error(
                ("uploads", index, "files"),
                f"{first.local_path} and {upload.local_path} would both become blob {upload.blob_name!r} "
                f"in container {upload.container!r}; use a different prefix for one of them",
            )


def _files_in_has_uploads(
    data: dict[str, Any], uploads: list[UploadFile], declared: list[str], report: Reporter
) -> None:
    for_each = _as_dict(_as_dict(data.get("tasks")).get("for_each"))
    container = for_each.get("files_in")
    if isinstance(container, str) and container in declared and not any(u.container == container for u in uploads):
        if not any(_as_dict(u).get("container") == container for u in _as_list(data.get("uploads"))):
            report.error(
                ("tasks", "for_each", "files_in"),
                f"no upload goes to container {container!r}, so there would be no tasks",
            )


def _task_ids(tasks: list[dict[str, Any]], report: Reporter) -> None:
    where = ("tasks", "template", "id")
    ids = [task_id for task_id in (task.get("id") for task in tasks) if isinstance(task_id, str)]
    match = _BATCH_ID.match
    invalid = [task_id for task_id in ids if not match(task_id)]
    # Batch compares task ids without regard to case.
    known = {task_id.lower() for task_id in ids}
    duplicates: list[str] = []
    if len(known) < len(ids):
        first_index: dict[str, int] = {}
        for index, task in enumerate(tasks):
            task_id = task.get("id")
            if not isinstance(task_id, str):
                continue
            key = task_id.lower()
            if key in first_index:
                duplicates.append(f"{task_id!r} (tasks {first_index[key]} and {index})")
            else:
                first_index[key] = index
    if invalid:
        report.error(
            where,
            f"expected an id of 1 to 64 letters, digits, hyphens and underscores; the template renders {invalid[0]!r}"
            + (f" and {len(invalid) - 1} more like it" if len(invalid) > 1 else ""),
        )
    if duplicates:
        shown = ", ".join(duplicates[:3]) + (f" and {len(duplicates) - 3} more" if len(duplicates) > 3 else "")
        report.error(where, f"task ids must be unique; duplicated: {shown}. Put {{{{ index }}}} in the id")
    for task in tasks:
        depends = task.get("depends_on")
        if not depends:
            continue
        ids_named = depends if isinstance(depends, list) else _as_dict(depends).get("ids", [])
        for index, other in enumerate(_as_list(ids_named)):
            if isinstance(other, str) and other.lower() not in known:
                path = ("tasks", "template", "depends_on") + ((index,) if isinstance(depends, list) else ("ids", index))
                report.error(path, f"task {task.get('id')!r} depends on {other!r}, which no task has as its id")
                return


def _output_containers(tasks: list[dict[str, Any]]) -> set[str]:
    """Containers tasks write to: output-file destinations and write-access container URLs."""
    found: set[str] = set()
    for task in tasks:
        for output in _as_list(task.get("output_files")):
            if isinstance(_as_dict(output).get("container"), str):
                found.add(output["container"])
        for url in _as_dict(task.get("container_urls")).values():
            if _as_dict(url).get("access", "write") == "write" and isinstance(_as_dict(url).get("container"), str):
                found.add(url["container"])
    return found


def _cleanup_keeps_outputs(
    data: dict[str, Any], tasks: list[dict[str, Any]], declared: list[str], report: Reporter
) -> None:
    """A container that receives task outputs may be deleted only after its outputs are downloaded."""
    policies = container_policies(_as_dict(data.get("cleanup")).get("containers"), declared)
    downloaded = _as_dict(data.get("download")).get("container")
    raw = _as_dict(data.get("cleanup")).get("containers")
    for container in sorted(_output_containers(tasks)):
        if policies.get(container) == "delete" and container != downloaded:
            path = (
                ("cleanup", "containers", container)
                if isinstance(raw, dict) and container in raw
                else ("cleanup", "containers")
            )
            report.error(
                path,
                f"container {container!r} receives the task outputs but is deleted without being downloaded; "
                f"add download: {{container: {container}, destination: ...}} or keep it",
            )


def _pool_has_nodes(data: dict[str, Any], report: Reporter) -> None:
    pool = _as_dict(data.get("pool"))
    nodes = _as_dict(pool.get("nodes"))
    dedicated, low = nodes.get("dedicated", 0), nodes.get("low_priority", 0)
    if isinstance(dedicated, int) and isinstance(low, int) and dedicated + low == 0 and "pool" in data:
        path = ("pool", "nodes") if "nodes" in pool else ("pool",)
        report.error(
            path, "the pool has no nodes, so no task would ever run; set nodes.dedicated or nodes.low_priority"
        )


def container_policies(raw: Any, names: Iterable[str]) -> dict[str, str]:
    """The cleanup policy of every declared container; default keep."""
    if isinstance(raw, str):
        return {name: raw for name in names}
    given = _as_dict(raw)
    return {name: given.get(name, "keep") for name in names}


def unused_variables(origins: Mapping[str, Origin], used: set[str], report: Any) -> None:
    """Warn about each variable that is set but that no template uses."""
    from batchflow.diagnostics import Diagnostic

    for name in sorted(origins):
        if name in used:
            continue
        origin = origins[name]
        # BATCHFLOW_VAR_NUMWORD names numword in any case; compare without case.
        by_lower = {u.lower(): u for u in sorted(used)}
        close = [by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=1)]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        how = f" by {origin.how}" if origin.how and origin.how != "vars" else ""
        path: Path = ("vars", name) if origin.how == "vars" else ()
        report.append(
            Diagnostic(
                "warning",
                f"variable {name!r} is set{how} but no template uses it{hint}",
                origin.file,
                origin.line,
                origin.column,
                path,
            )
        )
