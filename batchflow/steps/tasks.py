"""Step 5: add the tasks; after an interruption only the missing ones are added.

Tasks whose outputs the cache can supply are not added: their outputs are put
in this run's containers instead (see batchflow.runner.cache).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from batchflow.cloud.batch import enum_value, task_body
from batchflow.errors import BatchflowError
from batchflow.model.spec import Task
from batchflow.runner.cache import BlobListing, choose
from batchflow.runner.naming import container_name
from batchflow.state import TaskRecord
from batchflow.steps.context import RunContext

#: Tasks are given fresh tokens on resume when theirs expire within this time.
TOKEN_SLACK = timedelta(minutes=10)

#: Tasks built and sent per round; ``BatchService.add_tasks`` splits each round into requests of 100.
#: Rounds bound memory (SAS URLs are made per round) and give progress.
ROUND = 1000

#: Parallel copies or uploads of cached outputs.
WORKERS = 8

#: The read SAS of a cached blob only has to last while the service copies it.
COPY_SAS_LIFETIME = timedelta(hours=1)


def run(ctx: RunContext) -> dict[str, Any]:
    job_id = ctx.workflow.job.id
    present = {task_id.lower() for task_id in ctx.batch.task_ids(job_id)}
    # A task that succeeded in an earlier attempt of this run (or was reused from
    # the cache) is never added again, even to a job that was made anew since.
    succeeded = {r.task_id for r in ctx.state.tasks.values() if r.result == "success"}
    missing = [t for t in ctx.workflow.tasks if t.id.lower() not in present and t.id not in succeeded]
    cached, missing = reuse_cached(ctx, missing)
    progress = ctx.report.progress("adding tasks", len(missing), "task")
    expiry = None
    try:
        for start in range(0, len(missing), ROUND):
            urls = ctx.urls()
            expiry = expiry or urls.expiry
            chunk = missing[start : start + ROUND]
            ctx.batch.add_tasks(job_id, [task_body(t, urls) for t in chunk])
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
    ours = {t.id.lower() for t in ctx.workflow.tasks}
    existing = len(present & ours)
    earlier = len(succeeded)
    parts = [f"{len(missing)} added", f"{existing} already in job {job_id}"]
    if cached:
        parts.append(f"{cached} cached (outputs reused, not run)")
    if earlier:
        parts.append(f"{earlier} succeeded earlier in this run")
    ctx.report.note(", ".join(parts))
    summary: dict[str, Any] = {
        "added": len(missing),
        "existing": existing,
        "cached": cached,
        "total": len(ctx.workflow.tasks),
        # What the job holds of this run's tasks: the monitor waits for these to complete.
        "in_job": existing + len(missing),
    }
    if expiry is not None:
        # The earliest expiry among the tokens handed out; a resume checks it (see refresh_tokens).
        summary["tokens_expire"] = expiry.isoformat()
    return summary


def reuse_cached(ctx: RunContext, candidates: list[Task]) -> tuple[int, list[Task]]:
    """Satisfy what the cache can: put the earlier outputs in this run's containers and record the
    tasks as succeeded, without running them. Returns how many were reused, and the tasks left to add.

    Each reuse is recorded only after its blobs are in place, so a process killed
    midway reuses (or runs) the rest on resume, and never records a task whose
    outputs are missing.
    """
    if ctx.cache is None or not candidates:
        return 0, candidates
    listing = BlobListing(ctx.blobs.list_blobs)
    chosen = choose(candidates, ctx.cache_keys, ctx.cache, listing)
    if not chosen:
        return 0, candidates
    expiry = datetime.now(timezone.utc) + COPY_SAS_LIFETIME

    def one(task: Task) -> TaskRecord:
        entry, how = chosen[task.id]
        for blob in entry.blobs:
            target = container_name(blob.logical, ctx.run)
            if how == "copy":
                if blob.container != target:
                    ctx.blobs.copy_blob(blob.container, blob.name, target, expiry)
            else:
                assert blob.file and blob.file_md5
                ctx.blobs.upload(Path(blob.file), target, blob.name, bytes.fromhex(blob.file_md5))
        return TaskRecord(task.id, state="completed", exit_code=0, result="success", cached_from=entry.run)

    reused: list[TaskRecord] = []
    failed: list[Task] = []
    progress = ctx.report.progress("reusing cached outputs", len(chosen), "task")
    pool = ThreadPoolExecutor(max_workers=WORKERS)
    futures = {pool.submit(one, t): t for t in candidates if t.id in chosen}
    try:
        for done, future in enumerate(as_completed(futures), start=1):
            try:
                reused.append(future.result())
            except BatchflowError as error:
                ctx.report.warn(
                    f"cannot reuse the cached outputs of task {futures[future].id}, so it runs: {error.message}"
                )
                failed.append(futures[future])
            progress.update(done)
            if len(reused) >= ROUND:
                ctx.store.record_tasks(reused)
                reused = []
            ctx.checkpoint()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        progress.close()
    ctx.store.record_tasks(reused)
    runs = sorted({entry.run for entry, _ in chosen.values()})
    ctx.report.note(f"{len(chosen) - len(failed)} task(s) reused from the cache (runs {', '.join(runs)})")
    rest = [t for t in candidates if t.id not in chosen or t in failed]
    return len(chosen) - len(failed), rest


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
        ctx.batch.add_tasks(job_id, [task_body(t, urls) for t in chunk])
    summary["tokens_expire"] = urls.expiry.isoformat()
    return len(stale)
