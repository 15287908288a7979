"""``destroy``: delete what a run's state says it created, and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchflow.cloud.batch import BatchService
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
        for kind, name in doomed:
            if kind == "job":
                batch.delete_job(name)
                state.resources["job"]["deleted"] = True
            elif kind == "pool":
                batch.delete_pool(name)
                state.resources["pool"]["deleted"] = True
            else:
                blobs.delete_container(name)
                state.resources["containers"][name] = "deleted"
            store.save(state)
        return doomed
