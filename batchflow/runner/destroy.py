"""``destroy``: delete what a run's state says it created, and nothing else.

Every run has containers and a job of its own (see batchflow.runner.naming),
so deleting them cannot touch another run. The pool is the exception: runs
of a workflow may share it, so it is deleted only when no other job uses it,
and otherwise kept with a note naming who still uses it. A destroyed run is
marked so in its state: ``status`` says so, and the next ``apply`` of the
same run starts again from the first step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchflow.cloud.batch import RUN_METADATA, WORKFLOW_METADATA, BatchService, metadata_of
from batchflow.cloud.storage import BlobStore
from batchflow.cloud.targets import Target
from batchflow.errors import UsageError
from batchflow.state import RunLock, StateStore
from batchflow.state.model import now_iso
from batchflow.steps.teardown import pool_users


@dataclass
class Destroyed:
    """What one destroy did: (kind, id) deleted, and (kind, id, why) kept."""

    run: str
    deleted: list[tuple[str, str]] = field(default_factory=list)
    kept: list[tuple[str, str, str]] = field(default_factory=list)


def what_to_destroy(resources: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, id) of every live resource the run created or took over: the job, then the pool, then containers."""
    found = []
    job, pool = resources.get("job", {}), resources.get("pool", {})
    if job.get("created") and not job.get("deleted"):
        found.append(("job", job["id"]))
    if (pool.get("created") or pool.get("kept_from")) and not pool.get("deleted"):
        found.append(("pool", pool["id"]))
    for name, status in sorted(resources.get("containers", {}).items()):
        if status in ("created", "creating"):
            found.append(("container", name))
    return found


def destroy(run: str, run_dir: Path, target: Target, *, confirm: Any) -> Destroyed:
    """Delete the run's own resources after ``confirm(list)`` agrees.

    :raises UsageError: the run has no state here.
    :raises LockHeld: another process holds the run.
    """
    if not (run_dir / "state.json").exists():
        raise UsageError(f"run {run} has no state in {run_dir.parent}; nothing to destroy")
    result = Destroyed(run)
    with RunLock(run_dir, "destroy", run=run):
        store = StateStore(run_dir)
        state = store.load()
        assert state is not None
        doomed = what_to_destroy(state.resources)
        if doomed and not confirm(doomed):
            return result
        batch, blobs = (BatchService(target), BlobStore(target)) if doomed else (None, None)
        job_id = state.resources.get("job", {}).get("id", "")
        for kind, name in doomed:
            if kind == "container":
                assert blobs is not None
                blobs.delete_container(name)
                state.resources["containers"][name] = "deleted"
                result.deleted.append((kind, name))
            else:
                assert batch is not None
                found = batch.get_job(name) if kind == "job" else batch.get_pool(name)
                if kind == "pool" and found is not None and (users := pool_users(batch, name, job_id)):
                    result.kept.append((kind, name, f"still in use by {users}"))
                    store.save(state)
                    continue
                # A pool or job of this id that lacks our tag was made by someone else since: leave it.
                if _owned_by(found, run, state.workflow, kind):
                    (batch.delete_job if kind == "job" else batch.delete_pool)(name)
                    result.deleted.append((kind, name))
                elif found is not None:
                    result.kept.append((kind, name, "it now belongs to something else"))
                state.resources[kind]["deleted"] = True
            store.save(state)
        state.resources["destroyed"] = now_iso()
        store.save(state)
    return result


def _owned_by(resource: Any, run: str, workflow: str, kind: str) -> bool:
    """True when ``resource`` exists and carries this run's tag (for a pool: this workflow's tag).

    Anything else is not ours to delete.
    """
    if resource is None:
        return False
    tags = metadata_of(resource)
    if kind == "pool":
        return tags.get(RUN_METADATA) == run or tags.get(WORKFLOW_METADATA) == workflow
    return tags.get(RUN_METADATA) == run


def runs_of(state_dir: Path, workflow: str) -> list[tuple[str, Path]]:
    """(run, directory) of every run of ``workflow`` with state under ``state_dir``, oldest first."""
    found = []
    for state_file in sorted(Path(state_dir).glob("*/state.json")):
        store = StateStore(state_file.parent)
        try:
            state = store.load()
        except Exception:  # an unreadable state is reported when that run itself is used
            continue
        if state is not None and state.workflow == workflow:
            found.append((state.created, state.run, state_file.parent))
    return [(run, directory) for _, run, directory in sorted(found)]
