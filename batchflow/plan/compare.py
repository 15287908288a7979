"""Compare a workflow with its run's state and with what the service holds, as plan annotations.

``Observed`` is what was seen (gathered by ``batchflow.cloud.observe``);
:func:`annotate` turns the definition, the state and the observation into
one line per step saying what ``apply`` would do: create, reuse, upload
(new, changed, unchanged), add, delete. It performs no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batchflow.model.spec import Workflow
from batchflow.state import RunState


@dataclass
class Observed:
    """What exists on the service for this workflow; ``None`` fields were not looked at."""

    containers: dict[str, bool] = field(default_factory=dict)
    uploads: dict[str, str] = field(default_factory=dict)  # "container/blob" -> new|changed|unchanged
    pool: dict[str, Any] | None = None  # {"exists": bool, "run": str|None, "workflow": str|None}
    job: dict[str, Any] | None = None  # {"exists": bool, "run": str|None, "state": str|None}
    task_ids: set[str] | None = None


def annotate(
    workflow: Workflow, run: str, state: RunState | None, observed: Observed | None, cached: set[str] | None = None
) -> dict[str, list[str]]:
    """For each step key, lines saying what apply would do given the state and the observation."""
    notes: dict[str, list[str]] = {}
    done = {k for k, v in (state.steps.items() if state else []) if v.status == "done"}
    for key in done:
        notes[key] = ["done in this run already; apply skips it"]
    if observed is None:
        return notes

    if "containers" not in done:
        exists = [n for n, e in observed.containers.items() if e]
        missing = [n for n, e in observed.containers.items() if not e]
        notes["containers"] = [f"exist: {', '.join(exists) or 'none'}; will be created: {', '.join(missing) or 'none'}"]
    if "uploads" not in done and observed.uploads:
        counts = {k: sum(1 for v in observed.uploads.values() if v == k) for k in ("new", "changed", "unchanged")}
        notes["uploads"] = [
            f"{counts['new']} new, {counts['changed']} changed, {counts['unchanged']} unchanged (by MD5)"
        ]
    if "pool" not in done and observed.pool is not None:
        pool = observed.pool
        if not pool["exists"]:
            line = f"pool {workflow.pool.id} will be created"
        elif pool.get("run") == run:
            line = f"pool {workflow.pool.id} exists (created by this run) and will be adopted"
        elif pool.get("workflow") == workflow.name or workflow.pool.reuse:
            line = f"pool {workflow.pool.id} exists and will be reused if its image and VM size match"
        else:
            line = f"pool {workflow.pool.id} exists and belongs to something else: apply would stop (set pool.reuse or change pool.id)"
        notes["pool"] = [line]
    if "job" not in done and observed.job is not None:
        job = observed.job
        if not job["exists"]:
            line = f"job {workflow.job.id} will be created"
        elif job.get("run") == run:
            line = f"job {workflow.job.id} exists (this run, {job.get('state')}) and will be adopted"
        else:
            line = f"job {workflow.job.id} exists and belongs to another run: apply would stop (destroy it or change job.id)"
        notes["job"] = [line]
    if "tasks" not in done and observed.task_ids is not None:
        present = {t.lower() for t in observed.task_ids}
        skipped = cached or set()
        to_add = sum(1 for t in workflow.tasks if t.id.lower() not in present and t.id not in skipped)
        in_job = sum(1 for t in workflow.tasks if t.id.lower() in present)
        notes["tasks"] = [f"{to_add} to add, {in_job} already in the job, {len(skipped)} reused from the cache"]
    return notes
