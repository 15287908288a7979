"""Steps 8 and 9: delete containers, then the job and the pool, as the cleanup policy says.

``ask`` asks only on a terminal; ``--yes`` answers yes; with no terminal and
no ``--yes``, the resource is kept and the output says so. Only what this run
created is deleted: a container that was there before, or a pool reused from
elsewhere, is kept and the output says so.
"""

from __future__ import annotations

from typing import Any

from batchflow.cloud.batch import BatchService
from batchflow.steps.context import RunContext


def _decide(ctx: RunContext, policy: str, what: str) -> bool:
    if policy == "delete":
        return True
    if policy == "keep":
        return False
    if ctx.assume_yes:
        return True
    answer = ctx.report.confirm(f"Delete {what}?")
    if answer is None:
        ctx.report.note(f"kept {what} (cleanup says ask, and there is no terminal; pass --yes to delete)")
        return False
    return answer


def delete_containers(ctx: RunContext) -> dict[str, Any]:
    deleted, kept = [], []
    made = ctx.resources("containers")
    for name, policy in ctx.workflow.cleanup.containers.items():
        if policy != "keep" and made.get(name) != "created":
            ctx.report.note(f"kept container {name}: it existed before this run")
            kept.append(name)
        elif _decide(ctx, policy, f"container {name}"):
            ctx.blobs.delete_container(name)
            ctx.resources("containers")[name] = "deleted"
            deleted.append(name)
        else:
            kept.append(name)
        ctx.save()
    ctx.report.note(f"deleted: {', '.join(deleted) or 'none'}; kept: {', '.join(kept) or 'none'}")
    return {"deleted": deleted, "kept": kept}


def delete_job_and_pool(ctx: RunContext) -> dict[str, Any]:
    cleanup = ctx.workflow.cleanup
    summary: dict[str, Any] = {}
    job_id, pool_id = ctx.workflow.job.id, ctx.workflow.pool.id
    if _decide(ctx, cleanup.job, f"job {job_id}"):
        ctx.batch.delete_job(job_id)
        ctx.resources("job")["deleted"] = True
        summary["job"] = "deleted"
    else:
        summary["job"] = "kept"
    ctx.save()
    pool_record = ctx.resources("pool")
    users = [] if cleanup.pool == "keep" else pool_users(ctx.batch, pool_id, job_id)
    if not pool_record.get("created") and not pool_record.get("kept_from"):
        ctx.report.note(f"kept pool {pool_id}: this run reused it and did not create it")
        summary["pool"] = "kept"
    elif users:
        ctx.report.note(f"kept pool {pool_id}: still in use by {users}")
        summary["pool"] = "kept"
    elif _decide(ctx, cleanup.pool, f"pool {pool_id}"):
        ctx.batch.delete_pool(pool_id)
        pool_record["deleted"] = True
        summary["pool"] = "deleted"
    else:
        summary["pool"] = "kept"
    ctx.save()
    ctx.report.note(f"job {job_id}: {summary['job']}; pool {pool_id}: {summary['pool']}")
    return summary


def pool_users(batch: BatchService, pool_id: str, own_job: str) -> str:
    """Who else runs on the pool, in words (``run topwords-0a1b2c3d4e (job …)``); empty when nobody.

    Runs may share a pool, so a run's cleanup or ``destroy`` must not pull it
    from under another run's job.
    """
    others = [(job, run) for job, run in batch.jobs_using_pool(pool_id) if job.lower() != own_job.lower()]
    return ", ".join(f"run {run} (job {job})" if run else f"job {job}" for job, run in others)
