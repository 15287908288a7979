"""Step 5: add the tasks; after an interruption only the missing ones are added."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from batchflow.cloud.batch import enum_value, task_options
from batchflow.steps.context import RunContext

#: Tasks are given fresh tokens on resume when theirs expire within this time.
TOKEN_SLACK = timedelta(minutes=10)

#: Tasks built and sent per round; the SDK splits each round into requests of 100.
#: Rounds bound memory (SAS URLs are made per round) and give progress.
ROUND = 1000


def run(ctx: RunContext) -> dict[str, Any]:
    job_id = ctx.workflow.job.id
    present = {task_id.lower() for task_id in ctx.batch.task_ids(job_id)}
    missing = [t for t in ctx.workflow.tasks if t.id.lower() not in present]
    progress = ctx.report.progress("adding tasks", len(missing), "task")
    expiry = None
    try:
        for start in range(0, len(missing), ROUND):
            urls = ctx.urls()
            expiry = expiry or urls.expiry
            chunk = missing[start : start + ROUND]
            ctx.batch.add_tasks(job_id, [task_options(t, urls) for t in chunk])
            progress.update(start + len(chunk))
            ctx.checkpoint()
    finally:
        progress.close()
    if ctx.workflow.job.on_all_tasks_complete == "terminatejob":
        job = ctx.batch.get_job(job_id)
        already = job is not None and (
            enum_value(job.all_tasks_complete_mode) == "terminatejob" or enum_value(job.state) != "active"
        )
        if not already:  # a resumed run may find it set, or the job already finished
            ctx.batch.terminate_job_when_tasks_complete(job_id)
    existing = len(ctx.workflow.tasks) - len(missing)
    ctx.report.note(f"{len(missing)} added, {existing} already in job {job_id}")
    summary: dict[str, Any] = {"added": len(missing), "existing": existing, "total": len(ctx.workflow.tasks)}
    if expiry is not None:
        # The earliest expiry among the tokens handed out; a resume checks it (see refresh_tokens).
        summary["tokens_expire"] = expiry.isoformat()
    return summary


def refresh_tokens(ctx: RunContext, summary: dict[str, Any]) -> int:
    """Re-add the tasks that have not started yet with fresh SAS tokens, if theirs expire soon.

    A run resumed after a long pause (a laptop that slept, a weekend) would
    otherwise hand queued tasks URLs that no longer work. A task that has not
    started is deleted and added again with new tokens; nothing it did is lost.
    Returns how many tasks were re-added.
    """
    expires = summary.get("tokens_expire")
    if not expires or datetime.fromisoformat(expires) - datetime.now(timezone.utc) > TOKEN_SLACK:
        return 0
    job_id = ctx.workflow.job.id
    queued = {task_id.lower() for task_id in ctx.batch.task_ids(job_id, state="active")}
    stale = [t for t in ctx.workflow.tasks if t.id.lower() in queued]
    urls = ctx.urls()
    for start in range(0, len(stale), ROUND):
        chunk = stale[start : start + ROUND]
        for task in chunk:
            ctx.batch.delete_task(job_id, task.id)
        ctx.batch.add_tasks(job_id, [task_options(t, urls) for t in chunk])
    summary["tokens_expire"] = urls.expiry.isoformat()
    return len(stale)
