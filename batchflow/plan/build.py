"""Describe the nine steps of a workflow with concrete values, as plain data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from batchflow.durations import format_duration
from batchflow.model.spec import ResourceFile, Task, Workflow, to_plain

#: How many tasks a plan shows in full, then how many more by id and action; the rest are counted.
SHOWN_TASKS = 3
LISTED_TASKS = 20

#: The nine steps, in order: (key, title). ``apply`` runs them in this order.
STEPS: tuple[tuple[str, str], ...] = (
    ("containers", "create containers"),
    ("uploads", "upload files"),
    ("pool", "create pool"),
    ("job", "create job"),
    ("tasks", "add tasks"),
    ("monitor", "monitor tasks"),
    ("download", "download outputs"),
    ("delete_containers", "delete containers"),
    ("delete_job_pool", "delete job and pool"),
)


@dataclass(frozen=True)
class PlannedStep:
    """One step: its number and key, a one-line summary, detail lines, and the same as data."""

    number: int
    key: str
    title: str
    summary: str
    details: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.number, "key": self.key, "title": self.title, "summary": self.summary, **self.data}


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


def _resource(resource: ResourceFile) -> str:
    if resource.url:
        source = resource.url
    elif resource.blob is not None:
        source = f"{resource.container}/{resource.blob} (read SAS)"
    else:
        source = f"{resource.container}/{resource.prefix}* (read SAS)"
    target = resource.path or "."
    mode = f" mode {resource.mode}" if resource.mode else ""
    return f"{source} -> {target}{mode}"


def _task_lines(task: Task, cached_from: str | None) -> list[str]:
    action = f"cached (from run {cached_from})" if cached_from else "run"
    lines = [f"{task.id} [{action}]: {task.command_line}"]
    lines += [f"    resource {_resource(r)}" for r in task.resource_files]
    lines += [
        f"    output {o.pattern} -> {o.container}/{o.path or ''} (on {o.upload_on}, write SAS)"
        for o in task.output_files
    ]
    lines += [
        f"    env {u.variable} = <SAS URL of {u.container}, {u.access}, made at apply>" for u in task.container_urls
    ]
    lines += [f"    produces {o.container}/{o.name}" for o in task.outputs]
    return lines


def describe(
    workflow: Workflow, *, declared: dict[str, str] | None = None, cached: dict[str, str] | None = None
) -> list[PlannedStep]:
    """The nine steps of ``workflow``, in order, with everything concrete filled in.

    Of the tasks, only the first :data:`SHOWN_TASKS` are read in full; the others only by id
    (``plan`` renames just the tasks it shows for the run, and relies on that).

    :param declared: physical container name -> the name the file declares, shown beside it.
    :param cached: task id -> the earlier run whose outputs it would reuse instead of running.
    """
    w = workflow
    declared = declared or {}
    cached = cached or {}

    def named(container: str) -> str:
        logical = declared.get(container)
        return f"{container} (declared as {logical})" if logical and logical != container else container

    steps: list[PlannedStep] = []

    def add(summary: str, details: list[str], data: dict[str, Any]) -> None:
        key, title = STEPS[len(steps)]
        steps.append(PlannedStep(len(steps) + 1, key, title, summary, details, data))

    add(
        ", ".join(c.name for c in w.containers) or "none declared",
        [f"{named(c.name)}: {c.purpose}" if c.purpose else named(c.name) for c in w.containers],
        {
            "containers": [c.name for c in w.containers],
            "declared_as": {c.name: declared.get(c.name, c.name) for c in w.containers},
        },
    )
    total = sum(u.size for u in w.uploads)
    add(
        f"{len(w.uploads)} file(s), {_size(total)}",
        [f"{u.local_path} -> {u.container}/{u.blob_name} ({_size(u.size)})" for u in w.uploads],
        {
            "files": [
                {"path": str(u.local_path), "container": u.container, "blob": u.blob_name, "size": u.size}
                for u in w.uploads
            ]
        },
    )
    p = w.pool
    nodes = f"{p.dedicated_nodes} dedicated + {p.low_priority_nodes} low-priority"
    pool_details = [
        f"vm size {p.vm_size}, {nodes} node(s), {p.task_slots_per_node} task slot(s) per node",
        f"image {p.image.publisher}/{p.image.offer}/{p.image.sku}/{p.image.version}, node agent {p.image.node_agent_sku}",
        "reuse an existing pool with this id if it matches" if p.reuse else "create a new pool",
    ]
    if p.start_task:
        st = p.start_task
        pool_details.append(
            f"start task ({st.elevation} user, wait for success: {'yes' if st.wait_for_success else 'no'}, "
            f"retries {st.retries}): {st.command_line}"
        )
        pool_details += [f"    resource {_resource(r)}" for r in st.resource_files]
    add(f"{p.id} ({p.vm_size}, {nodes})", pool_details, {"pool": to_plain(asdict(p))})
    j = w.job
    job_details = [f"pool {p.id}, priority {j.priority}, max task retries {j.max_task_retries}"]
    if j.max_wall_clock:
        job_details.append(f"max wall clock {format_duration(j.max_wall_clock)}")
    job_details.append(f"when all tasks complete: {j.on_all_tasks_complete}; on task failure: {j.on_task_failure}")
    add(j.id, job_details, {"job": to_plain(asdict(j))})
    task_details = []
    for task in w.tasks[:SHOWN_TASKS]:
        task_details += _task_lines(task, cached.get(task.id))
    listed = w.tasks[SHOWN_TASKS : SHOWN_TASKS + LISTED_TASKS]
    task_details += [
        f"{t.id} [{'cached (from run ' + cached[t.id] + ')' if t.id in cached else 'run'}]" for t in listed
    ]
    if len(w.tasks) > SHOWN_TASKS + LISTED_TASKS:
        task_details.append(f"... and {len(w.tasks) - SHOWN_TASKS - LISTED_TASKS} more")
    in_cache = sum(1 for t in w.tasks if t.id in cached)
    add(
        f"{len(w.tasks)} task(s): {len(w.tasks) - in_cache} to run, {in_cache} cached",
        task_details,
        {
            "count": len(w.tasks),
            "run": len(w.tasks) - in_cache,
            "cached": in_cache,
            "cached_from": dict(cached),
            "first": [{"id": t.id, "command_line": t.command_line} for t in w.tasks[:SHOWN_TASKS]],
        },
    )
    m = w.monitor
    add(
        f"up to {format_duration(m.timeout)}, polling every {format_duration(m.poll_interval)}",
        [],
        {"timeout": format_duration(m.timeout), "poll_interval": format_duration(m.poll_interval)},
    )
    d = w.download
    if d:
        add(
            f"{d.container}/{d.prefix}* -> {d.destination}",
            [],
            {"container": d.container, "prefix": d.prefix, "destination": str(d.destination)},
        )
    else:
        add("nothing to download", [], {})
    add(
        ", ".join(f"{name}: {policy}" for name, policy in w.cleanup.containers.items()) or "no containers",
        [],
        {"containers": dict(w.cleanup.containers)},
    )
    add(
        f"job {j.id}: {w.cleanup.job}; pool {p.id}: {w.cleanup.pool}",
        [],
        {"job": w.cleanup.job, "pool": w.cleanup.pool},
    )
    return steps
