"""Physical names: where a run's containers and job live, so that no two runs share them.

A workflow declares *logical* names (``input``, ``output``, ``PythonTutorialJob``)
and keeps them in version control. Each run maps them to names of its own:

* container ``output`` of run ``topwords-d1082aabd7`` is ``output-topwords-d1082aabd7``;
* job ``PythonTutorialJob`` of that run is ``PythonTutorialJob-topwords-d1082aabd7``.

Per-run containers, rather than per-run prefixes in shared containers, are
what least privilege needs: a container SAS cannot be narrowed to a prefix
on a storage account without a hierarchical namespace, so the write SAS a
task gets would otherwise reach every other run's outputs. The pool keeps
its declared id, because runs may share a compatible pool.

Names stay valid for Azure (containers: 3 to 63 lowercase letters, digits and
single hyphens; ids: up to 64 letters, digits, hyphens and underscores) and
readable: a name too long to hold both parts keeps their beginnings and ends
with a short hash of the full pair, so that it stays unique.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

from batchflow.longlived import collector_paused
from batchflow.model.spec import ContainerUrl, DeclaredOutput, OutputFile, ResourceFile, Task, Workflow, copier

CONTAINER_MAX = 63
ID_MAX = 64
HASH_LENGTH = 8


def _shorten(name: str, limit: int, whole: str) -> str:
    """``name`` if it fits in ``limit``, else its beginning plus a hash of ``whole``."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(whole.encode()).hexdigest()[:HASH_LENGTH]
    return name[: limit - HASH_LENGTH - 1].rstrip("-_") + "-" + digest


def container_name(logical: str, run: str) -> str:
    """The container that holds ``logical`` for ``run``: lowercase, single hyphens, at most 63 characters."""
    slug = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", run.lower())).strip("-")
    return _shorten(f"{logical}-{slug}", CONTAINER_MAX, f"{logical}\0{run}")


def job_id(declared: str, run: str) -> str:
    """The Batch job of ``run``: the declared id, a hyphen, the run's name (dots become hyphens)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", run)
    return _shorten(f"{declared}-{slug}", ID_MAX, f"{declared}\0{run}")


_copy_with_container = {
    kind: copier(kind, ("container",)) for kind in (ResourceFile, OutputFile, ContainerUrl, DeclaredOutput)
}


def _with_container(item: Any, names: dict[str, str]) -> Any:
    """A resource file, output file, container URL or declared output, with its container renamed."""
    if item.container is None:  # a resource file from a URL
        return item
    return _copy_with_container[type(item)](item, {"container": names[item.container]})


#: The fields of a task that name containers: each holds a tuple of items with a ``container``.
_NAMING_FIELDS = ("resource_files", "output_files", "container_urls", "outputs")
_copy_task = copier(Task, _NAMING_FIELDS)


def _tasks(tasks: tuple[Task, ...], names: dict[str, str]) -> tuple[Task, ...]:
    """The tasks with their containers renamed.

    A sweep's tasks share the values their template does not vary (see ``model.load._tasks``):
    each value is renamed once, and the renamed copy is shared the same way.
    """
    renamed: dict[int, tuple[Any, ...]] = {}  # id of a field's value (alive in ``tasks``) -> its renamed copy
    result = []
    for task in tasks:
        attributes = task.__dict__
        changes = {}
        for field in _NAMING_FIELDS:
            items = attributes[field]
            if items:
                copy = renamed.get(id(items))
                if copy is None:
                    copy = renamed[id(items)] = tuple([_with_container(item, names) for item in items])
                changes[field] = copy
        result.append(_copy_task(task, changes) if changes else task)
    return tuple(result)


def physical(workflow: Workflow, run: str) -> Workflow:
    """``workflow`` with every container and the job renamed for ``run``; the pool keeps its id.

    Everything downstream (the steps, plan, destroy) works on the result and
    never sees a logical container name, so no step can touch another run's data.
    """
    with collector_paused():
        return _physical(workflow, run)


def _physical(workflow: Workflow, run: str) -> Workflow:
    names = {c.name: container_name(c.name, run) for c in workflow.containers}
    pool = workflow.pool
    if pool.start_task is not None:
        start = dataclasses.replace(
            pool.start_task, resource_files=tuple(_with_container(r, names) for r in pool.start_task.resource_files)
        )
        pool = dataclasses.replace(pool, start_task=start)
    download = workflow.download
    if download is not None:
        download = dataclasses.replace(download, container=names[download.container])
    return dataclasses.replace(
        workflow,
        containers=tuple(dataclasses.replace(c, name=names[c.name]) for c in workflow.containers),
        uploads=tuple(dataclasses.replace(u, container=names[u.container]) for u in workflow.uploads),
        pool=pool,
        job=dataclasses.replace(workflow.job, id=job_id(workflow.job.id, run)),
        tasks=_tasks(workflow.tasks, names),
        download=download,
        cleanup=dataclasses.replace(
            workflow.cleanup, containers={names[k]: v for k, v in workflow.cleanup.containers.items()}
        ),
    )


def logical_names(workflow: Workflow, run: str) -> dict[str, str]:
    """Physical container name -> the logical name the workflow declares, for display."""
    return {container_name(c.name, run): c.name for c in workflow.containers}
