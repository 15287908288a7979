"""The Azure Batch Python quickstart, unchanged in spirit, against the local services."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from azure.batch import models
from azure.storage.blob import BlobSasPermissions, generate_blob_sas

from tests.conftest import unique
from tests.local.support import cleanup, create_job, create_pool, read_task_file, wait_for, wait_tasks_completed


def test_quickstart(local_services):
    blob_service = local_services.blob_service()
    container = unique("input")
    blob_service.create_container(container)
    files = {f"taskdata{i}.txt": f"line {i} of the input\n" for i in range(3)}
    resource_files = []
    for name, text in files.items():
        blob_service.get_blob_client(container, name).upload_blob(text)
        sas = generate_blob_sas(
            account_name=blob_service.account_name,
            container_name=container,
            blob_name=name,
            account_key=local_services.endpoints.storage_account_key,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.now(timezone.utc) + timedelta(hours=1),
        )
        url = f"{local_services.blob_endpoint}/{container}/{name}?{sas}"
        resource_files.append(models.ResourceFile(http_url=url, file_path=name))

    client = local_services.batch_client()
    pool_id, job_id = unique("pool"), unique("job")
    create_pool(client, pool_id, nodes=2)
    pool = client.get_pool(pool_id)
    assert pool.state == models.BatchPoolState.ACTIVE
    create_job(client, job_id, pool_id)
    tasks = [
        models.BatchTaskCreateOptions(
            id=f"Task{i}", command_line=f"cat {resource.file_path}", resource_files=[resource]
        )
        for i, resource in enumerate(resource_files)
    ]
    client.create_tasks(job_id, tasks)
    try:
        completed = wait_tasks_completed(client, job_id)
        assert len(completed) == 3
        nodes = {t.node_info.node_id for t in completed}
        assert nodes <= {n.id for n in client.list_nodes(pool_id)}
        for i, name in enumerate(files):
            task = client.get_task(job_id, f"Task{i}")
            assert task.execution_info.exit_code == 0
            assert task.execution_info.result == models.BatchTaskExecutionResult.SUCCESS
            assert read_task_file(client, job_id, f"Task{i}", "stdout.txt") == files[name]
        wait_for(lambda: client.get_pool(pool_id).current_dedicated_nodes == 2, what="two nodes")
        listed = {f.name for f in client.list_task_files(job_id, "Task0")}
        assert {"stdout.txt", "stderr.txt", "wd"} <= listed
    finally:
        cleanup(client, job_id, pool_id)
