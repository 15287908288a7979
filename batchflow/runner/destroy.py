"""``destroy``: delete what a run's state says it created, and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchflow.cloud.batch import RUN_METADATA, BatchService, metadata_of
from batchflow.cloud.storage import BlobStore
from batchflow.cloud.targets import Target
from batchflow.errors import UsageError
from batchflow.state import RunLock, StateStore


def what_to_destroy(resources: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, id) of every live resource the run created: the job, then the pool, then containers."""
    found = []
    job, pool = resources.get("job", {}), resources.get("pool", {})
    if job.get("created") and not job.get("deleted"):
        found.append(("job", job["id"]))
    if pool.get("created") and not pool.get("deleted"):
        found.append(("pool", pool["id"]))
    for name, status in sorted(resources.get("containers", {}).items()):
        if status == "created":
            found.append(("container", name))
    return found


def destroy(run: str, run_dir: Path, target: Target, *, confirm: Any) -> list[tuple[str, str]]:
    """Delete the run's own resources after ``confirm(list)`` agrees; returns what was deleted.

    :raises UsageError: the run has no state here.
    :raises LockHeld: another process holds the run.
    """
    if not (run_dir / "state.json").exists():
        raise UsageError(f"run {run} has no state in {run_dir.parent}; nothing to destroy")
    with RunLock(run_dir, "destroy", run=run):
        store = StateStore(run_dir)
        state = store.load()
        assert state is not None
        doomed = what_to_destroy(state.resources)
        if not doomed or not confirm(doomed):
            return []
        batch, blobs = BatchService(target), BlobStore(target)
        deleted = []
        for kind, name in doomed:
            if kind == "container":
                blobs.delete_container(name)
                state.resources["containers"][name] = "deleted"
                deleted.append((kind, name))
            else:
                # A pool or job of this id that lacks our tag was made by someone else since: leave it.
                found = batch.get_job(name) if kind == "job" else batch.get_pool(name)
                if _owned_by(found, run):
                    (batch.delete_job if kind == "job" else batch.delete_pool)(name)
                    deleted.append((kind, name))
                state.resources[kind]["deleted"] = True
            store.save(state)
        return deleted


def _owned_by(resource: Any, run: str) -> bool:
    """True when ``resource`` exists and carries this run's tag; anything else is not ours to delete."""
    return resource is not None and metadata_of(resource).get(RUN_METADATA) == run
