"""Jobs: create, get, list, update (patch), replace (put), delete, terminate, disable, enable, task counts."""

from __future__ import annotations

from typing import Any

from batchflow.local.emulator import errors, wire
from batchflow.local.emulator.handlers.common import (
    accepted,
    body,
    copy_known,
    created,
    job_or_404,
    listing,
    resource_headers,
    single,
)
from batchflow.local.emulator.messages import Request, Response
from batchflow.local.emulator.scheduler import Service

_CREATE_FIELDS = [
    "id",
    "displayName",
    "usesTaskDependencies",
    "priority",
    "allowTaskPreemption",
    "maxParallelTasks",
    "constraints",
    "jobManagerTask",
    "jobPreparationTask",
    "jobReleaseTask",
    "commonEnvironmentSettings",
    "poolInfo",
    "onAllTasksComplete",
    "onTaskFailure",
    "networkConfiguration",
    "metadata",
]
_MUTABLE = [
    "priority",
    "allowTaskPreemption",
    "maxParallelTasks",
    "constraints",
    "poolInfo",
    "onAllTasksComplete",
    "metadata",
]
_ALL_COMPLETE = ("noaction", "terminatejob")
_ON_FAILURE = ("noaction", "performexitoptionsjobaction")
METADATA = "jobs/@Element"


def _check(job: dict[str, Any]) -> None:
    priority = job.get("priority", 0)
    if not isinstance(priority, int) or not -1000 <= priority <= 1000:
        raise errors.invalid_property("priority", priority, "between -1000 and 1000")
    if job.get("onAllTasksComplete", "noaction") not in _ALL_COMPLETE:
        raise errors.invalid_property("onAllTasksComplete", job["onAllTasksComplete"])
    if job.get("onTaskFailure", "noaction") not in _ON_FAILURE:
        raise errors.invalid_property("onTaskFailure", job["onTaskFailure"])
    constraints = job.get("constraints") or {}
    if constraints.get("maxWallClockTime") is not None:
        constraints["maxWallClockTime"] = wire.normalize_duration(
            constraints["maxWallClockTime"], "constraints.maxWallClockTime"
        )
    pool_info = job.get("poolInfo")
    if not isinstance(pool_info, dict):
        raise errors.missing_property("poolInfo")
    if pool_info.get("autoPoolSpecification") and not pool_info.get("poolId"):
        raise errors.invalid_property(
            "poolInfo.autoPoolSpecification",
            "…",
            "auto pools are not supported locally; create a pool and name it in poolInfo.poolId",
        )
    if not pool_info.get("poolId"):
        raise errors.missing_property("poolInfo.poolId")
    for name in ("jobManagerTask", "jobPreparationTask", "jobReleaseTask"):
        if job.get(name):
            raise errors.invalid_property(
                name, "…", "the local Batch service does not run job manager, preparation or release tasks"
            )


def create_job(request: Request, service: Service) -> Response:
    job = copy_known(body(request), _CREATE_FIELDS)
    wire.check_id(job.get("id"))
    _check(job)
    existing = service.store.get("jobs", job["id"])
    if existing is not None:
        raise errors.job_being_deleted() if existing["state"] == "deleting" else errors.job_exists()
    at = wire.timestamp()
    job.update(
        url=service.url("jobs", job["id"]),
        creationTime=at,
        state="active",
        stateTransitionTime=at,
        priority=job.get("priority", 0),
        maxParallelTasks=job.get("maxParallelTasks", -1),
        allowTaskPreemption=bool(job.get("allowTaskPreemption", False)),
        usesTaskDependencies=bool(job.get("usesTaskDependencies", False)),
        onAllTasksComplete=job.get("onAllTasksComplete", "noaction"),
        onTaskFailure=job.get("onTaskFailure", "noaction"),
        executionInfo={"startTime": at, "poolId": job["poolInfo"]["poolId"]},
    )
    constraints = job.setdefault("constraints", {})
    constraints.setdefault("maxWallClockTime", wire.UNLIMITED)
    constraints.setdefault("maxTaskRetryCount", 0)
    wire.stamp(job)
    service.store.insert("jobs", job)
    service.arm_job_wall_clock(job)
    service.wake()
    return created(job)


def get_job(request: Request, service: Service) -> Response:
    return single(request, job_or_404(service, request.params["jobId"]), METADATA)


def list_jobs(request: Request, service: Service) -> Response:
    return listing(request, lambda after, limit: service.store.page("jobs", after, limit), "jobs")


def _change(request: Request, service: Service, replace: bool) -> Response:
    job = job_or_404(service, request.params["jobId"], allow_deleting=False)
    if job["state"] in ("completed", "terminating"):
        raise errors.job_completed() if job["state"] == "completed" else errors.job_being_terminated()
    changes = copy_known(body(request), _MUTABLE)
    if replace:
        if "poolInfo" not in changes:
            raise errors.missing_property("poolInfo")
        for name in ("metadata",):
            job.pop(name, None)
    merged = {**job, **changes}
    _check(merged)
    if merged["poolInfo"]["poolId"] != job["poolInfo"]["poolId"]:
        merged["executionInfo"]["poolId"] = merged["poolInfo"]["poolId"]
    wire.stamp(merged)
    service.store.update("jobs", merged)
    if "constraints" in changes:
        service.arm_job_wall_clock(merged)
    service.check_all_complete(merged)
    service.wake()
    return Response(200, headers=resource_headers(merged))


def update_job(request: Request, service: Service) -> Response:
    return _change(request, service, replace=False)


def replace_job(request: Request, service: Service) -> Response:
    return _change(request, service, replace=True)


def delete_job(request: Request, service: Service) -> Response:
    job = job_or_404(service, request.params["jobId"])
    if job["state"] != "deleting":
        service.delete_job(job)
    return accepted()


def terminate_job(request: Request, service: Service) -> Response:
    job = job_or_404(service, request.params["jobId"], allow_deleting=False)
    if job["state"] == "completed":
        raise errors.job_completed()
    if job["state"] == "terminating":
        raise errors.job_being_terminated()
    reason = wire.lenient_keys(body(request), ["terminateReason"]).get("terminateReason") or "UserTerminate"
    service.terminate_job(job, reason)
    return accepted(job)


def disable_job(request: Request, service: Service) -> Response:
    job = job_or_404(service, request.params["jobId"], allow_deleting=False)
    if job["state"] != "active":
        raise errors.operation_invalid(f"The job is {job['state']}; only an active job can be disabled.")
    option = body(request).get("disableTasks")
    if option not in ("requeue", "terminate", "wait"):
        raise errors.invalid_property("disableTasks", option)
    service.disable_job(job, option)
    return accepted(job)


def enable_job(request: Request, service: Service) -> Response:
    job = job_or_404(service, request.params["jobId"], allow_deleting=False)
    if job["state"] not in ("disabled", "disabling"):
        raise errors.operation_invalid(f"The job is {job['state']}; only a disabled job can be enabled.")
    service.enable_job(job)
    return accepted(job)


def task_counts(request: Request, service: Service) -> Response:
    job = job_or_404(service, request.params["jobId"])
    tasks = dict(active=0, running=0, completed=0, succeeded=0, failed=0)
    slots = dict(tasks)
    for state, result, count, slot_sum in service.store.task_counts(job["id"]):
        bucket = "running" if state in ("running", "preparing") else state
        for target, amount in ((tasks, count), (slots, slot_sum or 0)):
            target[bucket] = target.get(bucket, 0) + amount
            if state == "completed":
                outcome = "succeeded" if result == "success" else "failed"
                target[outcome] += amount
    return Response(200, json={"taskCounts": tasks, "taskSlotCounts": slots}, metadata="taskcounts/@Element")
