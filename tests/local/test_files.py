"""Resource files in, output files out, and the task files API."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from azure.batch import models
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from tests.conftest import unique
from tests.local.support import cleanup, create_job, create_pool, pool_and_job, read_task_file, wait_task


def _container_url(local_services, container: str, **permissions: bool) -> str:
    sas = generate_container_sas(
        account_name=local_services.endpoints.storage_account_name,
        container_name=container,
        account_key=local_services.endpoints.storage_account_key,
        permission=ContainerSasPermissions(**permissions),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    return f"{local_services.blob_endpoint}/{container}?{sas}"


def test_output_files_appear_in_azurite(local_services):
    blob_service = local_services.blob_service()
    container = unique("out")
    blob_service.create_container(container)
    url = _container_url(local_services, container, write=True, create=True, list=True, read=True)
    client = local_services.batch_client()
    pool_id, job_id = unique("pool"), unique("job")
    create_pool(client, pool_id, nodes=1)
    create_job(client, job_id, pool_id)

    def output(pattern: str, path: str | None, condition: models.OutputFileUploadCondition) -> models.OutputFile:
        return models.OutputFile(
            file_pattern=pattern,
            destination=models.OutputFileDestination(
                container=models.OutputFileBlobContainerDestination(container_url=url, path=path)
            ),
            upload_options=models.OutputFileUploadConfiguration(upload_condition=condition),
        )

    script = "mkdir -p out/sub out/.hidden; echo a > out/a.txt; echo b > out/sub/b.txt; echo h > out/.hidden/h.txt; echo x > out/x.log; echo done"
    try:
        client.create_task(
            job_id,
            models.BatchTaskCreateOptions(
                id="writer",
                command_line=f"/bin/sh -c '{script}'",
                output_files=[
                    output("out/**/*.txt", "results", models.OutputFileUploadCondition.TASK_SUCCESS),
                    output("out/?.log", None, models.OutputFileUploadCondition.TASK_COMPLETION),
                    output("../stdout.txt", "logs/writer-stdout.txt", models.OutputFileUploadCondition.TASK_COMPLETION),
                    output("out/a.txt", "failure-only.txt", models.OutputFileUploadCondition.TASK_FAILURE),
                ],
            ),
        )
        task = wait_task(client, job_id, "writer")
        assert task.execution_info.result == models.BatchTaskExecutionResult.SUCCESS, task.execution_info.failure_info
        names = sorted(b.name for b in blob_service.get_container_client(container).list_blobs())
        assert names == ["logs/writer-stdout.txt", "results/a.txt", "results/sub/b.txt", "x.log"]
        blob = blob_service.get_blob_client(container, "logs/writer-stdout.txt").download_blob().readall()
        assert blob == b"done\n"
        assert "results/sub/b.txt" in read_task_file(client, job_id, "writer", "fileuploadout.txt")
    finally:
        cleanup(client, job_id, pool_id)


def test_upload_to_missing_container_fails_the_task(local_services):
    client = local_services.batch_client()
    pool_id, job_id = unique("pool"), unique("job")
    create_pool(client, pool_id, nodes=1)
    create_job(client, job_id, pool_id)
    url = _container_url(local_services, unique("missing"), write=True, create=True)
    try:
        client.create_task(
            job_id,
            models.BatchTaskCreateOptions(
                id="t",
                command_line="/bin/sh -c 'echo hi > f.txt'",
                output_files=[
                    models.OutputFile(
                        file_pattern="f.txt",
                        destination=models.OutputFileDestination(
                            container=models.OutputFileBlobContainerDestination(container_url=url)
                        ),
                        upload_options=models.OutputFileUploadConfiguration(
                            upload_condition=models.OutputFileUploadCondition.TASK_COMPLETION
                        ),
                    )
                ],
            ),
        )
        task = wait_task(client, job_id, "t")
        assert task.execution_info.exit_code == 0
        assert task.execution_info.result == models.BatchTaskExecutionResult.FAILURE
        assert task.execution_info.failure_info.code == "FileUploadContainerNotFound"
    finally:
        cleanup(client, job_id, pool_id)


def test_container_and_auto_storage_resource_files(local_services):
    blob_service = local_services.blob_service()
    container = unique("in")
    container_client = blob_service.create_container(container)
    for name in ("data/one.txt", "data/two.txt", "other/skip.txt"):
        container_client.upload_blob(name, name.encode())
    client = local_services.batch_client()
    pool_id, job_id = unique("pool"), unique("job")
    create_pool(client, pool_id, nodes=1)
    create_job(client, job_id, pool_id)
    url = _container_url(local_services, container, read=True, list=True)
    try:
        client.create_tasks(
            job_id,
            [
                models.BatchTaskCreateOptions(
                    id="sas",
                    command_line="/bin/sh -c 'cat inputs/data/one.txt inputs/data/two.txt; ls inputs/other 2>&1; stat -c %a inputs/data/one.txt'",
                    resource_files=[
                        models.ResourceFile(
                            storage_container_url=url, blob_prefix="data/", file_path="inputs", file_mode="0640"
                        )
                    ],
                ),
                models.BatchTaskCreateOptions(
                    id="auto",
                    command_line="cat other/skip.txt",
                    resource_files=[models.ResourceFile(auto_storage_container_name=container, blob_prefix="other/")],
                ),
                models.BatchTaskCreateOptions(
                    id="missing",
                    command_line="true",
                    resource_files=[
                        models.ResourceFile(
                            http_url=f"{local_services.blob_endpoint}/{container}/nope.txt", file_path="nope.txt"
                        )
                    ],
                ),
            ],
        )
        sas = wait_task(client, job_id, "sas")
        assert sas.execution_info.exit_code == 0
        out = read_task_file(client, job_id, "sas", "stdout.txt")
        assert out.startswith("data/one.txtdata/two.txt") and out.endswith("640\n")
        assert "No such file" in out  # only blobs under the prefix were fetched
        assert read_task_file(client, job_id, "auto", "stdout.txt") == "other/skip.txt"
        missing = wait_task(client, job_id, "missing")
        assert missing.execution_info.failure_info.category == models.BatchErrorSourceCategory.USER_ERROR
        assert missing.execution_info.failure_info.code in ("BlobNotFound", "BlobAccessDenied")
        assert missing.execution_info.exit_code is None
    finally:
        cleanup(client, job_id, pool_id)


def test_task_files_api(local_services):
    client = local_services.batch_client()
    with pool_and_job(client, nodes=1) as (pool_id, job_id):
        client.create_task(
            job_id,
            models.BatchTaskCreateOptions(
                id="t",
                command_line='/bin/sh -c \'mkdir -p "sub dir"; printf hello-world > "sub dir/out.txt"; env | grep ^AZ_BATCH_ | sort\'',
                environment_settings=[models.EnvironmentSetting(name="MINE", value="1")],
            ),
        )
        wait_task(client, job_id, "t")
        assert b"".join(client.download_task_file(job_id, "t", "wd/sub dir/out.txt", ocp_range="bytes=0-4")) == b"hello"
        props = client.get_task_file_properties(job_id, "t", "wd/sub dir/out.txt")
        assert props.content_length == 11 and props.is_directory is False
        names = {f.name for f in client.list_task_files(job_id, "t", recursive=True)}
        assert {"wd", "wd/sub dir", "wd/sub dir/out.txt", "stdout.txt", "stderr.txt"} <= names
        env = dict(line.split("=", 1) for line in read_task_file(client, job_id, "t", "stdout.txt").splitlines())
        assert (
            env["AZ_BATCH_TASK_ID"] == "t" and env["AZ_BATCH_JOB_ID"] == job_id and env["AZ_BATCH_POOL_ID"] == pool_id
        )
        assert env["AZ_BATCH_TASK_WORKING_DIR"].endswith(f"workitems/{job_id}/job-1/t/wd")
        assert env["AZ_BATCH_ACCOUNT_URL"] == local_services.batch_endpoint
        task = client.get_task(job_id, "t")
        assert task.node_info.task_root_directory == f"workitems/{job_id}/job-1/t"


def test_files_move_through_azurite_when_a_proxy_is_set_for_the_internet(local_services):
    """A service started where HTTP(S)_PROXY point at a proxy (here one that does not exist) and NO_PROXY is
    unset still reaches Azurite on 127.0.0.1 for resource files (container, auto-storage, http) and outputs."""
    blob_service = local_services.blob_service()
    container = unique("proxy")
    blob_service.create_container(container).upload_blob("in.txt", b"through no proxy\n")
    read_url = _container_url(local_services, container, read=True, list=True)
    write_url = _container_url(local_services, container, write=True, create=True)
    blob_url = f"{local_services.blob_endpoint}/{container}/in.txt?{read_url.split('?', 1)[1]}"
    with_proxy = {name: "http://127.0.0.1:9" for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    restart_batch(local_services, with_proxy)  # the discard port: nothing answers there
    try:
        client = local_services.batch_client()
        output = models.OutputFile(
            file_pattern="copy.txt",
            destination=models.OutputFileDestination(
                container=models.OutputFileBlobContainerDestination(container_url=write_url)
            ),
            upload_options=models.OutputFileUploadConfiguration(
                upload_condition=models.OutputFileUploadCondition.TASK_SUCCESS
            ),
        )
        with pool_and_job(client) as (_, job_id):
            client.create_task(
                job_id,
                models.BatchTaskCreateOptions(
                    id="copier",
                    command_line="/bin/sh -c 'cat a/in.txt b/in.txt c.txt > copy.txt'",
                    resource_files=[
                        models.ResourceFile(storage_container_url=read_url, file_path="a"),
                        models.ResourceFile(auto_storage_container_name=container, file_path="b"),
                        models.ResourceFile(http_url=blob_url, file_path="c.txt"),
                    ],
                    output_files=[output],
                ),
            )
            task = wait_task(client, job_id, "copier")
            assert task.execution_info.result == models.BatchTaskExecutionResult.SUCCESS, (
                task.execution_info.failure_info
            )
        copied = blob_service.get_blob_client(container, "copy.txt").download_blob().readall()
        assert copied == b"through no proxy\n" * 3
    finally:
        restart_batch(local_services, {})  # the rest of the session gets a service without them


def restart_batch(local_services, environment: dict[str, str]) -> None:
    """Start the session's Batch service again with ``environment`` added to its own (NO_PROXY removed),
    while this test process keeps its environment."""
    local_services.kill_batch()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        if environment:
            patch.delenv("NO_PROXY", raising=False)
            patch.delenv("no_proxy", raising=False)
        local_services.start_batch()
