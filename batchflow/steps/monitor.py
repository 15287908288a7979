"""Step 6: watch the tasks until all complete, then explain every failure with its stderr.

Each poll reads the job's task counts, one small request whatever the number
of tasks. Only when the completed count has moved are completed tasks listed,
and then only those whose state changed at or after the latest change already
seen (``stateTransitionTime ge``, on the service's own clock, so the client's
clock never matters). Tasks that share that latest timestamp come back once
more and are dropped as already known; only transitions reach the journal.
On Azure, polls come every ``monitor.poll_interval``. Locally, where a poll
costs a few milliseconds, they come every ``LOCAL_POLL_SECONDS`` while the
counts move, every ``LOCAL_TAIL_POLL_SECONDS`` near the end (so that the end
is noticed within that time), and twice as far apart after each poll that saw
no change, up to ``LOCAL_IDLE_POLL_SECONDS``, so that watching long tasks costs
next to nothing; listings wait ``LOCAL_LISTING_SECONDS`` for each other until
the end is near, and from then on follow every change of the count, so that the
listing at the end holds the last few tasks, not the last second's worth. The
end is near once no task waits, or once the tasks left would complete within a
listing's wait at the pace of the last two polls.

A listing can lag behind the counts, so a task may turn up with a time older
than one already seen. The monitor counts the completed tasks it has listed:
when that falls short of the service's count, it lists again from
``LOOKBACK`` earlier, and when that is still short, everything completed.

The state keeps each completed task's ``stateTransitionTime`` with its
record, so the watermark is as durable as the records it covers and never
ahead of them. A monitor resumed after a kill counts the tasks recorded as
completed in this job as listed and goes on from the newest of their times:
it fetches what changed since, not every completed task again. Only the
first monitor of a job, with nothing recorded yet, lists from the start.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from batchflow.cloud.batch import CompletedTask, enum_value
from batchflow.errors import RunFailed
from batchflow.runner.cache import BlobListing, CachedBlob, Entry
from batchflow.state import TaskRecord, redact_secrets
from batchflow.steps.context import RunContext

#: While no task runs, how often the monitor checks that the pool still exists.
POOL_CHECK_SECONDS = 15.0
#: How far back a listing looks again when the counts show tasks it missed.
LOOKBACK = timedelta(minutes=2)
#: Locally, how often the counts are read while they move (see the module's docstring).
LOCAL_POLL_SECONDS = 0.2
#: Locally, the same once no task waits: the end is near and should be noticed at once.
LOCAL_TAIL_POLL_SECONDS = 0.1
#: Locally, the longest wait between polls, reached while nothing changes.
LOCAL_IDLE_POLL_SECONDS = 1.0
#: Locally, completed tasks are listed at most this often. The counts, read at every poll,
#: notice the end at once; the records only have to reach the state, and each listing costs
#: the runner a request whatever it returns.
LOCAL_LISTING_SECONDS = 1.0


def _iso(text: str | None) -> str | None:
    """A time from the service as the state writes times: UTC to the millisecond, with a ``Z``.

    The service writes UTC with a ``Z`` and at least milliseconds (Azure sends seven
    digits), which only needs cutting; any other form goes through ``datetime``.
    """
    if not text:
        return None
    if len(text) >= 24 and text[-1] == "Z" and text[19] == "." and text[20:23].isdigit():
        return text[:23] + "Z"
    return (
        datetime.fromisoformat(text).astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def record_of(task: CompletedTask) -> TaskRecord:
    """What the state keeps of a completed task."""
    failure = None
    if task.failure_info is not None:
        f = task.failure_info
        # The service may quote a resource file's URL, SAS included, in the message.
        failure = {
            "category": f.get("category"),
            "code": f.get("code"),
            "message": redact_secrets(f.get("message") or ""),
        }
    # A 100,000-task run holds a record of each: its state, result and node, a handful of distinct
    # values, are kept once each rather than once per task (a quarter of what the records took).
    return TaskRecord(
        task_id=task.id,
        state=sys.intern(task.state),
        exit_code=task.exit_code,
        result=sys.intern(task.result) if task.result is not None else None,
        retry_count=task.retry_count,
        node_id=sys.intern(task.node_id) if task.node_id is not None else None,
        start_time=_iso(task.start_time),
        end_time=_iso(task.end_time),
        failure=failure,
        requeue_count=task.requeue_count,
        transition_time=task.state_transition_time,
    )


class _CompletedListing:
    """The completed tasks of one job, listed incrementally; see the module's docstring.

    ``job_created`` (the job's creation time, on the service's clock) resumes
    from the tasks the state recorded as completed in this job; without it,
    the first listing lists everything completed.
    """

    def __init__(self, ctx: RunContext, ours: set[str], job_created: datetime | None = None) -> None:
        self.ctx = ctx
        self.ours = ours
        self.seen: set[str] = set()  # our tasks known to be completed in this job
        self.since: datetime | None = None  # the latest stateTransitionTime known
        self.requests = 0
        self.records = 0
        if job_created is not None:
            self._resume(job_created)

    def _resume(self, job_created: datetime) -> None:
        """Count what the state recorded as completed in this job as listed, and go on from its newest time.

        A record older than the job comes from an earlier job of the same id,
        deleted since (a retry, or a job made anew): this job's counts do not
        include it, so counting it would hide a task the listing has not shown yet.
        """
        for record in self.ctx.state.tasks.values():
            if record.state != "completed" or record.transition_time is None:
                continue
            moment = datetime.fromisoformat(record.transition_time)
            if moment < job_created or record.task_id.lower() not in self.ours:
                continue
            self.seen.add(record.task_id.lower())
            if self.since is None or moment > self.since:
                self.since = moment

    def catch_up(self, completed: int) -> None:
        """List what completed since the last call, until ``completed`` tasks are accounted for."""
        self.fetch(self.since)
        if len(self.seen) < completed and self.since is not None:
            self.fetch(self.since - LOOKBACK)
        if len(self.seen) < completed:
            self.fetch(None)

    def fetch(self, since: datetime | None) -> None:
        """List the completed tasks whose state changed at or after ``since`` (all, with None); record them."""
        self.requests += 1
        records = []
        for task in self.ctx.batch.completed_tasks(self.ctx.workflow.job.id, since):
            self.records += 1
            changed_at = task.changed_at
            if changed_at is not None and (self.since is None or changed_at > self.since):
                self.since = changed_at
            if task.id.lower() in self.ours:
                self.seen.add(task.id.lower())
                records.append(record_of(task))
        self.ctx.store.record_tasks(records)


def run(ctx: RunContext) -> dict[str, Any]:
    job_id = ctx.workflow.job.id
    total = len(ctx.workflow.tasks)
    # The job may hold fewer than all tasks: cached ones, and ones that succeeded
    # before the job was made anew, complete outside it.
    in_job = ctx.state.steps["tasks"].summary.get("in_job", total)
    outside = total - in_job
    timeout = ctx.workflow.monitor.timeout.total_seconds()
    interval = ctx.workflow.monitor.poll_interval.total_seconds()
    listing_gap = 0.0
    fastest = tail = slowest = interval
    if ctx.batch.is_local:
        fastest, tail = min(interval, LOCAL_POLL_SECONDS), min(interval, LOCAL_TAIL_POLL_SECONDS)
        slowest = min(interval, LOCAL_IDLE_POLL_SECONDS)
        listing_gap = LOCAL_LISTING_SECONDS
    wait = fastest
    seen: tuple[int, int, int] | None = None
    deadline = time.monotonic() + timeout
    listing = _CompletedListing(ctx, {t.id.lower() for t in ctx.workflow.tasks}, _job_created(ctx))
    known_completed = -1
    next_listing = 0.0
    polls = 0
    pace = 0.0  # tasks completing per second, between the last two polls
    before: tuple[float, int] | None = None  # the last poll's time and completed count
    progress = ctx.report.progress("tasks", total, "task")
    next_pool_check = time.monotonic() + POOL_CHECK_SECONDS
    try:
        while True:
            polled = time.monotonic()
            counts = ctx.batch.task_counts(job_id)
            polls += 1
            now = (counts.active, counts.running, counts.completed)
            if before is not None and polled > before[0]:
                pace = max(0, counts.completed - before[1]) / (polled - before[0])
            before = (polled, counts.completed)
            near_end = counts.active == 0 or counts.active + counts.running <= pace * listing_gap
            if now != seen:
                wait = tail if near_end else fastest
            else:
                wait = min(wait * 2, slowest)
            seen = now
            finished = counts.completed >= in_job and counts.active == 0 and counts.running == 0
            if counts.completed != known_completed and (finished or near_end or time.monotonic() >= next_listing):
                listing.catch_up(counts.completed)
                known_completed = counts.completed
                next_listing = time.monotonic() + listing_gap
                ctx.checkpoint()
            if ctx.store.journal_length > total:
                ctx.store.compact()  # keep the journal short during a long watch
            progress.update(
                outside + counts.completed,
                f"{counts.running} running, {counts.active} waiting, {counts.failed} failed",
            )
            if finished:
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
                    f"the monitor timeout ({ctx.workflow.monitor.timeout}) passed with {counts.completed} of {in_job} "
                    f"tasks complete ({counts.running} running, {counts.active} waiting); run the same command to keep waiting"
                )
            time.sleep(max(0.0, polled + wait - time.monotonic()))
    finally:
        progress.close()
    if any(t.id not in ctx.state.tasks or ctx.state.tasks[t.id].state != "completed" for t in ctx.workflow.tasks):
        # The counts said done before the listing showed every task: list everything once more.
        listing.fetch(None)
    missing_outputs = check_declared_outputs(ctx)
    records = [ctx.state.tasks[t.id] for t in ctx.workflow.tasks if t.id in ctx.state.tasks]
    failed = [r for r in records if r.result != "success"]
    cached = sum(1 for r in records if r.cached_from)
    summary = {"total": total, "succeeded": len(records) - len(failed), "failed": len(failed), "cached": cached}
    # What watching cost, for benchmarks/apply_throughput.py: polls, and task records fetched.
    summary["polls"] = polls
    summary["listings"] = listing.requests
    summary["records_listed"] = listing.records
    if missing_outputs:
        summary["missing_outputs"] = missing_outputs
    note = f"{summary['succeeded']} succeeded ({cached} from the cache), {summary['failed']} failed"
    if missing_outputs:
        note += f", {missing_outputs} of them exited 0 without their declared outputs"
    ctx.report.note(note)
    return summary


def _job_created(ctx: RunContext) -> datetime | None:
    """When the job was created, if the state recorded completed tasks a resumed listing can start from.

    Asked only then: a first attempt has nothing to resume, and saves the request.
    """
    if not any(r.state == "completed" and r.transition_time for r in ctx.state.tasks.values()):
        return None
    job = ctx.batch.get_job(ctx.workflow.job.id)
    return job.creation_time if job is not None else None


def check_declared_outputs(ctx: RunContext) -> int:
    """Fail each succeeded task whose declared outputs are missing; index the others in the cache.

    Batch calls a task that exits 0 a success; a task that promised blobs and
    wrote none did not do its job, and a run built on it would download
    nothing and cache nothing. Returns how many tasks were failed for it.
    """
    listing = BlobListing(ctx.blobs.list_blobs)
    failures, entries = [], []
    for task in ctx.workflow.tasks:
        record = ctx.state.tasks.get(task.id)
        declared = task.declared_outputs
        if record is None or record.result != "success" or not declared:
            continue
        found, missing = [], []
        for output in declared:
            blobs = listing.matching(output)
            (found.extend(blobs) if blobs else missing.append(f"{output.container}/{output.name}"))
        if missing:
            message = "the task exited with 0 but did not produce its declared output(s): " + ", ".join(missing)
            failures.append(
                dataclasses.replace(
                    record,
                    result="failure",
                    failure={"category": "usererror", "code": "DeclaredOutputMissing", "message": message},
                )
            )
        elif ctx.cache is not None and task.id in ctx.cache_keys:
            blobs = {}
            for output in declared:
                for blob in listing.matching(output):
                    blobs[(output.container, blob.name)] = CachedBlob(
                        logical=ctx.logical_containers[output.container],
                        container=output.container,
                        name=blob.name,
                        size=blob.size,
                        md5=blob.md5.hex() if blob.md5 else None,
                    )
            entries.append(Entry(ctx.cache_keys[task.id], ctx.run, task.id, list(blobs.values())))
    ctx.store.record_tasks(failures)
    if ctx.cache is not None:
        ctx.cache.record(entries)
    return len(failures)
