"""What a run did, in numbers: the end-of-run summary, and the task rows behind the run report.

Everything here is computed from the run's state (step times, task records) and
the files the run folder holds (``downloads.json``, ``failures.json``); it makes
no request, so a summary costs nothing per task beyond reading the state.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from batchflow.model.spec import Workflow
from batchflow.plan.build import STEPS
from batchflow.state import RunState, TaskRecord

#: How many of the slowest tasks the summary names.
SLOWEST = 5

REPORT_FILE = "report.html"
FAILURES_FILE = "failures.json"
DOWNLOADS_FILE = "downloads.json"


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time from the state (``...Z`` or ``+00:00``), or None."""
    if not text:
        return None
    return datetime.fromisoformat(text)


#: Each task's start and end (task id -> (start, end)), from :func:`task_times`.
Times = dict[str, tuple[datetime | None, datetime | None]]


def task_times(state: RunState) -> Times:
    """Each task's start and end as times, parsed once for everything a summary and a report compute
    from them (a 100,000-task report parsed each time about ten times)."""
    return {task_id: (parse_time(r.start_time), parse_time(r.end_time)) for task_id, r in state.tasks.items()}


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end``, when both are known: a task's duration."""
    return (end - start).total_seconds() if start and end else None


def outcome(record: TaskRecord | None) -> str:
    """``succeeded``, ``cached``, ``failed``, or ``unfinished`` (queued, running, or never added)."""
    if record is None or record.state != "completed":
        return "unfinished"
    if record.result == "success":
        return "cached" if record.cached_from else "succeeded"
    return "failed"


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


@dataclass
class Summary:
    """The end-of-run summary: printed by ``apply``, shown at the top of the report, and ``--output json``."""

    workflow: str
    run: str
    target: str
    pool: str
    job: str
    image: str
    vm_size: str
    start: str | None
    end: str | None
    elapsed: float | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[str, int] = field(default_factory=dict)
    slowest: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    report: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(workflow: Workflow, state: RunState, run_dir: Path, target: str, times: Times | None = None) -> Summary:
    """The summary of ``state``; ``workflow`` carries the run's physical names; ``times`` are
    :func:`task_times` of ``state``, when the caller has them already."""
    times = task_times(state) if times is None else times
    titles = dict(STEPS)
    steps = []
    starts, ends = [], []
    for key, record in state.steps.items():
        started, finished = parse_time(record.started), parse_time(record.finished)
        starts += [started] if started else []
        ends += [finished] if finished else []
        seconds = (finished - started).total_seconds() if started and finished and finished >= started else None
        steps.append({"key": key, "title": titles.get(key, key), "status": record.status, "seconds": seconds})
    start, end = (min(starts) if starts else None), (max(ends) if ends else None)

    counts = {"total": len(workflow.tasks), "succeeded": 0, "cached": 0, "failed": 0, "unfinished": 0}
    timed = []
    for task in workflow.tasks:
        record = state.tasks.get(task.id)
        counts[outcome(record)] += 1
        seconds = seconds_between(*times[task.id]) if record is not None and not record.cached_from else None
        if seconds is not None:
            timed.append((seconds, task.id, record.node_id if record else None))
    timed.sort(key=lambda item: (-item[0], item[1]))
    slowest = [{"task": task_id, "seconds": seconds, "node": node} for seconds, task_id, node in timed[:SLOWEST]]

    download = state.steps.get("download")
    listing = read_json(run_dir / DOWNLOADS_FILE, [])
    outputs = {
        "files": len(listing),
        "bytes": sum(item.get("size", 0) for item in listing),
        "folder": (download.summary.get("destination") if download else None)
        or (str(workflow.download.destination) if workflow.download else None),
    }
    image = workflow.pool.image
    return Summary(
        workflow=workflow.name,
        run=state.run,
        target=target,
        pool=workflow.pool.id,
        job=workflow.job.id,
        image=f"{image.publisher}/{image.offer}/{image.sku}/{image.version} ({image.node_agent_sku})",
        vm_size=workflow.pool.vm_size,
        start=start.isoformat() if start else None,
        end=end.isoformat() if end else None,
        elapsed=(end - start).total_seconds() if start and end else None,
        steps=steps,
        tasks=counts,
        slowest=slowest,
        outputs=outputs,
        report=str((run_dir / REPORT_FILE).resolve()),
    )


#: Step names short enough for one line of timings.
SHORT = {"delete_containers": "cleanup of containers", "delete_job_pool": "cleanup of job and pool"}


def short_node(name: str) -> str:
    """A node id short enough for a line of text (local node ids are long hashes)."""
    return name if len(name) <= 24 else f"{name[:10]}…{name[-10:]}"


def seconds_text(value: float | None) -> str:
    """``40 ms``, ``2.5 s``, ``12 s``, ``3 min 5 s``, ``2 h 10 min``; ``-`` when unknown."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 10:
        return f"{value:.1f} s"
    if value < 60:
        return f"{value:.0f} s"
    minutes, seconds = divmod(int(round(value)), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def size_text(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


def summary_lines(summary: Summary) -> list[str]:
    """The summary as the lines ``apply`` prints at the end of a run."""
    tasks = summary.tasks
    lines = [f"elapsed {seconds_text(summary.elapsed)}: " + ", ".join(
        f"{SHORT.get(step['key'], step['key'])} {seconds_text(step['seconds'])}"
        for step in summary.steps if step["seconds"] is not None
    )]  # fmt: skip
    lines.append(
        f"tasks: {tasks.get('succeeded', 0):,} succeeded, {tasks.get('failed', 0):,} failed, "
        f"{tasks.get('cached', 0):,} cached"
        + (f", {tasks['unfinished']:,} unfinished" if tasks.get("unfinished") else "")
    )
    if summary.slowest:
        lines.append(
            "slowest: "
            + ", ".join(
                f"{item['task']} {seconds_text(item['seconds'])}"
                + (f" on {short_node(item['node'])}" if item["node"] else "")
                for item in summary.slowest[:3]
            )
        )
    outputs = summary.outputs
    if outputs.get("folder"):
        lines.append(f"outputs: {outputs['files']:,} file(s), {size_text(outputs['bytes'])}, in {outputs['folder']}")
    if summary.report:
        lines.append(f"report: {summary.report}")
    return lines
