"""``apply``: run the nine steps of one run in order, recording each in the state file.

The contract, as in Terraform's apply and DVC's repro:

* one process per run: the run's lock is taken first, and a second ``apply``
  or ``destroy`` is refused with the holder's name;
* every step is recorded as running before it starts and as done (with its
  summary) when it ends; a step found done is skipped, a step found running
  (the process died in it) is run again, which is safe because steps look
  before they act;
* Ctrl-C and SIGTERM save the state and end with exit status 130 and the
  command that resumes; SIGKILL leaves the same state a crash would, which
  the next apply resumes from;
* when tasks fail, the outputs that exist are still downloaded, each failure
  is explained with its stderr, the job and pool are kept for ``batchflow
  logs``, and the run ends with exit status 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchflow.cloud.batch import BatchService, enum_value, tail
from batchflow.cloud.storage import BlobStore
from batchflow.cloud.targets import Target
from batchflow.errors import Interrupted, RunFailed
from batchflow.local.account import batchflow_home
from batchflow.model.spec import Workflow
from batchflow.plan.build import STEPS as STEP_TITLES
from batchflow.report import build as build_report
from batchflow.report.summary import FAILURES_FILE
from batchflow.runner import naming
from batchflow.runner.cache import CacheIndex, KeyMaker
from batchflow.runner.identity import fingerprint, run_directory, run_name, upload_digests
from batchflow.state import RunLock, RunState, StateStore, TaskRecord, new_state, redact_secrets, set_step_status
from batchflow.steps import STEPS
from batchflow.steps.context import Reporter, RunContext
from batchflow.steps.tasks import refresh_tokens

STDERR_LINES = 20
TITLES = dict(STEP_TITLES)


@dataclass
class ApplyResult:
    """What a finished (or failed) apply reports."""

    run: str
    state_dir: Path
    succeeded: bool
    steps: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    outputs: str | None = None
    already_finished: bool = False
    #: The end-of-run summary (see batchflow.report.summary), which names the report page.
    summary: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "state_dir": str(self.state_dir),
            "succeeded": self.succeeded,
            "already_finished": self.already_finished,
            "outputs": self.outputs,
            "steps": self.steps,
            "failures": self.failures,
            "summary": self.summary,
        }


def open_run(
    workflow: Workflow, state_dir: Path, explicit_run: str | None, target: str
) -> tuple[str, Path, dict[Path, bytes], str]:
    """The run's name, its directory, the upload digests and the fingerprint, for a target's name."""
    digests = upload_digests(workflow)
    digest = fingerprint(workflow, digests, target)
    run = run_name(workflow, digest, explicit_run)
    return run, run_directory(state_dir, run), digests, digest


def _failure_reports(ctx: RunContext) -> list[dict[str, Any]]:
    """Each failed task with its exit code, failure info and the tail of its stderr."""
    reports = []
    for task in ctx.workflow.tasks:
        record = ctx.state.tasks.get(task.id)
        if record is None or record.result == "success":
            continue
        try:
            stderr = ctx.batch.task_file(ctx.workflow.job.id, task.id, "stderr.txt")
        except RunFailed as error:
            ctx.report.warn(f"cannot read stderr.txt of task {task.id}: {error.message}")
            stderr = None
        reports.append(
            {
                "task": task.id,
                "exit_code": record.exit_code,
                "failure": record.failure,
                "node": record.node_id,
                "stderr_tail": redact_secrets(tail(stderr, STDERR_LINES)) if stderr else None,
            }
        )
    return reports


def _result(workflow: Workflow, state: RunState, run_dir: Path, succeeded: bool, **extra: Any) -> ApplyResult:
    download = workflow.download
    return ApplyResult(
        run=state.run,
        state_dir=run_dir,
        succeeded=succeeded,
        steps={k: dict(v.summary, status=v.status) for k, v in state.steps.items()},
        outputs=str(download.destination) if download else None,
        **extra,
    )


def apply(
    workflow: Workflow,
    target: Target | None,
    *,
    state_dir: Path,
    report: Reporter,
    run: str | None = None,
    assume_yes: bool = False,
    resolve_target: Any = None,
    target_name: str = "local",
    use_cache: bool = True,
    cache_dir: Path | None = None,
) -> ApplyResult:
    """Run (or resume) the workflow's run and return its result.

    :param target: where to run; or ``None`` with ``resolve_target`` (a
        callable) to resolve it only when there is work to do, so that
        re-applying a finished run starts no service.
    :raises LockHeld: another process holds the run.
    :raises RunFailed: a step failed; the state records where.
    :raises Interrupted: Ctrl-C or SIGTERM; the state is saved.

    ``use_cache`` False (``--no-cache``) runs every task; so does ``cache: false``
    in the workflow. ``cache_dir`` holds the cache index (default ``BATCHFLOW_HOME``).
    """
    target_name = target.name if target else target_name
    run_id, run_dir, digests, digest = open_run(workflow, state_dir, run, target_name)
    with RunLock(run_dir, "apply", run=run_id) as lock:
        if lock.took_over:
            report.warn(f"took over the lock left by {lock.took_over.describe()}, which is no longer running")
        store = StateStore(run_dir)
        state = store.load()
        for warning in store.warnings:
            report.warn(warning)
        if state is None:
            state = new_state(
                run=run_id,
                workflow=workflow.name,
                workflow_file=str(workflow.path),
                fingerprint=digest,
                steps=[key for key, _ in STEPS],
            )
            store.save(state)
        if state.fingerprint != digest:
            raise RunFailed(
                f"run {run_id} was made from a different definition or target; "
                "choose another --run name, or remove that run with batchflow destroy"
            )
        destroyed = state.resources.get("destroyed")
        if destroyed:
            report.note(f"run {run_id} was destroyed at {destroyed}; starting it again from the first step")
            _start_over(state)
            store.save(state)
        if _finished(state):
            download = workflow.download
            report.note(f"run {run_id} already finished" + (f"; outputs in {download.destination}" if download else ""))
            result = _result(workflow, state, run_dir, True, already_finished=True)
            result.summary = _write_report(naming.physical(workflow, run_id), state, run_dir, target_name, report)
            return result
        target = target or resolve_target()
        report.note(f"run {run_id} on {target.describe()}")
        caching = use_cache and workflow.cache
        ctx = RunContext(
            workflow=naming.physical(workflow, run_id),
            run=run_id,
            blobs=BlobStore(target),
            batch=BatchService(target),
            store=store,
            state=state,
            report=report,
            assume_yes=assume_yes,
            digests=digests,
            cache=CacheIndex(cache_dir or batchflow_home()) if caching else None,
            cache_keys=KeyMaker(workflow, digests, target_name).keys() if caching else {},
            logical_containers=naming.logical_names(workflow, run_id),
        )
        try:
            if _ended_with_failures(state):
                _prepare_retry(ctx)
            result = _run_steps(ctx, run_dir)
        except BaseException:
            # Interrupted or failed: the report shows how far the run got.
            _write_report(ctx.workflow, ctx.state, run_dir, target.describe(), report)
            raise
        result.summary = _write_report(ctx.workflow, ctx.state, run_dir, target.describe(), report)
        return result


def _write_report(
    workflow: Workflow, state: RunState, run_dir: Path, target: str, report: Reporter
) -> dict[str, Any] | None:
    """Write the run's report page and return the summary; a report that cannot be written is a warning."""
    try:
        return build_report(workflow, state, run_dir, target).to_json()
    except Exception as error:  # the report must never hide the run's own outcome
        report.warn(f"could not write the run report: {error}")
        return None


def _finished(state: RunState) -> bool:
    return all(record.status == "done" for record in state.steps.values()) and bool(state.steps)


def _ended_with_failures(state: RunState) -> bool:
    monitor = state.steps.get("monitor")
    return monitor is not None and monitor.status == "done" and bool(monitor.summary.get("failed"))


def _start_over(state: RunState) -> None:
    """Forget what a destroyed run did (its resources are gone), keeping the state's lineage."""
    state.tasks.clear()
    state.resources.clear()
    for key in state.steps:
        set_step_status(state, key, "pending")


#: The steps a retry runs again: from adding the (failed) tasks to the end.
RETRIED_STEPS = ("tasks", "monitor", "download", "delete_containers", "delete_job_pool")


def _prepare_retry(ctx: RunContext) -> None:
    """Set a run that ended with failed tasks up to run those tasks again, and only those.

    The failed tasks are removed from the job (a task id can only be added once)
    and marked as not run, so that step 5 adds them again with fresh SAS tokens;
    the tasks that succeeded keep their records and are never added again. A job
    that has ended cannot take tasks, so it is deleted and made anew by step 4.
    """
    failed = sorted(r.task_id for r in ctx.state.tasks.values() if r.state == "completed" and r.result != "success")
    job_id = ctx.workflow.job.id
    job = ctx.batch.get_job(job_id)
    if job is not None and enum_value(job.state) not in ("active", "enabling"):
        ctx.report.note(
            f"job {job_id} has ended ({enum_value(job.state)}); deleting it so that a new one takes the retried tasks"
        )
        ctx.batch.delete_job(job_id)
    elif job is not None:
        for task_id in failed:
            ctx.batch.delete_task(job_id, task_id)
    ctx.store.record_tasks(TaskRecord(task_id) for task_id in failed)
    for key in RETRIED_STEPS:
        set_step_status(ctx.state, key, "pending")
    ctx.store.save(ctx.state)
    kept = sum(1 for r in ctx.state.tasks.values() if r.result == "success")
    shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
    ctx.report.note(f"retrying {len(failed)} failed task(s) ({shown}); the {kept} that succeeded are not run again")


def _refresh(ctx: RunContext) -> None:
    """Before resuming, check that what earlier steps made still exists; redo the steps whose work is gone.

    Another run's ``destroy``, a person in the portal, or the service itself may
    have removed a container, the pool or the job since they were made. A
    step recorded as done is trusted only while its resource is there.
    Only steps before the end of monitoring matter: after it, nothing is created.
    """
    steps = ctx.state.steps
    if steps["monitor"].status == "done":
        return
    redo: list[str] = []
    # (A retry comes here too: _prepare_retry set monitoring back to pending.)
    if steps["containers"].status == "done" and not all(
        ctx.blobs.container_exists(c.name) for c in ctx.workflow.containers
    ):
        redo += ["containers", "uploads"]
    if steps["pool"].status == "done":
        pool = ctx.batch.get_pool(ctx.workflow.pool.id)
        if pool is None or enum_value(pool.state) == "deleting":
            redo.append("pool")
    if steps["job"].status == "done" and ctx.batch.get_job(ctx.workflow.job.id) is None:
        redo += ["job", "tasks"]
    for key in redo:
        if steps[key].status == "done":
            ctx.report.warn(f"step {TITLES[key]!r} was done, but what it made is gone; doing it again")
            if key == "tasks":
                # The job is new: every task not yet succeeded goes into it.
                steps[key].summary.clear()
            set_step_status(ctx.state, key, "pending")
    if steps["tasks"].status == "done":
        renewed = refresh_tokens(ctx, steps["tasks"].summary)
        if renewed:
            ctx.report.warn(
                f"{renewed} queued task(s) had SAS tokens about to expire; added them again with fresh ones"
            )
    ctx.store.save(ctx.state)


def _run_steps(ctx: RunContext, run_dir: Path) -> ApplyResult:
    total = len(STEPS)
    _refresh(ctx)
    for number, (key, step) in enumerate(STEPS, start=1):
        record = ctx.state.steps.get(key)
        if record is not None and record.status == "done":
            ctx.report.step(number, f"{TITLES[key]}: done earlier")
            continue
        if key == "delete_containers" and ctx.state.steps["monitor"].summary.get("failed"):
            break  # keep everything for `batchflow logs`; the failures are reported below
        ctx.report.step(number, TITLES[key])
        ctx.current_step = key
        set_step_status(ctx.state, key, "running")
        ctx.store.save(ctx.state)
        try:
            summary = step(ctx)
        except RunFailed:
            set_step_status(ctx.state, key, "failed")
            ctx.save()
            raise
        except KeyboardInterrupt:
            ctx.save()
            raise Interrupted(f"interrupted during step {number}/{total} ({TITLES[key]}); the state is saved") from None
        set_step_status(ctx.state, key, "done", summary=summary)
        ctx.store.save(ctx.state)
    failures_file = run_dir / FAILURES_FILE
    if ctx.state.steps["monitor"].summary.get("failed", 0):
        failures = _failure_reports(ctx)
        failures_file.write_text(json.dumps(failures, ensure_ascii=False, indent=1), encoding="utf-8")
        return _result(ctx.workflow, ctx.state, run_dir, False, failures=failures)
    failures_file.unlink(missing_ok=True)  # a retry that succeeded leaves no failures behind
    return _result(ctx.workflow, ctx.state, run_dir, True)
