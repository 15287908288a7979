"""Step 4: create the job on the pool; a job this run created before is adopted."""

from __future__ import annotations

import shlex
from typing import Any

from batchflow.cloud.batch import RUN_METADATA, enum_value, job_options, metadata_of
from batchflow.errors import RunFailed
from batchflow.steps.context import RunContext


def run(ctx: RunContext) -> dict[str, Any]:
    job = ctx.workflow.job
    record = ctx.resources("job")
    existing = ctx.batch.get_job(job.id)
    if existing is None and ctx.batch.create_job(job_options(job, ctx.workflow.pool.id, ctx.metadata)):
        record.update(id=job.id, created=True)
        ctx.save()
        ctx.report.note(f"job {job.id} created on pool {ctx.workflow.pool.id}")
        return {"job": job.id, "how": "created"}
    existing = existing or ctx.batch.get_job(job.id)
    owner = metadata_of(existing).get(RUN_METADATA) if existing else None
    if owner != ctx.run:
        state = enum_value(getattr(existing, "state", None)) or "unknown"
        if owner:
            remedy = f"remove that run's resources with: batchflow destroy {shlex.quote(str(ctx.workflow.path))} --run {owner}"
        else:
            remedy = "it was not made by batchflow; delete it or change job.id"
        raise RunFailed(
            f"job {job.id} already exists ({state}) and belongs to {'run ' + owner if owner else 'another program'}; {remedy}"
        )
    if existing is not None and enum_value(existing.state) not in ("active", "enabling"):
        raise RunFailed(f"job {job.id} of this run is {enum_value(existing.state)}; it cannot take tasks any more")
    record.update(id=job.id, created=True)
    ctx.save()
    ctx.report.note(f"job {job.id} adopted (created by this run)")
    return {"job": job.id, "how": "adopted"}
