"""Step 6: watch the tasks until all complete, then explain every failure with its stderr.

Each poll reads the job's task counts, one small request whatever the number
of tasks; the completed tasks are listed only when that count has moved, and
only the transitions are appended to the state's task journal.
"""

from __future__ import annotations

import time
from datetime import timezone
from typing import Any

from azure.batch import models

from batchflow.cloud.batch import enum_value
from batchflow.errors import RunFailed
from batchflow.state import TaskRecord, redact_secrets
from batchflow.steps.context import RunContext

#: While no task runs, how often the monitor checks that the pool still exists.
POOL_CHECK_SECONDS = 15.0


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_of(task: models.BatchTask) -> TaskRecord:
    """What the state keeps of a completed task."""
    info = task.execution_info
    failure = None
    if info is not None and info.failure_info is not None:
        f = info.failure_info
        # The service may quote a resource file's URL, SAS included, in the message.
        failure = {"category": enum_value(f.category), "code": f.code, "message": redact_secrets(f.message or "")}
    return TaskRecord(
        task_id=task.id,
        state=enum_value(task.state) or "completed",
        exit_code=info.exit_code if info else None,
        result=enum_value(info.result) if info else None,
        retry_count=info.retry_count or 0 if info else 0,
        node_id=task.node_info.node_id if task.node_info else None,
        start_time=_iso(info.start_time) if info else None,
        end_time=_iso(info.end_time) if info else None,
        failure=failure,
    )


def run(ctx: RunContext) -> dict[str, Any]:
    job_id = ctx.workflow.job.id
    total = len(ctx.workflow.tasks)
    timeout = ctx.workflow.monitor.timeout.total_seconds()
    interval = ctx.workflow.monitor.poll_interval.total_seconds()
    deadline = time.monotonic() + timeout
    ours = {t.id.lower() for t in ctx.workflow.tasks}
    known_completed = sum(1 for r in ctx.state.tasks.values() if r.state == "completed")
    progress = ctx.report.progress("tasks", total, "task")
    next_pool_check = time.monotonic() + POOL_CHECK_SECONDS
    try:
        while True:
            counts = ctx.batch.task_counts(job_id)
            if counts.completed != known_completed:
                finished = [record_of(t) for t in ctx.batch.completed_tasks(job_id) if t.id.lower() in ours]
                ctx.store.record_tasks(finished)
                known_completed = counts.completed
                ctx.checkpoint()
            if ctx.store.journal_length > total:
                ctx.store.compact()  # keep the journal short during a long watch
            progress.update(
                counts.completed, f"{counts.running} running, {counts.active} waiting, {counts.failed} failed"
            )
            if counts.completed >= total and counts.active == 0 and counts.running == 0:
                break
            if counts.running == 0 and counts.active and time.monotonic() > next_pool_check:
                # Nothing runs: make sure the pool is still there, or this would wait out the timeout.
                pool = ctx.batch.get_pool(ctx.workflow.pool.id)
                if pool is None or enum_value(pool.state) == "deleting":
                    raise RunFailed(
                        f"pool {ctx.workflow.pool.id} no longer exists, so {counts.active} task(s) cannot run; "
                        "run the same command again to create it and carry on"
                    )
                next_pool_check = time.monotonic() + POOL_CHECK_SECONDS
            if time.monotonic() > deadline:
                raise RunFailed(
                    f"the monitor timeout ({ctx.workflow.monitor.timeout}) passed with {counts.completed} of {total} "
                    f"tasks complete ({counts.running} running, {counts.active} waiting); run the same command to keep waiting"
                )
            time.sleep(interval)
    finally:
        progress.close()
    if any(t.id not in ctx.state.tasks for t in ctx.workflow.tasks):
        # The counts said done before the listing showed every task: list once more.
        ctx.store.record_tasks(record_of(t) for t in ctx.batch.completed_tasks(job_id) if t.id.lower() in ours)
    records = [ctx.state.tasks[t.id] for t in ctx.workflow.tasks if t.id in ctx.state.tasks]
    failed = [r for r in records if r.result != "success"]
    summary = {"total": total, "succeeded": len(records) - len(failed), "failed": len(failed)}
    ctx.report.note(f"{summary['succeeded']} succeeded, {summary['failed']} failed")
    return summary
