"""Process trees end with their task, and a crashed service picks up where it was."""

from __future__ import annotations

import subprocess
import time

from azure.batch import models

from tests.conftest import task_processes, unique
from tests.local.support import (
    cleanup,
    create_job,
    create_pool,
    pool_and_job,
    read_task_file,
    wait_for,
    wait_task,
    wait_tasks_completed,
)


def test_deleting_a_job_with_running_tasks_leaves_no_process(local_services):
    client = local_services.batch_client()
    pool_id, job_id = unique("pool"), unique("job")
    create_pool(client, pool_id, nodes=2, task_slots_per_node=2)
    create_job(client, job_id, pool_id)
    try:
        # Each task forks: a background sleeper and a foreground one, so a whole tree must die.
        client.create_tasks(
            job_id,
            [
                models.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/sh -c 'sleep 60 & sleep 60'")
                for i in range(3)
            ],
        )
        wait_for(lambda: client.get_job_task_counts(job_id).task_counts.running == 3, what="three running tasks")
        wait_for(lambda: len(task_processes(local_services.home)) >= 6, what="the task process trees")
        client.begin_delete_job(job_id, polling_interval=0.05).result()
        assert task_processes(local_services.home) == []
    finally:
        cleanup(client, pool_id=pool_id)


def test_terminating_tasks_and_jobs(local_services):
    client = local_services.batch_client()
    with pool_and_job(client, nodes=1, pool_options={"task_slots_per_node": 2}) as (pool_id, job_id):
        client.create_tasks(
            job_id, [models.BatchTaskCreateOptions(id=f"t{i}", command_line="sleep 60") for i in range(3)]
        )
        running = wait_for(lambda: list(client.list_tasks(job_id, filter="state eq 'running'")), what="a running task")
        client.terminate_task(job_id, running[0].id)
        ended = wait_task(client, job_id, running[0].id)
        assert ended.execution_info.failure_info.code == "TaskEnded"
        client.begin_terminate_job(job_id, {"terminateReason": "enough"}, polling_interval=0.05).result()
        job = client.get_job(job_id)
        assert job.state == models.BatchJobState.COMPLETED
        assert job.execution_info.termination_reason == "enough"
        states = {t.id: t.state for t in client.list_tasks(job_id)}
        assert list(states.values()).count(models.BatchTaskState.COMPLETED) >= 2
        assert task_processes(local_services.home) == []


def test_service_killed_and_restarted_finishes_every_task(local_services):
    client = local_services.batch_client()
    pool_id, job_id = unique("pool"), unique("job")
    create_pool(client, pool_id, nodes=2, task_slots_per_node=2)
    create_job(client, job_id, pool_id)
    command = "/bin/sh -c 'sleep 0.5; echo result-$AZ_BATCH_TASK_ID'"
    try:
        client.create_tasks(job_id, [models.BatchTaskCreateOptions(id=f"t{i}", command_line=command) for i in range(8)])
        wait_for(lambda: client.get_job_task_counts(job_id).task_counts.running >= 2, what="running tasks")
        local_services.kill_batch()
        local_services.start_batch()
        tasks = wait_tasks_completed(client, job_id, timeout=40)
        assert len(tasks) == 8
        for task in tasks:
            assert task.execution_info.exit_code == 0
            assert read_task_file(client, job_id, task.id, "stdout.txt") == f"result-{task.id}\n"
        assert any(task.execution_info.requeue_count >= 1 for task in tasks)
        assert client.get_pool(pool_id).current_dedicated_nodes == 2
    finally:
        cleanup(client, job_id, pool_id)


def test_a_restarted_service_ends_the_task_processes_a_crash_left(local_services):
    """The service records each task process it starts; after a crash, the next one ends those still running
    (and only those), then runs their tasks again."""
    client = local_services.batch_client()
    pool_id, job_id = unique("pool"), unique("job")
    create_pool(client, pool_id, nodes=1)
    create_job(client, job_id, pool_id)
    stranger = subprocess.Popen(["sleep", "60"])  # not the service's: must survive the restart
    try:
        command = "/bin/sh -c 'if [ -e again ]; then echo second; else touch again; sleep 60; fi'"
        client.create_task(job_id, models.BatchTaskCreateOptions(id="long", command_line=command))
        wait_for(lambda: len(task_processes(local_services.home)) >= 2, what="the task's shell and its sleep")
        left = set(task_processes(local_services.home))
        local_services.kill_batch()
        try:
            assert set(task_processes(local_services.home)) >= left, "a crash leaves its task processes running"
        finally:
            local_services.start_batch()
        wait_for(lambda: not left & set(task_processes(local_services.home)), what="the old processes to end")
        task = wait_task(client, job_id, "long")
        assert task.execution_info.exit_code == 0 and task.execution_info.requeue_count == 1
        assert read_task_file(client, job_id, "long", "stdout.txt") == "second\n"
        assert stranger.poll() is None
    finally:
        stranger.kill()
        cleanup(client, job_id, pool_id)


def test_a_job_made_again_right_after_its_delete_keeps_its_task_folders(local_services):
    """A deleted job's folders leave at once; removing them later must not take those of a new job of the same id.

    batchflow's retry deletes a job and makes it again under the same id; the old job's
    many task folders were still being removed when the new tasks wrote theirs.
    """
    client = local_services.batch_client()
    pool_id, job_id = unique("pool"), unique("job")
    create_pool(client, pool_id, nodes=2, task_slots_per_node=4)
    try:
        create_job(client, job_id, pool_id)
        client.create_tasks(
            job_id, [models.BatchTaskCreateOptions(id=f"old{i}", command_line="true") for i in range(1500)]
        )
        wait_tasks_completed(client, job_id, timeout=120)
        client.begin_delete_job(job_id, polling_interval=0.02).result()
        create_job(client, job_id, pool_id)
        client.create_tasks(
            job_id,
            [
                models.BatchTaskCreateOptions(id=f"new{i}", command_line=f"/bin/sh -c 'echo fresh-{i}'")
                for i in range(8)
            ],
        )
        wait_tasks_completed(client, job_id)
        time.sleep(1)  # let any removal still under way finish
        for i in range(8):
            assert read_task_file(client, job_id, f"new{i}", "stdout.txt") == f"fresh-{i}\n"
        trash = local_services.home / "batch" / "trash"
        wait_for(lambda: not any(trash.iterdir()), what="the trash to be emptied")
    finally:
        cleanup(client, job_id, pool_id)
