"""Step 5: add the tasks; after an interruption only the missing ones are added."""

from __future__ import annotations

from typing import Any

from batchflow.cloud.batch import enum_value, task_options
from batchflow.steps.context import RunContext

#: Tasks built and sent per round; the SDK splits each round into requests of 100.
#: Rounds bound memory (SAS URLs are made per round) and give progress.
ROUND = 1000


def run(ctx: RunContext) -> dict[str, Any]:
    job_id = ctx.workflow.job.id
    present = {task_id.lower() for task_id in ctx.batch.task_ids(job_id)}
    missing = [t for t in ctx.workflow.tasks if t.id.lower() not in present]
    progress = ctx.report.progress("adding tasks", len(missing), "task")
    try:
        for start in range(0, len(missing), ROUND):
            urls = ctx.urls()
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
    return {"added": len(missing), "existing": existing, "total": len(ctx.workflow.tasks)}
