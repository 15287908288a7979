"""Look at what exists for a workflow on a target, for ``plan``: containers, blobs, pool, job, tasks."""

from __future__ import annotations

from pathlib import Path

from batchflow.cloud.batch import RUN_METADATA, WORKFLOW_METADATA, BatchService, enum_value, metadata_of
from batchflow.cloud.storage import BlobStore
from batchflow.cloud.targets import Target
from batchflow.model.spec import Workflow
from batchflow.plan.compare import Observed


def observe(workflow: Workflow, target: Target, digests: dict[Path, bytes]) -> Observed:
    """Read-only look-ups; nothing is created or changed."""
    blobs, batch = BlobStore(target), BatchService(target)
    seen = Observed()
    for container in workflow.containers:
        seen.containers[container.name] = blobs.container_exists(container.name)
    for upload in workflow.uploads:
        stored = blobs.blob_md5(upload.container, upload.blob_name) if seen.containers.get(upload.container) else False
        key = f"{upload.container}/{upload.blob_name}"
        seen.uploads[key] = (
            "new" if stored is False else ("unchanged" if stored == digests[upload.local_path] else "changed")
        )
    pool = batch.get_pool(workflow.pool.id)
    tags = metadata_of(pool) if pool else {}
    seen.pool = {"exists": pool is not None, "run": tags.get(RUN_METADATA), "workflow": tags.get(WORKFLOW_METADATA)}
    job = batch.get_job(workflow.job.id)
    job_tags = metadata_of(job) if job else {}
    seen.job = {
        "exists": job is not None,
        "run": job_tags.get(RUN_METADATA),
        "state": enum_value(job.state) if job else None,
    }
    seen.task_ids = batch.task_ids(workflow.job.id) if job is not None else set()
    return seen
