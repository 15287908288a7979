"""``load_workflow``: the one entry point from a workflow file to a typed :class:`Workflow`.

The pipeline, in order:

1. parse the YAML, keeping positions (``yamlfile``);
2. merge the variables from their four sources (``variables``);
3. render every template outside ``tasks.template`` (``templating``);
4. validate against the JSON Schema (``schema``);
5. expand the upload globs, then render the task template once per element
   of ``tasks.for_each`` and validate each rendered task (whole until one is
   valid, then only the values its template strings filled in: see
   :class:`batchflow.model.schema.RenderedLeaves`);
6. run the checks a schema cannot express (``checks``);
7. build the frozen dataclasses (``spec``).

Every stage adds to one list of diagnostics instead of stopping, so a user
sees every problem at once. Errors raise :class:`~batchflow.errors.WorkflowError`;
warnings come back in :attr:`LoadResult.warnings`. Nothing touches the network.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import repeat
from pathlib import Path
from typing import Any, Optional

from batchflow.diagnostics import Diagnostic, sort_key
from batchflow.durations import parse_duration
from batchflow.errors import UsageError, WorkflowError
from batchflow.longlived import collector_paused
from batchflow.model import checks, schema, spec, variable_types
from batchflow.model.templating import Renderer, TreeTemplate
from batchflow.model.variables import Origin, collect
from batchflow.model.yamlfile import ParsedFile, Positions, parse_text

Path_ = tuple
TEMPLATE: Path_ = ("tasks", "template")


@dataclass(frozen=True)
class LoadResult:
    """A loaded workflow and the warnings found on the way."""

    workflow: spec.Workflow
    warnings: list[Diagnostic]


class _Diagnostics(list):  # type: ignore[type-arg]
    """Diagnostics of one load, with helpers that look positions up by path."""

    def __init__(self, positions: Positions) -> None:
        super().__init__()
        self.positions = positions

    def error(self, path: Path_, message: str, *, key: bool = False) -> None:
        self._add("error", path, message, key)

    def warning(self, path: Path_, message: str, *, key: bool = False) -> None:
        self._add("warning", path, message, key)

    def _add(self, severity: str, path: Path_, message: str, key: bool) -> None:
        line, column = self.positions.of_key(path) if key else self.positions.of_value(path)
        self.append(Diagnostic(severity, message, self.positions.file, line, column, tuple(path)))  # type: ignore[arg-type]


def load_workflow(
    path: str | os.PathLike[str],
    *,
    assignments: Sequence[str] = (),
    vars_files: Sequence[str | os.PathLike[str]] = (),
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> LoadResult:
    """Load, render, validate and check the workflow at ``path``.

    :param assignments: ``--set`` values, ``name=value`` each.
    :param vars_files: ``--vars-file`` paths, in order.
    :param environ: where ``BATCHFLOW_VAR_*`` come from; default ``os.environ``.
    :param cwd: the folder relative download destinations resolve against; default the current one.
    :raises WorkflowError: with every error found, in file order.
    """
    with collector_paused():
        return _load(path, assignments, vars_files, environ, cwd)


def _load(
    path: str | os.PathLike[str],
    assignments: Sequence[str],
    vars_files: Sequence[str | os.PathLike[str]],
    environ: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
) -> LoadResult:
    display = str(path)
    parsed = _read(Path(path), display)
    diagnostics = _Diagnostics(parsed.positions)
    diagnostics.extend(parsed.diagnostics)
    data = parsed.data
    if data is not None and not isinstance(data, dict):
        diagnostics.error((), "a workflow must be a mapping with name, pool, job and tasks")
    if not isinstance(data, dict):
        raise WorkflowError(sorted(diagnostics, key=sort_key))

    default_origins = {
        name: Origin(display, *parsed.positions.of_key(("vars", name)), how="vars")
        for name in (data.get("vars") or {} if isinstance(data.get("vars"), dict) else {})
    }
    variables = collect(
        variable_types.defaults(data.get("vars")),
        default_origins,
        [Path(p) for p in vars_files],
        os.environ if environ is None else environ,
        assignments,
    )
    diagnostics.extend(variables.diagnostics)
    problems, renderable = variable_types.apply(data.get("vars"), variables, parsed.positions)
    diagnostics.extend(problems)
    if not renderable:
        raise WorkflowError(sorted(diagnostics, key=sort_key))

    renderer = Renderer(dict(variables.values))
    rendered, templated = renderer.render_tree(data, (), diagnostics.error, skip=[("vars",), TEMPLATE])
    _validate(rendered, templated, parsed.positions, diagnostics, definition=None, at=())
    broken = {d.path[:1] for d in diagnostics if d.severity == "error"}

    base_dir = Path(path).resolve().parent
    uploads = _expand_uploads(rendered, data, base_dir, diagnostics) if ("uploads",) not in broken else []
    tasks_data, varying = _render_tasks(rendered, uploads, renderer, parsed.positions, diagnostics)

    checks.run(rendered, uploads, tasks_data, diagnostics, varying)
    errors = [d for d in diagnostics if d.severity == "error"]
    if not errors:
        # After an error, rendering may have stopped before a variable's use.
        checks.unused_variables(variables.origins, renderer.used, diagnostics)
    if errors:
        raise WorkflowError(sorted(diagnostics, key=sort_key))
    workflow = _build(rendered, variables.values, uploads, tasks_data, varying, Path(path), Path(cwd or os.getcwd()))
    warnings = sorted((d for d in diagnostics if d.severity == "warning"), key=sort_key)
    return LoadResult(workflow, warnings)


def _read(path: Path, display: str) -> ParsedFile:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no such file: {display}") from None
    except OSError as exc:
        return ParsedFile(None, Positions(display), [Diagnostic("error", f"cannot read: {exc.strerror}", display)])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return ParsedFile(
            None,
            Positions(display),
            [Diagnostic("error", "the file is not UTF-8 text; save it as UTF-8", display, line, 1)],
        )
    return parse_text(text, display)


def _validate(
    data: Any,
    templated: set[Path_],
    positions: Positions,
    diagnostics: _Diagnostics,
    *,
    definition: str | None,
    at: Path_,
) -> list[Diagnostic]:
    """Validate, letting a templated number or boolean stand where the schema wants a string.

    ``id: "{{ n }}"`` renders to the integer n; the user meant the text, so
    such values are turned into strings and validated again.
    """
    for _ in range(2):
        found = schema.validate(data, positions, definition=definition, at=at)
        coerced = False
        for diagnostic in found:
            inner = diagnostic.path[len(at) :]
            if diagnostic.path in templated and "expected a string" in diagnostic.message:
                parent = _lookup(data, inner[:-1])
                value = parent[inner[-1]] if parent is not None else None
                if isinstance(value, (int, float, bool)):
                    parent[inner[-1]] = str(value).lower() if isinstance(value, bool) else str(value)
                    coerced = True
        if not coerced:
            break
    if definition is None:
        found = [d for d in found if d.path[: len(TEMPLATE)] != TEMPLATE]
    diagnostics.extend(found)
    return found


def _lookup(data: Any, path: Path_) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _other_files_hint(raw: Any, pattern: str) -> str:
    """What to do when the files are not there: name the variable that sets them, if one does."""
    match = re.fullmatch(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", raw.strip()) if isinstance(raw, str) else None
    example = "/path/to/" + (Path(pattern).name if glob.has_magic(Path(pattern).name) else "*")
    if match:
        return f"create the files, or point at others with --set {match.group(1)}='{example}'"
    return "create the files, or correct the path (relative paths start at the workflow file's folder)"


def _expand_uploads(
    data: dict[str, Any], raw: dict[str, Any], base_dir: Path, diagnostics: _Diagnostics
) -> list[spec.UploadFile]:
    """Turn each upload's paths and globs into files, in a stable order, with their blob names.

    ``raw`` is the workflow before rendering, so a hint can name the variable behind a path.
    """
    files: list[spec.UploadFile] = []
    for index, upload in enumerate(data.get("uploads") or []):
        patterns = upload["files"] if isinstance(upload["files"], list) else [upload["files"]]
        prefix = upload.get("prefix", "")
        for number, pattern in enumerate(patterns):
            where: Path_ = ("uploads", index, "files") + ((number,) if isinstance(upload["files"], list) else ())
            full = Path(pattern).expanduser()
            full = full if full.is_absolute() else base_dir / full
            if glob.has_magic(str(full)):
                matches = sorted(Path(m) for m in glob.glob(str(full), recursive=True))
                found = [m for m in matches if m.is_file()]
                if not found:
                    hint = _other_files_hint(_lookup(raw, where), pattern)
                    diagnostics.error(where, f"{pattern!r} matches no file (looked in {full.parent}); {hint}")
                    continue
            elif full.is_dir():
                diagnostics.error(where, f"{pattern!r} is a folder; use a glob such as '{pattern.rstrip('/')}/*'")
                continue
            elif not full.is_file():
                diagnostics.error(where, f"no such file: {full}; {_other_files_hint(_lookup(raw, where), pattern)}")
                continue
            else:
                found = [full]
            for file in found:
                files.append(spec.UploadFile(file, upload["container"], prefix + file.name, file.stat().st_size))
    return files


def _factory(for_each: dict[str, Any], uploads: list[spec.UploadFile]) -> list[dict[str, Any]]:
    """The per-task template variables, one mapping per task."""
    name: str
    values: list[Any]
    if "files_in" in for_each:
        chosen = sorted((u for u in uploads if u.container == for_each["files_in"]), key=lambda u: u.blob_name)
        name, values = "file", [u.template_view() for u in chosen]
    elif "values" in for_each:
        name, values = "value", list(for_each["values"])
    elif "range" in for_each:
        r = for_each["range"]
        name, values = "value", list(range(r["from"], r["to"] + 1, r.get("step", 1)))
    else:
        name, values = "item", list(for_each["items"])
    count = len(values)
    return [{name: value, "index": index, "count": count} for index, value in enumerate(values)]


def _render_tasks(
    data: dict[str, Any],
    uploads: list[spec.UploadFile],
    renderer: Renderer,
    positions: Positions,
    diagnostics: _Diagnostics,
) -> tuple[list[dict[str, Any]], frozenset[Path_] | None]:
    """Render the task template once per element of ``for_each``; report each problem once.

    Returns the rendered tasks and the paths of the template's strings, where they differ.
    """
    tasks = data.get("tasks")
    if not isinstance(tasks, dict) or not isinstance(tasks.get("template"), dict):
        return [], None
    for_each = tasks.get("for_each")
    if not isinstance(for_each, dict) or any(d.path[:2] == ("tasks", "for_each") for d in diagnostics):
        return [], None
    template = tasks["template"]
    seen: set[tuple[Path_, str]] = set()

    def once(path: Path_, message: str) -> None:
        if (path, message) not in seen:
            seen.add((path, message))
            diagnostics.error(path, message)

    compiled = TreeTemplate(template, TEMPLATE)
    leaves: schema.RenderedLeaves | None = None
    whole_checked = False
    rendered_tasks = []
    for task in compiled.render_each(renderer, once, _factory(for_each, uploads)):
        if leaves is not None and leaves.valid(task):
            rendered_tasks.append(task)
            continue
        found = _validate(
            task, set(compiled.templated), positions, _Diagnostics(positions), definition="task", at=TEMPLATE
        )
        for diagnostic in found:
            if (diagnostic.path, diagnostic.message) not in seen:
                seen.add((diagnostic.path, diagnostic.message))
                diagnostics.append(diagnostic)
        if not found and not whole_checked:
            # One task is valid as a whole: the others need only their rendered values checked.
            whole_checked = True
            leaves = schema.leaf_validator("task", compiled.templated, TEMPLATE, compiled.text_paths)
        rendered_tasks.append(task)
    return rendered_tasks, compiled.templated


def _duration(value: Any, default: timedelta | None = None) -> timedelta | None:
    return parse_duration(value) if isinstance(value, str) else default


def _resource_file(raw: dict[str, Any]) -> spec.ResourceFile:
    return spec.ResourceFile(
        container=raw.get("container"),
        blob=raw.get("blob"),
        prefix=raw.get("prefix"),
        url=raw.get("url"),
        path=raw.get("path"),
        mode=raw.get("mode"),
    )


def _environment(raw: Any) -> dict[str, str]:
    def text(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    return {str(k): text(v) for k, v in (raw or {}).items()}


def _declared_outputs(raw: Any, default_container: str | None) -> tuple[spec.DeclaredOutput, ...]:
    """``outputs:`` items: a string names a blob of the download container (checks made sure there is one)."""
    found = []
    for item in raw or []:
        if isinstance(item, str):
            found.append(spec.DeclaredOutput(default_container or "", item))
        else:
            found.append(spec.DeclaredOutput(item["container"], item["name"]))
    return tuple(found)


# How each key of a rendered task becomes fields of spec.Task: ``part(values, download container)``
# takes the key's value in each task (None where the key is absent) and returns, for each field it
# sets, that field's value in each task. A sweep converts the keys its template never varies once,
# for the first task, and the others a column at a time.
_Part = Callable[[list[Any], Optional[str]], dict[str, list[Any]]]


def _as_is(field: str) -> _Part:
    """The part for a key whose value is the field's value."""
    return lambda values, _: {field: values}


def _each(field: str, convert: Callable[[Any], Any]) -> _Part:
    """The part for a key whose value, when given and not empty, ``convert`` makes the field's value
    (else the field is an empty tuple)."""
    return lambda values, _: {field: [convert(value) if value else () for value in values]}


def _resource_files(value: list[dict[str, Any]]) -> tuple[spec.ResourceFile, ...]:
    return tuple(map(_resource_file, value))


_make_output_file = spec.maker(spec.OutputFile, ("pattern", "container", "path", "upload_on"))


def _output_file(raw: dict[str, Any]) -> spec.OutputFile:
    return _make_output_file(
        {
            "pattern": raw["pattern"],
            "container": raw["container"],
            "path": raw.get("path"),
            "upload_on": raw.get("upload_on", "success"),
        }
    )


def _output_files(value: list[dict[str, Any]]) -> tuple[spec.OutputFile, ...]:
    return tuple(map(_output_file, value))


def _container_urls(value: dict[str, Any]) -> tuple[spec.ContainerUrl, ...]:
    return tuple(spec.ContainerUrl(name, url["container"], url.get("access", "write")) for name, url in value.items())


def _constraints(values: list[Any], _: str | None) -> dict[str, list[Any]]:
    return {
        "max_wall_clock": [_duration(value.get("max_wall_clock")) if value else None for value in values],
        "retention": [_duration(value.get("retention")) if value else None for value in values],
    }


def _required_slots(values: list[Any], _: str | None) -> dict[str, list[Any]]:
    return {"required_slots": [1 if value is None else value for value in values]}


def _dependencies(value: Any) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
    """``depends_on`` (a list of ids, or ids and ranges) as the task's ids and ranges."""
    if not value:
        return (), ()
    if isinstance(value, list):
        return tuple(value), ()
    return tuple(value.get("ids", ())), tuple((r["from"], r["to"]) for r in value.get("ranges", ()))


def _depends_on(values: list[Any], _: str | None) -> dict[str, list[Any]]:
    pairs = [_dependencies(value) for value in values]
    return {"depends_on_ids": [ids for ids, _ in pairs], "depends_on_ranges": [ranges for _, ranges in pairs]}


def _outputs(values: list[Any], download_container: str | None) -> dict[str, list[Any]]:
    return {"outputs": [_declared_outputs(value, download_container) if value else () for value in values]}


_TASK_PARTS: dict[str, _Part] = {
    "id": _as_is("id"),
    "command": _as_is("command"),
    "display_name": _as_is("display_name"),
    "resource_files": _each("resource_files", _resource_files),
    "output_files": _each("output_files", _output_files),
    "container_urls": _each("container_urls", _container_urls),
    "environment": lambda values, _: {"environment": [_environment(value) for value in values]},
    "constraints": _constraints,
    "retries": _as_is("retries"),
    "required_slots": _required_slots,
    "depends_on": _depends_on,
    "outputs": _outputs,
}


def _tasks(
    tasks_data: list[dict[str, Any]], varying: frozenset[Path_] | None, download_container: str | None
) -> tuple[spec.Task, ...]:
    """The tasks the rendered (and valid) ``tasks_data`` describe.

    ``varying`` holds the paths of the template's strings: a key of the template
    with none below it is the same in every task, so it is converted once, from
    the first task, and its values are shared by all of them (they are read-only).
    The other keys are converted a column at a time (see :data:`_Part`).
    """
    if not tasks_data:
        return ()
    changing = None if varying is None else {path[len(TEMPLATE)] for path in varying if len(path) > len(TEMPLATE)}
    shared: dict[str, Any] = {}
    columns: dict[str, list[Any]] = {}
    for key, part in _TASK_PARTS.items():
        if changing is None or key in changing:
            columns.update(part(list(map(dict.get, tasks_data, repeat(key))), download_container))
        else:
            shared.update(
                {field: values[0] for field, values in part([tasks_data[0].get(key)], download_container).items()}
            )
    make_task = spec.maker(spec.Task, [*shared, *columns])
    names = list(columns)
    rows = zip(*columns.values(), strict=True) if columns else repeat((), len(tasks_data))
    tasks = []
    for row in rows:
        fields = shared.copy()
        fields.update(zip(names, row, strict=True))
        tasks.append(make_task(fields))
    return tuple(tasks)


def _build(
    data: dict[str, Any],
    values: dict[str, Any],
    uploads: list[spec.UploadFile],
    tasks_data: list[dict[str, Any]],
    varying: frozenset[Path_] | None,
    path: Path,
    cwd: Path,
) -> spec.Workflow:
    pool_raw = data["pool"]
    image = pool_raw["image"]
    start_raw = pool_raw.get("start_task")
    start_task = None
    if start_raw:
        start_task = spec.StartTask(
            commands=tuple(start_raw["commands"]),
            resource_files=tuple(_resource_file(r) for r in start_raw.get("resource_files") or []),
            elevation=start_raw.get("user", "nonadmin"),
            wait_for_success=start_raw.get("wait_for_success", True),
            retries=start_raw.get("retries", 0),
            environment=_environment(start_raw.get("environment")),
        )
    nodes = pool_raw.get("nodes") or {}
    pool = spec.Pool(
        id=pool_raw["id"],
        vm_size=pool_raw["vm_size"],
        image=spec.Image(
            image["publisher"], image["offer"], image["sku"], image["node_agent_sku"], image.get("version", "latest")
        ),
        dedicated_nodes=nodes.get("dedicated", 0),
        low_priority_nodes=nodes.get("low_priority", 0),
        task_slots_per_node=pool_raw.get("task_slots_per_node", 1),
        resize_timeout=_duration(pool_raw.get("resize_timeout"), timedelta(minutes=15)) or timedelta(minutes=15),
        reuse=pool_raw.get("reuse", False),
        start_task=start_task,
    )
    download_container = (data.get("download") or {}).get("container")
    tasks = _tasks(tasks_data, varying, download_container)
    job_raw = data["job"]
    constraints = job_raw.get("constraints") or {}
    job = spec.Job(
        id=job_raw["id"],
        priority=job_raw.get("priority", 0),
        max_wall_clock=_duration(constraints.get("max_wall_clock")),
        max_task_retries=constraints.get("max_task_retries", 0),
        on_all_tasks_complete=job_raw.get("on_all_tasks_complete", "noaction"),
        on_task_failure=job_raw.get("on_task_failure", "noaction"),
        environment=_environment(job_raw.get("environment")),
        uses_task_dependencies=any(t.depends_on_ids or t.depends_on_ranges for t in tasks),
    )
    monitor_raw = data.get("monitor") or {}
    monitor = spec.Monitor(
        timeout=_duration(monitor_raw.get("timeout"), timedelta(minutes=20)) or timedelta(minutes=20),
        poll_interval=_duration(monitor_raw.get("poll_interval"), timedelta(seconds=5)) or timedelta(seconds=5),
    )
    download_raw = data.get("download")
    download = None
    if download_raw:
        destination = Path(download_raw["destination"]).expanduser()
        download = spec.Download(
            container=download_raw["container"],
            destination=destination if destination.is_absolute() else cwd / destination,
            prefix=download_raw.get("prefix", ""),
        )
    containers = tuple(spec.Container(c["name"], c.get("purpose", "")) for c in data.get("containers") or [])
    cleanup_raw = data.get("cleanup") or {}
    return spec.Workflow(
        name=data["name"],
        description=str(data.get("description", "")).strip(),
        path=path,
        variables=dict(values),
        containers=containers,
        uploads=tuple(uploads),
        pool=pool,
        job=job,
        tasks=tasks,
        monitor=monitor,
        download=download,
        cleanup=spec.Cleanup(
            containers=checks.container_policies(cleanup_raw.get("containers"), [c.name for c in containers]),  # type: ignore[arg-type]
            job=cleanup_raw.get("job", "ask"),
            pool=cleanup_raw.get("pool", "ask"),
        ),
        cache=data.get("cache", True),
    )
