"""Small helpers for the local-service tests: pools, jobs and waiting, all through the official SDK."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from azure.batch import models

T = TypeVar("T")
IMAGE = models.VirtualMachineConfiguration(
    image_reference=models.BatchVmImageReference(
        publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts"
    ),
    node_agent_sku_id="batch.node.ubuntu 22.04",
)


def wait_for(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def create_pool(client: Any, pool_id: str, nodes: int = 1, low_priority: int = 0, **options: Any) -> None:
    client.create_pool(
        models.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="standard_d2s_v3",
            virtual_machine_configuration=IMAGE,
            target_dedicated_nodes=nodes,
            target_low_priority_nodes=low_priority,
            **options,
        )
    )


def create_job(client: Any, job_id: str, pool_id: str, **options: Any) -> None:
    client.create_job(
        models.BatchJobCreateOptions(id=job_id, pool_info=models.BatchPoolInfo(pool_id=pool_id), **options)
    )


def wait_tasks_completed(client: Any, job_id: str, timeout: float = 30.0) -> list[Any]:
    """Wait until every task of the job is completed; return them."""

    def done() -> list[Any] | None:
        tasks = list(client.list_tasks(job_id))
        return tasks if tasks and all(t.state == models.BatchTaskState.COMPLETED for t in tasks) else None

    return wait_for(done, timeout, 0.1, f"all tasks of {job_id} to complete")


def wait_task(
    client: Any, job_id: str, task_id: str, state: Any = models.BatchTaskState.COMPLETED, timeout: float = 20.0
) -> Any:
    return wait_for(
        lambda: (t := client.get_task(job_id, task_id)).state == state and t, timeout, 0.05, f"{task_id} to be {state}"
    )


def read_task_file(client: Any, job_id: str, task_id: str, name: str) -> str:
    return b"".join(client.download_task_file(job_id, task_id, name)).decode()


def cleanup(client: Any, job_id: str | None = None, pool_id: str | None = None) -> None:
    """Delete the job and pool a test made, waiting so that their processes are gone."""
    if job_id:
        client.begin_delete_job(job_id, polling_interval=0.05).result()
    if pool_id:
        client.begin_delete_pool(pool_id, polling_interval=0.05).result()


@contextmanager
def pool_and_job(
    client: Any,
    *,
    nodes: int = 1,
    pool_options: dict[str, Any] | None = None,
    job_options: dict[str, Any] | None = None,
) -> Iterator[tuple[str, str]]:
    """A fresh pool and a job on it for one test; both are deleted afterwards, with their processes."""
    from tests.conftest import unique

    pool_id, job_id = unique("pool"), unique("job")
    create_pool(client, pool_id, nodes=nodes, **(pool_options or {}))
    create_job(client, job_id, pool_id, **(job_options or {}))
    try:
        yield pool_id, job_id
    finally:
        cleanup(client, job_id, pool_id)
