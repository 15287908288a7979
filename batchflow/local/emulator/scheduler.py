"""Node allocation, the task queue, state transitions, retries and job actions.

The :class:`Service` owns the store, the running processes and one lock.
Handlers change resources under that lock and call :meth:`Service.wake`;
the scheduling thread sleeps on a condition variable until something
changed (a task added, a run ended, a node became idle), so an idle
service uses no CPU. Work that takes time (killing and waiting for
processes, running a start task, deleting a job) happens on short-lived
threads, never while holding the lock.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchflow.local.emulator import noderunner, wire
from batchflow.local.emulator.config import Config
from batchflow.local.emulator.faults import Faults
from batchflow.local.emulator.noderunner import Outcome, Run
from batchflow.local.emulator.store import Store
from batchflow.local.emulator.workers import Workers

_USABLE_NODE_STATES = ("idle", "running")
_RECENT_TASKS = 5
#: How long what a busy node ran may wait in memory before its row is written (see _NodeNews).
_NODE_NEWS_SECONDS = 1.0


@dataclass
class _NodeNews:
    """What a node ran since its row was last written: its ``totalTasksRun``, ``totalTasksSucceeded`` and
    ``recentTasks`` to come.

    A node's row was read and written at every task end for these; now it is written a
    second after the first task the news is about ended, and when the service stops.
    Clients see the news at once (:meth:`Service.live_node`); a crash of the service
    loses at most that second of it.
    """

    pool_id: str
    ran: int = 0
    succeeded: int = 0
    recent: list[dict[str, Any]] = field(default_factory=list)  # newest first

    def add(self, task: dict[str, Any], job_id: str, succeeded: bool) -> None:
        self.ran += 1
        self.succeeded += 1 if succeeded else 0
        entry = {
            "taskUrl": task["url"],
            "jobId": job_id,
            "taskId": task["id"],
            "taskState": task["state"],
            "executionInfo": task.get("executionInfo"),
        }
        self.recent = [entry, *[t for t in self.recent if t["taskUrl"] != task["url"]]][:_RECENT_TASKS]

    def applied_to(self, node: dict[str, Any]) -> dict[str, Any]:
        """``node`` with this news added (a new dict; ``node`` is left as it was)."""
        urls = {t["taskUrl"] for t in self.recent}
        recent = self.recent + [t for t in node.get("recentTasks", []) if t.get("taskUrl") not in urls]
        return dict(
            node,
            totalTasksRun=int(node.get("totalTasksRun", 0)) + self.ran,
            totalTasksSucceeded=int(node.get("totalTasksSucceeded", 0)) + self.succeeded,
            recentTasks=recent[:_RECENT_TASKS],
        )


def _key(value: str) -> str:
    return value.lower()


def exit_options(task: dict[str, Any], outcome: Outcome) -> dict[str, str]:
    """The ``exitOptions`` that apply to how ``task`` ended, with Batch's defaults filled in."""
    conditions = task.get("exitConditions") or {}
    chosen: dict[str, Any] | None = None
    if outcome.kind == "preprocessing":
        chosen = conditions.get("preProcessingError")
    elif outcome.upload_failed:
        chosen = conditions.get("fileUploadError")
    elif outcome.exit_code is not None:
        for item in conditions.get("exitCodes") or []:
            if item.get("code") == outcome.exit_code:
                chosen = item.get("exitOptions")
                break
        if chosen is None:
            for item in conditions.get("exitCodeRanges") or []:
                if int(item.get("start", 0)) <= outcome.exit_code <= int(item.get("end", -1)):
                    chosen = item.get("exitOptions")
                    break
    if chosen is None:
        chosen = conditions.get("default")
    options = dict(chosen or {})
    success = outcome.failure is None and outcome.exit_code == 0
    options.setdefault("jobAction", "none" if success else "terminate")
    options.setdefault("dependencyAction", "satisfy" if success else "block")
    return options


def dependency_ids(depends_on: dict[str, Any] | None) -> list[str]:
    """Every task id a ``dependsOn`` names, ranges expanded."""
    if not depends_on:
        return []
    ids = list(depends_on.get("taskIds") or [])
    for item in depends_on.get("taskIdRanges") or []:
        ids.extend(str(number) for number in range(int(item["start"]), int(item["end"]) + 1))
    return ids


class Service:
    """The local Batch account: resources in SQLite, tasks as local processes."""

    def __init__(self, config: Config, faults: Faults | None = None) -> None:
        self.config = config
        self.faults = faults or Faults()
        self.store = Store(config.state_path)
        self.lock = threading.RLock()
        self._wakeup = threading.Condition(self.lock)
        self._dirty = False
        self._stopping = threading.Event()
        self.runs: dict[tuple[str, str], Run] = {}  # (job key, task key) -> run
        self.start_runs: dict[str, Run] = {}  # node id -> start task run
        self._timers: list[threading.Timer] = []
        self._loop_thread: threading.Thread | None = None
        self._threads = Workers("run")  # runs and background work (deletes, node starts)
        # Node id -> when its runs last went from none to some or back: see live_node.
        self._node_turned: dict[str, str] = {}
        self._node_news: dict[str, _NodeNews] = {}  # node id -> what it ran since its row was written

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Recover what a previous instance left, then start scheduling."""
        with self.lock:
            self._recover()
        self._loop_thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._loop_thread.start()
        self.wake()

    def stop(self) -> None:
        """Kill every task process tree and stop; running tasks are requeued at the next start."""
        self._stopping.set()
        with self.lock:
            runs = [*self.runs.values(), *self.start_runs.values()]
            for timer in self._timers:
                timer.cancel()
            self._wakeup.notify_all()
        for run in runs:
            run.kill("shutdown")
        for run in runs:
            run.done.wait(10)
        if self._loop_thread is not None:
            self._loop_thread.join(5)
        with self.lock:
            with self.store.transaction():
                for node_id in list(self._node_news):
                    self._write_node_news(node_id)
            self.store.close()

    def wake(self) -> None:
        """Tell the scheduling thread something changed."""
        with self._wakeup:
            self._dirty = True
            self._wakeup.notify()

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        if self._stopping.is_set():
            return
        self._threads.submit(target, *args)

    def _later(self, seconds: float, target: Callable[..., None], *args: Any) -> None:
        if self._stopping.is_set():
            return
        timer = threading.Timer(seconds, self._guarded, args=(target, *args))
        timer.daemon = True
        with self.lock:
            self._timers = [t for t in self._timers if t.is_alive()]
            self._timers.append(timer)
        timer.start()

    def _guarded(self, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        except Exception:  # a background failure must not kill the service; say what happened
            traceback.print_exc()

    # --- urls ------------------------------------------------------------------

    def url(self, *parts: str) -> str:
        return "/".join([self.config.endpoint, *parts])

    # --- recovery --------------------------------------------------------------

    def _recover(self) -> None:
        if self.config.trash_dir.is_dir():  # what a crash left half removed (the folder itself stays in use)
            for leftover in self.config.trash_dir.iterdir():
                self._spawn(self._remove_dir_after, leftover, [])
        for pid in noderunner.processes_under(self.config.nodes_text):
            noderunner.kill_tree(pid)
        self.store.forget_processes()  # recorded by services before this one, which wrote each task's pid
        for state in ("running", "preparing"):
            for job_key in self.store.jobs_with_tasks_in(state):
                for task in list(self.store.iter_tasks(job_key, state)):
                    self._requeue(job_key, task)
        for pool in self.store.all("pools"):
            if pool["state"] == "deleting":
                self._spawn(self._finish_pool_delete, pool["id"])
                continue
            for node in self.store.nodes(pool["id"]):
                node.update(runningTasksCount=0, runningTaskSlotsCount=0)
                if node["state"] == "running":
                    wire.set_node_state(node, "idle")
                elif node["state"] in ("starting", "waitingforstarttask", "preempted", "rebooting", "creating"):
                    wire.set_node_state(node, "starting")
                    self._spawn(self._join, pool["id"], node["id"], 0.0)
                self.store.put_node(pool["id"], node)
            if pool.get("allocationState") == "resizing":
                self._spawn(self._allocate, pool["id"])
        for job in self.store.all("jobs"):
            if job["state"] == "terminating":
                self._spawn(
                    self._finish_terminate,
                    job["id"],
                    (job.get("executionInfo") or {}).get("terminateReason") or "UserTerminate",
                )
            elif job["state"] == "deleting":
                self._spawn(self._finish_job_delete, job["id"])
            elif job["state"] == "disabling":
                wire.set_state(job, "disabled")
                self.store.update("jobs", job)
            elif job["state"] == "active":
                self.arm_job_wall_clock(job)

    def _requeue(self, job_id: str, task: dict[str, Any]) -> None:
        info = task.setdefault("executionInfo", {"retryCount": 0, "requeueCount": 0})
        info["requeueCount"] = int(info.get("requeueCount") or 0) + 1
        info["lastRequeueTime"] = wire.timestamp()
        wire.set_state(task, "active")
        self.store.update_task(job_id, task)

    # --- pools and nodes -------------------------------------------------------

    def resize(self, pool: dict[str, Any]) -> None:
        """Start moving ``pool`` to its targets; the allocation flips state synchronously (LRO)."""
        pool["allocationState"] = "resizing"
        pool["allocationStateTransitionTime"] = wire.timestamp()
        wire.stamp(pool)
        self.store.update("pools", pool)
        self._spawn(self._allocate, pool["id"])

    def _targets(self, pool: dict[str, Any]) -> tuple[int, int, list[dict[str, Any]]]:
        dedicated = int(pool.get("targetDedicatedNodes") or 0)
        low = int(pool.get("targetLowPriorityNodes") or 0)
        cap = self.config.max_nodes
        errors: list[dict[str, Any]] = []
        if dedicated + low > cap:
            capped_dedicated = min(dedicated, cap)
            capped_low = min(low, cap - capped_dedicated)
            errors.append(
                {
                    "code": "AccountCoreQuotaReached",
                    "message": (
                        f"The local Batch service runs at most {cap} nodes per pool "
                        f"(BATCHFLOW_LOCAL_MAX_NODES); the pool asked for {dedicated} dedicated and "
                        f"{low} low-priority nodes and got {capped_dedicated} and {capped_low}."
                    ),
                    "values": [{"name": "LocalMaxNodes", "value": str(cap)}],
                }
            )
            print(f"local batch: pool {pool['id']}: {errors[0]['message']}", flush=True)
            dedicated, low = capped_dedicated, capped_low
        return dedicated, low, errors

    def _allocate(self, pool_id: str) -> None:
        with self.lock:
            pool = self.store.get("pools", pool_id)
            if pool is None or pool["state"] != "active":
                return
            dedicated, low, resize_errors = self._targets(pool)
            nodes = self.store.nodes(pool_id)
            leaving: list[tuple[dict[str, Any], str]] = []
            option = pool.pop("_deallocation", None) or "requeue"
            for is_dedicated, wanted in ((True, dedicated), (False, low)):
                group = [n for n in nodes if bool(n.get("isDedicated")) == is_dedicated and n["state"] != "leavingpool"]
                for index in range(len(group), wanted):
                    self._add_node(pool, is_dedicated, index)
                if len(group) > wanted:
                    # Idle nodes leave first, as on Batch.
                    group.sort(key=lambda n: len(self._runs_on(n["id"])))
                    leaving.extend((node, option) for node in group[wanted:])
            for node, how in leaving:
                self._remove_node(pool_id, node, how)
            remaining = [n for n in self.store.nodes(pool_id) if n["state"] != "leavingpool"]
            pool["currentDedicatedNodes"] = sum(1 for n in remaining if n.get("isDedicated"))
            pool["currentLowPriorityNodes"] = sum(1 for n in remaining if not n.get("isDedicated"))
            if resize_errors:
                pool["resizeErrors"] = resize_errors
            else:
                pool.pop("resizeErrors", None)
            pool["allocationState"] = "steady"
            pool["allocationStateTransitionTime"] = wire.timestamp()
            wire.stamp(pool)
            self.store.update("pools", pool)
        self.wake()

    def _add_node(self, pool: dict[str, Any], is_dedicated: bool, index: int) -> None:
        seed = f"{pool['id']}/{pool['creationTime']}/{is_dedicated}/{index}/{os.urandom(8).hex()}"
        node_id = f"tvmps_{hashlib.sha256(seed.encode()).hexdigest()}_{'d' if is_dedicated else 'p'}"
        at = wire.timestamp()
        image = dict(((pool.get("virtualMachineConfiguration") or {}).get("imageReference") or {}))
        if image.get("version") in (None, "latest"):
            image["exactVersion"] = "local"
        node: dict[str, Any] = {
            "id": node_id,
            "url": self.url("pools", pool["id"], "nodes", node_id),
            "state": "starting",
            "schedulingState": "enabled",
            "stateTransitionTime": at,
            "lastBootTime": at,
            "allocationTime": at,
            "ipAddress": "127.0.0.1",
            "affinityId": f"TVM:{node_id}",
            "vmSize": pool.get("vmSize"),
            "totalTasksRun": 0,
            "runningTasksCount": 0,
            "runningTaskSlotsCount": 0,
            "totalTasksSucceeded": 0,
            "isDedicated": is_dedicated,
            "nodeAgentInfo": {"version": "batchflow-local", "lastUpdateTime": at},
            "virtualMachineInfo": {"imageReference": image},
        }
        if pool.get("startTask"):
            node["startTask"] = pool["startTask"]
        noderunner.make_node_dirs(noderunner.node_root(self.config, pool["id"], node_id))
        self.store.put_node(pool["id"], node)
        self._spawn(self._join, pool["id"], node_id, self.faults.node_start_delay)

    def _join(self, pool_id: str, node_id: str, delay: float) -> None:
        """Bring a node from ``starting`` to ``idle``: wait (slow start), then its start task."""
        if delay and self._stopping.wait(delay):
            return
        with self.lock:
            pool = self.store.get("pools", pool_id)
            node = self.store.get_node(pool_id, node_id)
            if pool is None or node is None or pool["state"] != "active" or node["state"] != "starting":
                return
            start_task = pool.get("startTask")
            node["lastBootTime"] = wire.timestamp()
            if not start_task:
                wire.set_node_state(node, "idle")
                self.store.put_node(pool_id, node)
                self.wake()
                return
            node["startTask"] = start_task
            node["startTaskInfo"] = {"state": "running", "startTime": wire.timestamp(), "retryCount": 0}
            wire.set_node_state(node, "waitingforstarttask" if start_task.get("waitForSuccess", True) else "idle")
            self.store.put_node(pool_id, node)
            self._start_start_task(pool, node)
        self.wake()

    def _start_start_task(self, pool: dict[str, Any], node: dict[str, Any]) -> None:
        start_task = node["startTask"]
        root = noderunner.node_root_text(self.config, pool["id"], node["id"])
        run = Run(pool["id"], node["id"], None, None, start_task, 0, root, {})
        run.env = noderunner.build_env(
            self.config, run, bool(node.get("isDedicated")), start_task.get("environmentSettings") or []
        )
        self.start_runs[node["id"]] = run
        self._threads.submit(self._execute, run)

    def _finish_start_task(self, run: Run, outcome: Outcome) -> None:
        if self.start_runs.get(run.node_id) is run:
            del self.start_runs[run.node_id]
        if run.kill_reason is not None:
            return
        node = self.store.get_node(run.pool_id, run.node_id)
        pool = self.store.get("pools", run.pool_id)
        if node is None or pool is None:
            return
        info = node.setdefault("startTaskInfo", {"retryCount": 0})
        wait = node["startTask"].get("waitForSuccess", True)
        if outcome.failure is not None:
            limit = int(node["startTask"].get("maxTaskRetryCount") or 0)
            if limit == -1 or info.get("retryCount", 0) < limit:
                info["retryCount"] = int(info.get("retryCount", 0)) + 1
                info["lastRetryTime"] = wire.timestamp()
                self.store.put_node(run.pool_id, node)
                self._start_start_task(pool, node)
                return
        info.update(
            state="completed", endTime=wire.timestamp(), result="success" if outcome.failure is None else "failure"
        )
        if outcome.exit_code is not None:
            info["exitCode"] = outcome.exit_code
        if outcome.failure is not None:
            info["failureInfo"] = outcome.failure
            if wait:
                wire.set_node_state(node, "starttaskfailed")
                node.setdefault("errors", []).append(
                    {
                        "code": "StartTaskFailed",
                        "message": "The start task failed; the node will not run tasks.",
                        "errorDetails": [],
                    }
                )
        else:
            info.pop("failureInfo", None)
            if node["state"] == "waitingforstarttask":
                wire.set_node_state(node, "idle")
        self.store.put_node(run.pool_id, node)

    def _remove_node(self, pool_id: str, node: dict[str, Any], option: str) -> None:
        """Take a node out of the pool; its running tasks are requeued or ended per ``option``."""
        runs = [r for r in self.runs.values() if r.node_id == node["id"]]
        if runs and option in ("taskcompletion", "retaineddata"):
            node["schedulingState"] = "disabled"
            wire.set_node_state(node, "leavingpool")
            self.store.put_node(pool_id, node)
            return
        for run in runs:
            run.kill("terminate" if option == "terminate" else "requeue")
        start_run = self.start_runs.get(node["id"])
        if start_run is not None:
            start_run.kill("delete")
        self.store.delete_node(pool_id, node["id"])
        root = noderunner.node_root(self.config, pool_id, node["id"])
        self._discard(root, [*runs, *([start_run] if start_run else [])])

    def _discard(self, folder: Path, runs: list[Run] | tuple[()] = ()) -> None:
        """Remove the folder of something deleted: moved into the trash now, removed once ``runs`` end.

        Moved at once, while the caller holds the lock, so that the API and the disk agree
        when the delete returns and a new pool, job or task with the same id starts in a
        folder of its own; removed in the background, so that a delete of many task folders
        does not hold up everything else.
        """
        target = self.config.trash_dir / uuid.uuid4().hex
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(folder, target)
        except FileNotFoundError:
            return
        except OSError:  # the trash is on another file system (a nodes folder linked elsewhere): remove in place
            target = folder
        self._spawn(self._remove_dir_after, target, list(runs))

    def _remove_dir_after(self, root: Any, runs: list[Run]) -> None:
        for run in runs:
            run.done.wait(30)
        shutil.rmtree(root, ignore_errors=True)

    def delete_pool(self, pool: dict[str, Any]) -> None:
        wire.set_state(pool, "deleting", keep_previous=False)
        self.store.update("pools", pool)
        self._spawn(self._finish_pool_delete, pool["id"])

    def _finish_pool_delete(self, pool_id: str) -> None:
        with self.lock:
            runs = [r for r in self.runs.values() if _key(r.pool_id) == _key(pool_id)]
            starts = [r for r in self.start_runs.values() if _key(r.pool_id) == _key(pool_id)]
        for run in runs:
            run.kill("requeue")
        for run in starts:
            run.kill("delete")
        for run in [*runs, *starts]:
            run.done.wait(30)
        with self.lock:
            pool = self.store.get("pools", pool_id)
            if pool is None:
                return
            self.store.delete_nodes(pool_id)
            self.store.delete("pools", pool_id)
            self._discard(self.config.nodes_dir / pool["id"])

    def preempt(self, pool_id: str, node_id: str) -> None:
        """Fault: a low-priority node is taken away; its tasks are requeued; it returns later."""
        with self.lock:
            node = self.store.get_node(pool_id, node_id)
            if node is None or node["state"] not in _USABLE_NODE_STATES + ("waitingforstarttask",):
                return
            wire.set_node_state(node, "preempted")
            self.store.put_node(pool_id, node)
            runs = [r for r in self.runs.values() if r.node_id == node_id]
        for run in runs:
            run.kill("requeue")
        self._later(self.faults.preempt_downtime, self._restart_node, pool_id, node_id)

    def _restart_node(self, pool_id: str, node_id: str) -> None:
        with self.lock:
            node = self.store.get_node(pool_id, node_id)
            if node is None:
                return
            node.pop("startTaskInfo", None)
            wire.set_node_state(node, "starting")
            self.store.put_node(pool_id, node)
        self._join(pool_id, node_id, self.faults.node_start_delay)

    def reboot_node(self, pool_id: str, node: dict[str, Any], option: str) -> None:
        """Reboot or reimage: tasks requeued (or ended), then the start task runs again."""
        for run in [r for r in self.runs.values() if r.node_id == node["id"]]:
            run.kill("terminate" if option == "terminate" else "requeue")
        start_run = self.start_runs.get(node["id"])
        if start_run is not None:
            start_run.kill("delete")
        node.pop("startTaskInfo", None)
        wire.set_node_state(node, "rebooting")
        self.store.put_node(pool_id, node)
        self._spawn(self._restart_node, pool_id, node["id"])

    # --- jobs ------------------------------------------------------------------

    def arm_job_wall_clock(self, job: dict[str, Any]) -> None:
        limit = wire.duration((job.get("constraints") or {}).get("maxWallClockTime"), "constraints.maxWallClockTime")
        if limit is None or limit.days >= 10675199:
            return
        elapsed = wire.now() - wire.parse_timestamp(job["creationTime"])
        self._later(max(0.0, (limit - elapsed).total_seconds()), self._job_wall_clock, job["id"], job["creationTime"])

    def _job_wall_clock(self, job_id: str, created: str) -> None:
        with self.lock:
            job = self.store.get("jobs", job_id)
            if job is not None and job["creationTime"] == created and job["state"] in ("active", "disabled"):
                self.terminate_job(job, "MaxWallClockTimeExpiry")

    def terminate_job(self, job: dict[str, Any], reason: str) -> None:
        """Move the job to ``terminating`` now (LRO) and end its running tasks in the background."""
        wire.set_state(job, "terminating")
        job.setdefault("executionInfo", {})["terminateReason"] = reason
        self.store.update("jobs", job)
        self._spawn(self._finish_terminate, job["id"], reason)

    def _finish_terminate(self, job_id: str, reason: str) -> None:
        with self.lock:
            runs = [r for (job_key, _), r in self.runs.items() if job_key == _key(job_id)]
        for run in runs:
            run.kill("terminate")
        for run in runs:
            run.done.wait(30)
        with self.lock:
            job = self.store.get("jobs", job_id)
            if job is None or job["state"] != "terminating":
                return
            wire.set_state(job, "completed")
            info = job.setdefault("executionInfo", {})
            info["endTime"] = wire.timestamp()
            info["terminateReason"] = reason
            self.store.update("jobs", job)

    def delete_job(self, job: dict[str, Any]) -> None:
        wire.set_state(job, "deleting")
        self.store.update("jobs", job)
        self._spawn(self._finish_job_delete, job["id"])

    def _finish_job_delete(self, job_id: str) -> None:
        with self.lock:
            runs = [r for (job_key, _), r in self.runs.items() if job_key == _key(job_id)]
        for run in runs:
            run.kill("delete")
        for run in runs:
            run.done.wait(30)
        with self.lock:
            job = self.store.get("jobs", job_id)
            if job is None:
                return
            self.store.delete_tasks(job_id)
            self.store.delete("jobs", job_id)
            for folder in self.config.nodes_dir.glob(f"*/*/workitems/{job['id']}"):
                self._discard(folder)

    def disable_job(self, job: dict[str, Any], option: str) -> None:
        """Stop scheduling the job's tasks; running ones are requeued, ended or left per ``option``."""
        wire.set_state(job, "disabling")
        self.store.update("jobs", job)
        runs = [r for (job_key, _), r in self.runs.items() if job_key == _key(job["id"])]
        if option in ("requeue", "terminate"):
            for run in runs:
                run.kill(option)
        wire.set_state(job, "disabled")
        self.store.update("jobs", job)

    def enable_job(self, job: dict[str, Any]) -> None:
        wire.set_state(job, "active")
        self.store.update("jobs", job)
        self.wake()

    def _after_task_completed(self, job_id: str, task: dict[str, Any], outcome: Outcome) -> None:
        # Most tasks complete in an active job that asks for nothing: read it from the scheduler's view.
        active = [j for j in self.store.in_state("jobs", "active") if _key(j["id"]) == _key(job_id)]
        job = active[0] if active else self.store.get("jobs", job_id)
        if job is None or job["state"] not in ("active", "disabled"):
            return
        if job.get("onTaskFailure") == "performexitoptionsjobaction":
            action = exit_options(task, outcome)["jobAction"]
            if action == "terminate":
                self.terminate_job(self._job_to_change(job), "TaskFailed")
                return
            if action == "disable" and job["state"] == "active":
                job = self._job_to_change(job)
                self.disable_job(job, "wait")
        self.check_all_complete(job)

    def _job_to_change(self, job: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``job`` of its own, to change and write (the scheduler's view is shared)."""
        return self.store.get("jobs", job["id"]) or dict(job)

    def check_all_complete(self, job: dict[str, Any]) -> None:
        """With ``onAllTasksComplete=terminatejob``, end the job once no task is left to run."""
        if job.get("onAllTasksComplete") != "terminatejob" or job["state"] not in ("active", "disabled"):
            return
        counts = self.store.task_counts(job["id"])
        if counts and all(state == "completed" for state, _result, _n, _slots in counts):
            self.terminate_job(self._job_to_change(job), "AllTasksComplete")

    # --- tasks -----------------------------------------------------------------

    def run_for(self, job_id: str, task_id: str) -> Run | None:
        return self.runs.get((_key(job_id), _key(task_id)))

    def terminate_task(self, job_id: str, task: dict[str, Any]) -> None:
        run = self.run_for(job_id, task["id"])
        if run is not None:
            run.kill("terminate")
            return
        self._complete(job_id, task, Outcome("killed", failure=self._ended_failure()))

    def delete_task(self, job_id: str, task: dict[str, Any]) -> None:
        run = self.run_for(job_id, task["id"])
        if run is not None:
            run.kill("delete")
        self.store.delete_task(job_id, task["id"])
        node_id = (task.get("nodeInfo") or {}).get("nodeId")
        pool_id = (task.get("nodeInfo") or {}).get("poolId")
        if node_id and pool_id:
            folder = noderunner.task_dir(noderunner.node_root(self.config, pool_id, node_id), job_id, task["id"])
            self._discard(folder, [run] if run else [])

    @staticmethod
    def _ended_failure() -> dict[str, Any]:
        return noderunner.failure_info("TaskEnded", "Task Was Ended by User Request")

    def _dependencies(self, job_id: str, task: dict[str, Any]) -> str:
        """``ready``, ``wait`` or ``blocked`` for a task with ``dependsOn``."""
        ids = dependency_ids(task.get("dependsOn"))
        if not ids:
            return "ready"
        found = self.store.tasks_by_ids(job_id, ids)
        if any(t["state"] == "completed" and not t.get("_dependencySatisfied", False) for t in found):
            return "blocked"
        if len(found) < len({i.lower() for i in ids}) or any(t["state"] != "completed" for t in found):
            return "wait"
        return "ready"

    def _loop(self) -> None:
        while True:
            with self._wakeup:
                while not self._dirty and not self._stopping.is_set():
                    self._wakeup.wait()
                if self._stopping.is_set():
                    return
                self._dirty = False
                try:
                    self._dispatch()
                except Exception:  # keep scheduling; report the bug
                    traceback.print_exc()

    def _used_slots(self, node_id: str) -> int:
        return sum(r.slots for r in self._runs_on(node_id))

    def _dispatch(self) -> None:
        for run in self._dispatch_now():
            self._threads.submit(self._execute, run)

    def _dispatch_now(self) -> list[Run]:
        """Start the tasks that fit now, in one transaction (one commit for them and their nodes); return their
        runs, to execute now that the start is committed. When it fails, none of its runs is kept."""
        started: list[Run] = []
        try:
            with self.store.transaction():
                self._dispatch_in_transaction(started)
        except BaseException:
            for run in started:  # rolled back: the tasks are still queued
                self.runs.pop((_key(run.job_id or ""), _key(run.task_id or "")), None)
            raise
        return started

    def _dispatch_in_transaction(self, started: list[Run]) -> None:
        """Start the queued tasks that fit on the usable nodes, adding their runs to ``started``."""
        pools = self.store.in_state("pools", "active")
        if not pools:
            return
        jobs = self.store.in_state("jobs", "active")
        jobs.sort(key=lambda j: -int(j.get("priority") or 0))
        for pool in pools:
            pool_jobs = [j for j in jobs if _key((j.get("poolInfo") or {}).get("poolId") or "") == _key(pool["id"])]
            if not pool_jobs:
                continue
            per_node = int(pool.get("taskSlotsPerNode") or 1)
            nodes = [
                n
                for n in self.store.node_summaries(pool["id"])
                if n["state"] in _USABLE_NODE_STATES and (n["schedulingState"] or "enabled") == "enabled"
            ]
            free = {n["id"]: per_node - self._used_slots(n["id"]) for n in nodes}
            pack = ((pool.get("taskSchedulingPolicy") or {}).get("nodeFillType") or "spread") == "pack"
            for job in pool_jobs:
                if not free or max(free.values()) <= 0:
                    break
                limit = int(job.get("maxParallelTasks", -1) if job.get("maxParallelTasks") is not None else -1)
                running = sum(1 for (job_key, _) in self.runs if job_key == _key(job["id"]))
                uses_dependencies = bool(job.get("usesTaskDependencies"))
                # Read only as many queued tasks as could start now (more when some may wait on others),
                # so a decision costs the same with 10 or 100,000 tasks queued.
                batch = 64 if uses_dependencies else max(1, sum(max(0, slots) for slots in free.values()))
                for task in self.store.iter_tasks(job["id"], "active", batch=batch):
                    if max(free.values()) <= 0 or (limit >= 0 and running >= limit):
                        break
                    need = int(task.get("requiredSlots") or 1)
                    if uses_dependencies and task.get("dependsOn") and self._dependencies(job["id"], task) != "ready":
                        continue
                    fits = [n for n in nodes if free[n["id"]] >= need]
                    if not fits:
                        continue
                    node = (min if pack else max)(fits, key=lambda n: free[n["id"]])
                    free[node["id"]] -= need
                    running += 1
                    started.append(self._start_task(pool, node, job, task, need))
                    if max(free.values()) <= 0:
                        break

    def _start_task(
        self, pool: dict[str, Any], node: dict[str, Any], job: dict[str, Any], task: dict[str, Any], slots: int
    ) -> Run:
        """Mark ``task`` running on ``node`` and make its run, to execute once the transaction commits."""
        root = noderunner.node_root_text(self.config, pool["id"], node["id"])
        info = task.setdefault("executionInfo", {"retryCount": 0, "requeueCount": 0})
        for name in ("endTime", "exitCode", "result", "failureInfo"):
            info.pop(name, None)
        info["startTime"] = wire.timestamp()
        relative = noderunner.task_relative_dir(job["id"], task["id"])
        task["nodeInfo"] = {
            "affinityId": node["affinityId"],
            "nodeUrl": node["url"],
            "poolId": pool["id"],
            "nodeId": node["id"],
            "taskRootDirectory": relative,
            "taskRootDirectoryUrl": f"{node['url']}/files/{relative}",
        }
        wire.set_state(task, "running")
        self.store.update_task(job["id"], task)
        wall = wire.duration((task.get("constraints") or {}).get("maxWallClockTime"), "constraints.maxWallClockTime")
        run = Run(pool["id"], node["id"], job["id"], task["id"], task, slots, root, {})
        if wall is not None and wall.days < 10675199:
            run.wall_clock = wall.total_seconds()
        settings = [*(job.get("commonEnvironmentSettings") or []), *(task.get("environmentSettings") or [])]
        run.env = noderunner.build_env(self.config, run, bool(node.get("isDedicated")), settings)
        if not self._runs_on(node["id"]):
            self._node_turned[node["id"]] = wire.timestamp()
        if not node.get("isDedicated") and self.faults.preempt_now():
            self._later(self.faults.preempt_after, self.preempt, pool["id"], node["id"])
        self.runs[(_key(job["id"]), _key(task["id"]))] = run  # last: a start that fails leaves no run behind
        return run

    def _runs_on(self, node_id: str) -> list[Run]:
        return [r for r in self.runs.values() if r.node_id == node_id]

    def live_node(self, node: dict[str, Any]) -> dict[str, Any]:
        """``node`` as Batch reports it: its running tasks and slots, and ``running`` or ``idle``, from the runs
        in progress.

        These change at every task start and end, so they are worked out when a client asks
        rather than written to the node's row each time (that was a tenth of a no-op task's cost);
        what it ran since its row was last written is added (see :class:`_NodeNews`).
        """
        runs = self._runs_on(node["id"])
        news = self._node_news.get(node["id"])
        if news is not None:
            node = news.applied_to(node)
        node = dict(node, runningTasksCount=len(runs), runningTaskSlotsCount=sum(r.slots for r in runs))
        if node["state"] in _USABLE_NODE_STATES:
            node["state"] = "running" if runs else "idle"
            turned = self._node_turned.get(node["id"])
            if turned is not None and turned > node.get("stateTransitionTime", ""):
                node["stateTransitionTime"] = turned
        return node

    def _after_run(
        self, pool_id: str, node_id: str, finished: dict[str, Any] | None = None, succeeded: bool = False
    ) -> None:
        """A run on the node ended (``finished`` is its task when it completed): count it, and let a node
        that is leaving the pool go once nothing runs on it."""
        runs = self._runs_on(node_id)
        if not runs:
            self._node_turned[node_id] = wire.timestamp()
        node = self.store.node_summary(pool_id, node_id)
        if node is None:
            self._node_news.pop(node_id, None)
            return
        if node["state"] == "leavingpool" and not runs:
            self._node_news.pop(node_id, None)
            self.store.delete_node(pool_id, node_id)
            self._discard(noderunner.node_root(self.config, pool_id, node_id))
            return
        if finished is None:
            return
        news = self._node_news.get(node_id)
        if news is None:
            news = self._node_news[node_id] = _NodeNews(pool_id)
            self._later(_NODE_NEWS_SECONDS, self._write_node_news_later, node_id, news)
        news.add(finished, finished["_jobId"], succeeded)

    def _write_node_news_later(self, node_id: str, news: _NodeNews) -> None:
        with self.lock, self.store.transaction():
            if self._node_news.get(node_id) is news:
                self._write_node_news(node_id)

    def _write_node_news(self, node_id: str) -> None:
        """Write what the node ran since its row was last written into that row."""
        news = self._node_news.pop(node_id)
        node = self.store.get_node(news.pool_id, node_id)
        if node is not None:
            self.store.put_node(news.pool_id, news.applied_to(node))

    def _execute(self, run: Run) -> None:
        """Thread body: run, record the result and start what now fits; then go on with one of the runs
        started, if any, on this thread (handing each to another thread cost a wakeup per task)."""
        next_run: Run | None = run
        while next_run is not None:
            next_run = self._execute_one(next_run)

    def _execute_one(self, run: Run) -> Run | None:
        """Run outside the lock, then, under it, record the result and start the tasks that fit now (what the
        scheduling thread would do once woken, without the wakeup). Returns one of the runs started, for this
        thread; the others go to other threads."""
        try:
            outcome = noderunner.execute(run, self.config)
        except Exception as error:  # report as the service would, and keep going
            traceback.print_exc()
            outcome = Outcome(
                "exited",
                failure=noderunner.failure_info(
                    "InternalError", f"The local service failed to run the task: {error}", category="servererror"
                ),
            )
        started: list[Run] = []
        dispatched = False
        try:
            if not self._stopping.is_set():  # else the run is requeued at the next start
                with self.lock:
                    with self.store.transaction():
                        if run.job_id is None:
                            self._finish_start_task(run, outcome)
                        else:
                            self._finish_task(run, outcome)
                    if not self._stopping.is_set():  # stop() takes the lock to see every run it must end
                        try:
                            started = self._dispatch_now()
                            dispatched = True
                        except Exception:  # the scheduling thread tries again; report the bug
                            traceback.print_exc()
        finally:
            run.done.set()
            if not dispatched:
                self.wake()
        for other in started[1:]:
            self._threads.submit(self._execute, other)
        return started[0] if started else None

    def _finish_task(self, run: Run, outcome: Outcome) -> None:
        assert run.job_id is not None and run.task_id is not None
        key = (_key(run.job_id), _key(run.task_id))
        if self.runs.get(key) is run:
            del self.runs[key]
        task = self.store.get_task(run.job_id, run.task_id)
        reason = run.kill_reason
        if task is None or reason == "delete" or task["state"] != "running":
            self._after_run(run.pool_id, run.node_id)
            return
        if reason in ("requeue", "shutdown"):
            self._requeue(run.job_id, task)
            self._after_run(run.pool_id, run.node_id)
            return
        if reason == "terminate":
            outcome = Outcome("killed", exit_code=outcome.exit_code, failure=self._ended_failure())
        info = task.setdefault("executionInfo", {"retryCount": 0, "requeueCount": 0})
        retryable = (
            outcome.kind == "exited"
            and outcome.exit_code not in (None, 0)
            and not outcome.upload_failed
            and reason != "walltime"
        )
        limit = int((task.get("constraints") or {}).get("maxTaskRetryCount") or 0)
        if retryable and (limit == -1 or int(info.get("retryCount") or 0) < limit):
            info["retryCount"] = int(info.get("retryCount") or 0) + 1
            info["lastRetryTime"] = wire.timestamp()
            info["exitCode"] = outcome.exit_code
            wire.set_state(task, "active")
            self.store.update_task(run.job_id, task)
            self._after_run(run.pool_id, run.node_id)
            return
        self._complete(run.job_id, task, outcome)
        self._after_run(
            run.pool_id, run.node_id, finished={**task, "_jobId": run.job_id}, succeeded=outcome.failure is None
        )

    def _complete(self, job_id: str, task: dict[str, Any], outcome: Outcome) -> None:
        info = task.setdefault("executionInfo", {"retryCount": 0, "requeueCount": 0})
        info["endTime"] = wire.timestamp()
        if outcome.exit_code is not None:
            info["exitCode"] = outcome.exit_code
        else:
            info.pop("exitCode", None)
        info["result"] = "success" if outcome.failure is None else "failure"
        if outcome.failure is not None:
            info["failureInfo"] = outcome.failure
        else:
            info.pop("failureInfo", None)
        task["_dependencySatisfied"] = exit_options(task, outcome)["dependencyAction"] == "satisfy"
        wire.set_state(task, "completed")
        self.store.update_task(job_id, task)
        self._after_task_completed(job_id, task, outcome)
