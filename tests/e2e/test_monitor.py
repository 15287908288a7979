"""The monitor lists each completed task about once, and never misses one: staggered tasks, faults, a kill."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from batchflow.state import StateStore
from tests.e2e.harness import Batchflow

SWEEP = """\
name: sweep
pool:
  id: {pool}
  vm_size: standard_d2s_v3
  image: {{publisher: canonical, offer: ubuntu-24_04-lts, sku: server, node_agent_sku: batch.node.ubuntu 24.04}}
  nodes: {{{nodes}}}
job:
  id: {job}
tasks:
  for_each:
    range: {{from: 1, to: {count}}}
  template:
    id: t{{{{ value }}}}
    # Staggered: tasks end at many different moments, some in the same millisecond.
    command: echo "$AZ_BATCH_TASK_ID" >> {marker}; sleep 0.0{{{{ value % 4 }}}}
cleanup: {{job: delete, pool: delete}}
"""


def sweep(folder: Path, count: int, nodes: str = "dedicated: 2") -> tuple[Path, Path]:
    marker = folder / "executions.log"
    workflow = folder / "sweep.yaml"
    suffix = folder.name[-8:].replace("_", "-").lower()
    workflow.write_text(
        SWEEP.format(pool=f"sweep-{suffix}", job=f"sweep-{suffix}", count=count, nodes=nodes, marker=marker)
    )
    return workflow, marker


def state_of(folder: Path) -> dict:
    return json.loads(next(folder.glob(".batchflow/*/state.json")).read_text())


def check_every_task_recorded_once(folder: Path, marker: Path, count: int) -> dict:
    state = state_of(folder)
    tasks = state["tasks"]
    assert sorted(tasks) == sorted(f"t{i}" for i in range(1, count + 1))
    assert all(t["state"] == "completed" and t["result"] == "success" for t in tasks.values())
    executions = marker.read_text().split()
    assert sorted(set(executions)) == sorted(tasks)
    return state["steps"]["monitor"]["summary"]


def test_each_completed_task_is_fetched_about_once(batchflow: Batchflow) -> None:
    workflow, marker = sweep(batchflow.cwd, 120)
    run = batchflow.run("apply", str(workflow))
    assert run.returncode == 0, run.stderr
    watched = check_every_task_recorded_once(batchflow.cwd, marker, 120)
    assert len(marker.read_text().split()) == 120  # nothing ran twice
    assert watched["listings"] >= 2, watched  # the listing was incremental, not one listing at the end
    # Each listing may return the tasks that share the latest time already seen, once more.
    assert watched["records_listed"] <= 120 + 2 * watched["listings"], watched


def test_a_kill_while_watching_loses_no_task(batchflow: Batchflow) -> None:
    workflow, marker = sweep(batchflow.cwd, 80, nodes="dedicated: 1")
    process = batchflow.start("apply", str(workflow))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if marker.exists() and len(marker.read_text().split()) >= 30:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert state_of(batchflow.cwd)["steps"]["monitor"]["status"] == "running"
    resumed = batchflow.run("apply", str(workflow))
    assert resumed.returncode == 0, resumed.stderr
    check_every_task_recorded_once(batchflow.cwd, marker, 80)
    assert len(marker.read_text().split()) == 80  # the resume adopted the tasks; none ran twice


def completed_in_state(folder: Path) -> set[str]:
    """The tasks the run's state (snapshot and journal) records as completed, read as a resumed apply reads it."""
    runs = list(folder.glob(".batchflow/*/state.json"))
    if not runs:
        return set()
    state = StateStore(runs[0].parent).load()
    return {task_id for task_id, record in state.tasks.items() if record.state == "completed"}


def test_a_resumed_monitor_fetches_only_what_changed_after_the_kill(batchflow: Batchflow) -> None:
    workflow, marker = sweep(batchflow.cwd, 80, nodes="dedicated: 1")
    process = batchflow.start("apply", str(workflow))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(completed_in_state(batchflow.cwd)) < 30:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert state_of(batchflow.cwd)["steps"]["monitor"]["status"] == "running"
    recorded = completed_in_state(batchflow.cwd)
    assert 30 <= len(recorded) < 80, len(recorded)

    resumed = batchflow.run("apply", str(workflow))
    assert resumed.returncode == 0, resumed.stderr
    check_every_task_recorded_once(batchflow.cwd, marker, 80)
    assert len(marker.read_text().split()) == 80  # adopted, none ran twice
    watched = state_of(batchflow.cwd)["steps"]["monitor"]["summary"]
    # The resumed monitor fetched the tasks that completed after the kill (plus, per listing, those
    # sharing the newest time already known), not every completed task again.
    changed_after_kill = 80 - len(recorded)
    assert watched["records_listed"] <= changed_after_kill + 2 * watched["listings"], (watched, len(recorded))
