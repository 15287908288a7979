"""Adding, listing, paging and counting tasks through azure-batch 15.1.0."""

from __future__ import annotations

import time

import pytest
from azure.batch import models
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from tests.conftest import unique
from tests.local.support import (
    cleanup,
    create_job,
    create_pool,
    pool_and_job,
    wait_for,
    wait_task,
    wait_tasks_completed,
)


@pytest.fixture
def idle_job(local_services):
    """A job on a pool without nodes: its tasks stay active, so listing is not disturbed by runs."""
    client = local_services.batch_client()
    pool_id, job_id = unique("pool"), unique("job")
    create_pool(client, pool_id, nodes=0)
    create_job(client, job_id, pool_id)
    yield client, job_id
    cleanup(client, job_id, pool_id)


def _tasks(count: int, prefix: str = "t") -> list[models.BatchTaskCreateOptions]:
    return [models.BatchTaskCreateOptions(id=f"{prefix}{i}", command_line="true") for i in range(count)]


def test_create_tasks_1000_and_resubmit_same_ids(idle_job):
    client, job_id = idle_job
    result = client.create_tasks(job_id, _tasks(1000))
    assert all(r.status == models.BatchTaskAddStatus.SUCCESS for r in result.result_values)
    assert len(result.result_values) == 1000
    assert len(list(client.list_tasks(job_id))) == 1000
    # Resubmitting after a lost answer must be harmless: TaskExists counts as success.
    client.create_tasks(job_id, _tasks(1000))
    assert len(list(client.list_tasks(job_id))) == 1000
    with pytest.raises(ResourceExistsError) as raised:
        client.create_task(job_id, models.BatchTaskCreateOptions(id="T5", command_line="true"))
    assert raised.value.error.code == "TaskExists"


def test_collection_reports_each_task(local_services, idle_job):
    client, job_id = idle_job
    client.create_task(job_id, models.BatchTaskCreateOptions(id="dup", command_line="true"))
    answer = client.create_task_collection(
        job_id,
        models.BatchTaskGroup(
            task_values=[
                models.BatchTaskCreateOptions(id="dup", command_line="true"),
                models.BatchTaskCreateOptions(id="fresh", command_line="true"),
                models.BatchTaskCreateOptions(id="bad id!", command_line="true"),
            ]
        ),
    )
    by_id = {r.task_id: r for r in answer.result_values}
    assert by_id["dup"].status == models.BatchTaskAddStatus.CLIENT_ERROR
    assert by_id["dup"].error.code == "TaskExists"
    assert by_id["fresh"].status == models.BatchTaskAddStatus.SUCCESS
    assert by_id["bad id!"].error.code == "InvalidPropertyValue"


def test_paging_through_2500_tasks(idle_job):
    client, job_id = idle_job
    client.create_tasks(job_id, _tasks(2500))
    pages = list(client.list_tasks(job_id, max_results=1000).by_page())
    sizes = [len(list(page)) for page in pages]
    assert sizes == [1000, 1000, 500]
    ids = [t.id for t in client.list_tasks(job_id, max_results=700, select=["id", "state"])]
    assert len(ids) == len(set(ids)) == 2500
    filtered = list(client.list_tasks(job_id, filter="startswith(id,'t24') and state eq 'active'", max_results=50))
    assert sorted(t.id for t in filtered) == sorted(f"t{i}" for i in range(2500) if str(i).startswith("24"))
    selected = next(iter(client.list_tasks(job_id, select=["id"], max_results=1)))
    assert selected.id and selected.command_line is None and selected.state is None


def test_task_counts_agree_with_listing(local_services):
    client = local_services.batch_client()
    with pool_and_job(client, nodes=1, pool_options={"task_slots_per_node": 3}) as (pool_id, job_id):
        client.create_tasks(
            job_id,
            [models.BatchTaskCreateOptions(id=f"ok{i}", command_line="true") for i in range(4)]
            + [models.BatchTaskCreateOptions(id=f"bad{i}", command_line="/bin/sh -c 'exit 3'") for i in range(2)]
            + [models.BatchTaskCreateOptions(id="big", command_line="true", required_slots=2)],
        )
        tasks = wait_tasks_completed(client, job_id)
        counts = client.get_job_task_counts(job_id)
        succeeded = [t for t in tasks if t.execution_info.result == models.BatchTaskExecutionResult.SUCCESS]
        failed = list(client.list_tasks(job_id, filter="executionInfo/result eq 'failure'"))
        assert counts.task_counts.completed == len(tasks) == 7
        assert counts.task_counts.succeeded == len(succeeded) == 5
        assert counts.task_counts.failed == len(failed) == 2
        assert counts.task_counts.active == counts.task_counts.running == 0
        assert counts.task_slot_counts.completed == 8
        assert {t.execution_info.exit_code for t in failed} == {3}
        assert failed[0].execution_info.failure_info.code == "FailureExitCode"


def test_missing_resources_are_404(local_services):
    client = local_services.batch_client()
    with pytest.raises(ResourceNotFoundError) as raised:
        client.get_job(unique("nojob"))
    assert raised.value.error.code == "JobNotFound"
    with pytest.raises(ResourceNotFoundError) as raised:
        client.get_pool(unique("nopool"))
    assert raised.value.error.code == "PoolNotFound"


def test_a_node_reports_its_running_tasks_and_what_it_ran(local_services):
    """runningTasksCount, runningTaskSlotsCount and running/idle are worked out from the runs when asked."""
    client = local_services.batch_client()
    with pool_and_job(client, nodes=1, pool_options={"task_slots_per_node": 3}) as (pool_id, job_id):
        before = wait_for(
            lambda: (
                (nodes := list(client.list_nodes(pool_id)))
                and nodes[0].state == models.BatchNodeState.IDLE
                and nodes[0]
            ),
            what="an idle node",
        )
        assert before.running_tasks_count == before.running_task_slots_count == 0
        flag = "$AZ_BATCH_NODE_SHARED_DIR/go"
        client.create_tasks(
            job_id,
            [
                models.BatchTaskCreateOptions(
                    id="slow", command_line=f"/bin/sh -c 'while [ ! -e {flag} ]; do sleep 0.05; done'"
                ),
                models.BatchTaskCreateOptions(id="wide", command_line="/bin/sh -c 'sleep 0.5'", required_slots=2),
            ],
        )
        busy = wait_for(
            lambda: (n := client.get_node(pool_id, before.id)).running_tasks_count == 2 and n, what="two running tasks"
        )
        assert busy.state == models.BatchNodeState.RUNNING and busy.running_task_slots_count == 3
        assert busy.state_transition_time >= before.state_transition_time
        running = list(client.list_nodes(pool_id, filter="state eq 'running'"))
        assert [n.id for n in running] == [before.id]
        wait_task(client, job_id, "wide")
        assert client.get_node(pool_id, before.id).running_task_slots_count == 1
        open_flag = models.BatchTaskCreateOptions(id="go", command_line=f"/bin/sh -c 'touch {flag}'")
        client.create_task(job_id, open_flag)
        wait_tasks_completed(client, job_id)
        after = wait_for(
            lambda: (n := client.get_node(pool_id, before.id)).state == models.BatchNodeState.IDLE and n, what="idle"
        )
        assert after.running_tasks_count == after.running_task_slots_count == 0
        assert after.total_tasks_run == after.total_tasks_succeeded == 3
        assert {t.task_id for t in after.recent_tasks} == {"slow", "wide", "go"}
        assert after.state_transition_time > busy.state_transition_time
        assert list(client.list_nodes(pool_id, filter="state eq 'running'")) == []
        time.sleep(1.5)  # what a node ran reaches its row within a second: then a crash keeps it
        local_services.kill_batch()
        local_services.start_batch()
        restarted = client.get_node(pool_id, before.id)
        assert restarted.total_tasks_run == 3 and {t.task_id for t in restarted.recent_tasks} == {"slow", "wide", "go"}
