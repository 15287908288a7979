"""SIGKILL `apply` inside each of the nine steps, run it again, and check nothing was lost or done twice."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from batchflow.plan.build import STEPS
from tests.e2e.harness import Batchflow, check_topwords_outputs, run_names, topwords_variant

KEEP_ALL = "  containers: keep\n  job: keep\n  pool: keep\n"
DELETE_ALL = "  containers: delete\n  job: delete\n  pool: delete\n"


def _kill_inside(batchflow: Batchflow, workflow: Path, step: str) -> None:
    process = batchflow.start("apply", str(workflow), BATCHFLOW_FAULT_PAUSE=step, BATCHFLOW_FAULT_PAUSE_SECONDS="120")
    deadline = time.monotonic() + 120
    seen = ""
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen += line
        if f"paused inside step {step}" in line:
            break
        if not line and process.poll() is not None:
            pytest.fail(f"apply ended ({process.returncode}) before pausing in {step}:\n{seen}")
    else:
        process.kill()
        pytest.fail(f"apply never paused in {step}:\n{seen}")
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    state = json.loads(next((batchflow.cwd / ".batchflow").glob("*/state.json")).read_text())
    assert state["steps"][step]["status"] == "running", state["steps"][step]


@pytest.mark.parametrize("step", [key for key, _ in STEPS])
def test_killed_inside_a_step_resumes_to_the_same_result(batchflow: Batchflow, local_services, step: str) -> None:  # noqa: ANN001
    marker = batchflow.cwd / "executions.log"
    cleanup = DELETE_ALL if step.startswith("delete") else KEEP_ALL
    workflow, pool, job = topwords_variant(batchflow.cwd, cleanup=cleanup, marker=marker, sleep=0.5, extra_files=5)
    physical_job = run_names(batchflow, workflow)[1]

    _kill_inside(batchflow, workflow, step)
    resumed = batchflow.run("apply", str(workflow))
    assert resumed.returncode == 0, resumed.stderr
    assert "took over the lock left by apply" in resumed.stderr

    inputs = sorted((batchflow.cwd / "topwords" / "data").glob("*.txt"))
    check_topwords_outputs(inputs, batchflow.cwd / "output" / "topwords", 3, job, pool)
    executions = marker.read_text().split()
    assert sorted(executions) == sorted(f"topNtask{i}" for i in range(len(inputs))), "a task ran twice or not at all"

    if cleanup == KEEP_ALL:
        client = local_services.batch_client()
        tasks = list(client.list_tasks(physical_job))
        assert len(tasks) == len(inputs), "duplicate or missing tasks"
        assert all(t.execution_info.retry_count == 0 and t.execution_info.exit_code == 0 for t in tasks)
        destroyed = batchflow.run("destroy", str(workflow), "--yes")
        assert destroyed.returncode == 0, destroyed.stderr
    else:
        assert pool not in {p.id for p in local_services.batch_client().list_pools()}


def test_pool_deleted_during_monitoring_is_reported_and_recreated(batchflow: Batchflow, local_services) -> None:  # noqa: ANN001
    workflow, pool, job = topwords_variant(batchflow.cwd, sleep=2, extra_files=3)
    process = batchflow.start(
        "apply", str(workflow), BATCHFLOW_FAULT_PAUSE="monitor", BATCHFLOW_FAULT_PAUSE_SECONDS="2"
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "paused inside step monitor" in line:
            break
    local_services.batch_client().begin_delete_pool(pool, polling_interval=1).result()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert f"pool {pool} no longer exists" in err

    resumed = batchflow.run("apply", str(workflow))
    assert resumed.returncode == 0, resumed.stderr
    assert "was done, but what it made is gone; doing it again" in resumed.stderr
    inputs = sorted((batchflow.cwd / "topwords" / "data").glob("*.txt"))
    check_topwords_outputs(inputs, batchflow.cwd / "output" / "topwords", 3, job, pool)
    batchflow.run("destroy", str(workflow), "--yes")


def test_queued_tasks_get_fresh_tokens_when_a_resume_comes_late(batchflow: Batchflow, local_services) -> None:  # noqa: ANN001
    marker = batchflow.cwd / "executions.log"
    workflow, pool, job = topwords_variant(batchflow.cwd, marker=marker, sleep=1, extra_files=5)
    _kill_inside(batchflow, workflow, "monitor")
    physical_job = run_names(batchflow, workflow)[1]
    queued = {t.id for t in local_services.batch_client().list_tasks(physical_job, filter="state eq 'active'")}
    assert queued, "every task had started; the test needs some still queued"

    # as if the laptop slept past the tokens' expiry
    state_file = next((batchflow.cwd / ".batchflow").glob("*/state.json"))
    state = json.loads(state_file.read_text())
    state["steps"]["tasks"]["summary"]["tokens_expire"] = "2000-01-01T00:00:00+00:00"
    state_file.write_text(json.dumps(state))

    resumed = batchflow.run("apply", str(workflow))
    assert resumed.returncode == 0, resumed.stderr
    assert "queued task(s) had SAS tokens about to expire; added them again with fresh ones" in resumed.stderr
    inputs = sorted((batchflow.cwd / "topwords" / "data").glob("*.txt"))
    check_topwords_outputs(inputs, batchflow.cwd / "output" / "topwords", 3, job, pool)
    assert sorted(marker.read_text().split()) == sorted(f"topNtask{i}" for i in range(len(inputs)))
    batchflow.run("destroy", str(workflow), "--yes")
