"""Things that go wrong: a failing start task, the wall clock, retries, a wrong key."""

from __future__ import annotations

import base64
import time
from datetime import timedelta

import pytest
from azure.batch import models
from azure.core.exceptions import HttpResponseError

from tests.conftest import unique
from tests.local.support import cleanup, create_job, create_pool, pool_and_job, read_task_file, wait_for, wait_task


def test_failing_start_task_leaves_node_starttaskfailed(local_services):
    client = local_services.batch_client()
    pool_id = unique("pool")
    start = models.BatchStartTask(
        command_line="/bin/sh -c 'echo starting; echo boom >&2; exit 3'",
        wait_for_success=True,
    )
    create_pool(client, pool_id, nodes=1, start_task=start)
    try:
        node = wait_for(
            lambda: next(
                (n for n in client.list_nodes(pool_id) if n.state == models.BatchNodeState.START_TASK_FAILED), None
            ),
            what="starttaskfailed",
        )
        assert node.start_task_info.exit_code == 3
        assert node.start_task_info.result == models.BatchTaskExecutionResult.FAILURE
        assert node.start_task_info.failure_info.code == "FailureExitCode"
        stderr = b"".join(client.download_node_file(pool_id, node.id, "startup/stderr.txt")).decode()
        assert stderr == "boom\n"
        names = {f.name for f in client.list_node_files(pool_id, node.id, recursive=True)}
        assert {"startup/stdout.txt", "startup/stderr.txt", "shared", "workitems"} <= names
    finally:
        cleanup(client, pool_id=pool_id)


def test_start_task_success_gates_tasks(local_services):
    client = local_services.batch_client()
    pool_id, job_id = unique("pool"), unique("job")
    start = models.BatchStartTask(
        command_line="/bin/sh -c 'sleep 0.3; echo ready > $AZ_BATCH_NODE_SHARED_DIR/flag'",
        environment_settings=[models.EnvironmentSetting(name="GREETING", value="hi")],
        wait_for_success=True,
    )
    create_pool(client, pool_id, nodes=1, start_task=start)
    create_job(client, job_id, pool_id)
    try:
        client.create_task(
            job_id,
            models.BatchTaskCreateOptions(id="t", command_line="/bin/sh -c 'cat $AZ_BATCH_NODE_SHARED_DIR/flag'"),
        )
        task = wait_task(client, job_id, "t")
        assert task.execution_info.exit_code == 0
        assert read_task_file(client, job_id, "t", "stdout.txt") == "ready\n"
    finally:
        cleanup(client, job_id, pool_id)


def test_task_exceeding_wall_clock_is_killed(local_services):
    client = local_services.batch_client()
    with pool_and_job(client, nodes=1) as (pool_id, job_id):
        client.create_task(
            job_id,
            models.BatchTaskCreateOptions(
                id="slow",
                command_line="/bin/sh -c 'sleep 30 & sleep 30'",
                constraints=models.BatchTaskConstraints(
                    max_wall_clock_time=timedelta(seconds=1), max_task_retry_count=3
                ),
            ),
        )
        started = time.monotonic()
        task = wait_task(client, job_id, "slow", timeout=10)
        assert time.monotonic() - started < 5
        assert task.execution_info.result == models.BatchTaskExecutionResult.FAILURE
        assert task.execution_info.failure_info.code == "MaxWallClockTimeExceeded"
        assert task.execution_info.retry_count == 0


def test_retries_until_the_limit_then_fail(local_services):
    client = local_services.batch_client()
    pool_id, job_id = unique("pool"), unique("job")
    create_pool(client, pool_id, nodes=1)
    create_job(client, job_id, pool_id)
    counting = "/bin/sh -c 'n=$(cat ../count 2>/dev/null || echo 0); n=$((n+1)); echo $n > ../count; test $n -ge {}'"
    try:
        client.create_tasks(
            job_id,
            [
                models.BatchTaskCreateOptions(
                    id="never",
                    command_line=counting.format(99),
                    constraints=models.BatchTaskConstraints(max_task_retry_count=2),
                ),
                models.BatchTaskCreateOptions(
                    id="third",
                    command_line=counting.format(3),
                    constraints=models.BatchTaskConstraints(max_task_retry_count=5),
                ),
            ],
        )
        never = wait_task(client, job_id, "never")
        assert never.execution_info.retry_count == 2
        assert never.execution_info.exit_code == 1
        assert never.execution_info.result == models.BatchTaskExecutionResult.FAILURE
        third = wait_task(client, job_id, "third")
        assert third.execution_info.retry_count == 2
        assert third.execution_info.result == models.BatchTaskExecutionResult.SUCCESS
        assert third.execution_info.last_retry_time is not None
    finally:
        cleanup(client, job_id, pool_id)


def test_wrong_key_is_rejected(local_services):
    wrong = base64.b64encode(b"not the well-known local key at all").decode()
    client = local_services.batch_client(key=wrong)
    with pytest.raises(HttpResponseError) as raised:
        list(client.list_pools())
    assert raised.value.status_code == 403
    assert raised.value.error.code == "AuthenticationFailed"


def test_job_actions_terminate_on_failure_and_completion(local_services):
    client = local_services.batch_client()
    pool_id = unique("pool")
    create_pool(client, pool_id, nodes=1)
    failing, finishing = unique("job"), unique("job")
    create_job(client, failing, pool_id, task_failure_mode=models.BatchTaskFailureMode.PERFORM_EXIT_OPTIONS_JOB_ACTION)
    create_job(client, finishing, pool_id)
    try:
        client.create_task(failing, models.BatchTaskCreateOptions(id="f", command_line="false"))
        job = wait_for(
            lambda: (j := client.get_job(failing)).state == models.BatchJobState.COMPLETED and j, what="job terminated"
        )
        assert job.execution_info.termination_reason == "TaskFailed"
        client.create_task(finishing, models.BatchTaskCreateOptions(id="a", command_line="true"))
        client.update_job(
            finishing,
            models.BatchJobUpdateOptions(all_tasks_complete_mode=models.BatchAllTasksCompleteMode.TERMINATE_JOB),
        )
        job = wait_for(
            lambda: (j := client.get_job(finishing)).state == models.BatchJobState.COMPLETED and j, what="job completed"
        )
        assert job.execution_info.termination_reason == "AllTasksComplete"
    finally:
        cleanup(client, failing)
        cleanup(client, finishing, pool_id)


def test_dependencies_wait_and_block(local_services):
    client = local_services.batch_client()
    with pool_and_job(
        client, nodes=1, pool_options={"task_slots_per_node": 4}, job_options={"uses_task_dependencies": True}
    ) as (pool_id, job_id):
        client.create_tasks(
            job_id,
            [
                models.BatchTaskCreateOptions(
                    id="1", command_line="/bin/sh -c 'sleep 0.3; echo one > $AZ_BATCH_NODE_SHARED_DIR/one'"
                ),
                models.BatchTaskCreateOptions(id="2", command_line="false"),
                models.BatchTaskCreateOptions(
                    id="after",
                    command_line="/bin/sh -c 'cat $AZ_BATCH_NODE_SHARED_DIR/one'",
                    depends_on=models.BatchTaskDependencies(task_id_ranges=[models.BatchTaskIdRange(start=1, end=1)]),
                ),
                models.BatchTaskCreateOptions(
                    id="blocked", command_line="true", depends_on=models.BatchTaskDependencies(task_ids=["1", "2"])
                ),
            ],
        )
        after = wait_task(client, job_id, "after")
        assert after.execution_info.exit_code == 0
        time.sleep(0.3)
        assert client.get_task(job_id, "blocked").state == models.BatchTaskState.ACTIVE
