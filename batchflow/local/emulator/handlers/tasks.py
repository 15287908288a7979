"""Tasks: create, add collection, list, get, update, delete, terminate, reactivate."""

from __future__ import annotations

from datetime import timezone
from typing import Any

from batchflow.local.emulator import errors, wire
from batchflow.local.emulator.handlers.common import (
    body,
    copy_known,
    created,
    error_value,
    job_or_404,
    listing,
    resource_headers,
    single,
    task_or_404,
)
from batchflow.local.emulator.messages import Request, Response
from batchflow.local.emulator.scheduler import Service, dependency_ids

_CREATE_FIELDS = [
    "id",
    "displayName",
    "commandLine",
    "exitConditions",
    "containerSettings",
    "resourceFiles",
    "outputFiles",
    "environmentSettings",
    "affinityInfo",
    "constraints",
    "requiredSlots",
    "userIdentity",
    "multiInstanceSettings",
    "dependsOn",
    "applicationPackageReferences",
    "authenticationTokenSettings",
]
MAX_COLLECTION = 100
MAX_DEPENDENCIES = 64000
METADATA = "tasks/@Element"


def _check_resource_file(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise errors.invalid_property(where, item)
    sources = [name for name in ("httpUrl", "storageContainerUrl", "autoStorageContainerName") if item.get(name)]
    if len(sources) != 1:
        raise errors.invalid_property(
            where, sources, "give exactly one of httpUrl, storageContainerUrl, autoStorageContainerName"
        )
    path = item.get("filePath") or ""
    if sources[0] == "httpUrl" and not path:
        raise errors.missing_property(f"{where}.filePath")
    if path.startswith("/") or ".." in path.split("/"):
        raise errors.invalid_property(f"{where}.filePath", path, "the path must stay inside the task working directory")
    if item.get("fileMode") is not None:
        try:
            int(str(item["fileMode"]), 8)
        except ValueError as error:
            raise errors.invalid_property(
                f"{where}.fileMode", item["fileMode"], "an octal mode such as 0644"
            ) from error


def _check_output_file(item: Any, where: str) -> None:
    if not isinstance(item, dict) or not item.get("filePattern"):
        raise errors.missing_property(f"{where}.filePattern")
    container = ((item.get("destination") or {}).get("container")) or {}
    if not container.get("containerUrl"):
        raise errors.missing_property(f"{where}.destination.container.containerUrl")
    condition = (item.get("uploadOptions") or {}).get("uploadCondition")
    if condition is None:
        raise errors.missing_property(f"{where}.uploadOptions.uploadCondition")
    if condition not in ("tasksuccess", "taskfailure", "taskcompletion"):
        raise errors.invalid_property(f"{where}.uploadOptions.uploadCondition", condition)


def build_task(service: Service, job: dict[str, Any], options: Any) -> dict[str, Any]:
    """Validate one task create body and return the new task resource (not yet stored)."""
    if not isinstance(options, dict):
        raise errors.invalid_body("each task must be a JSON object")
    task = copy_known(options, _CREATE_FIELDS)
    wire.check_id(task.get("id"))
    if not task.get("commandLine"):
        raise errors.missing_property("commandLine")
    if task.get("multiInstanceSettings"):
        raise errors.invalid_property("multiInstanceSettings", "…", "multi-instance tasks are not supported locally")
    for index, item in enumerate(task.get("resourceFiles") or []):
        _check_resource_file(item, f"resourceFiles[{index}]")
    for index, item in enumerate(task.get("outputFiles") or []):
        _check_output_file(item, f"outputFiles[{index}]")
    slots = task.get("requiredSlots", 1)
    if not isinstance(slots, int) or slots < 1:
        raise errors.invalid_property("requiredSlots", slots)
    if task.get("dependsOn"):
        if not job.get("usesTaskDependencies"):
            raise errors.dependencies_not_on_job()
        try:
            count = len(dependency_ids(task["dependsOn"]))
        except (KeyError, TypeError, ValueError) as error:
            raise errors.invalid_property("dependsOn", task["dependsOn"]) from error
        if count > MAX_DEPENDENCIES:
            raise errors.BatchError(400, "TaskDependencyListTooLong", "The task depends on too many tasks.")
    constraints = dict(task.get("constraints") or {})
    job_constraints = job.get("constraints") or {}
    constraints.setdefault("maxTaskRetryCount", int(job_constraints.get("maxTaskRetryCount") or 0))
    constraints["maxWallClockTime"] = (
        wire.normalize_duration(constraints.get("maxWallClockTime"), "constraints.maxWallClockTime") or wire.UNLIMITED
    )
    constraints["retentionTime"] = (
        wire.normalize_duration(constraints.get("retentionTime"), "constraints.retentionTime") or "P7D"
    )
    at = wire.timestamp()
    task.update(
        url=service.url("jobs", job["id"], "tasks", task["id"]),
        creationTime=at,
        state="active",
        stateTransitionTime=at,
        constraints=constraints,
        requiredSlots=slots,
        executionInfo={"retryCount": 0, "requeueCount": 0},
    )
    wire.stamp(task)
    return task


def _open_job(service: Service, job_id: str) -> dict[str, Any]:
    """The job, if it still accepts tasks."""
    job = job_or_404(service, job_id, allow_deleting=False)
    if job["state"] == "terminating":
        raise errors.job_being_terminated()
    if job["state"] == "completed":
        raise errors.job_completed()
    return job


def create_task(request: Request, service: Service) -> Response:
    job = _open_job(service, request.params["jobId"])
    task = build_task(service, job, body(request))
    if service.store.existing_task_keys(job["id"], [task["id"]]):
        raise errors.task_exists()
    service.store.insert_tasks(job["id"], [task])
    service.wake()
    return created(task)


def add_task_collection(request: Request, service: Service) -> Response:
    """Add up to 100 tasks; each gets its own result, duplicates come back as ``clienterror``."""
    job = _open_job(service, request.params["jobId"])
    items = body(request).get("value")
    if not isinstance(items, list):
        raise errors.missing_property("value")
    if len(items) > MAX_COLLECTION:
        raise errors.too_many_tasks(len(items))
    ids = [item.get("id") for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)]
    existing = service.store.existing_task_keys(job["id"], ids)
    results: list[dict[str, Any]] = []
    accepted: list[dict[str, Any]] = []
    for item in items:
        task_id = item.get("id") if isinstance(item, dict) else None
        try:
            task = build_task(service, job, item)
            if task["id"].lower() in existing:
                raise errors.task_exists()
        except errors.BatchError as error:
            results.append({"status": "clienterror", "taskId": str(task_id or ""), "error": error_value(error)})
            continue
        existing.add(task["id"].lower())
        accepted.append(task)
        results.append(
            {
                "status": "success",
                "taskId": task["id"],
                "eTag": task["eTag"],
                "lastModified": task["lastModified"],
                "location": task["url"],
            }
        )
    if accepted:
        service.store.insert_tasks(job["id"], accepted)
        service.wake()
    return Response(
        200, json={"value": results}, metadata="Microsoft.Azure.Batch.Protocol.Entities.TaskAddCollectionResult"
    )


def list_tasks(request: Request, service: Service) -> Response:
    """Tasks in creation order; a filter on ``state`` or ``stateTransitionTime`` is answered through
    the store's indexes (the monitor's listing of what changed since its last poll), and every
    row read is still checked against the whole filter."""
    job = job_or_404(service, request.params["jobId"])
    query = wire.compile_filter(request.query.get("$filter"))
    state = query.state if query else None
    since = wire.timestamp(query.changed_since.astimezone(timezone.utc)) if query and query.changed_since else None
    return listing(
        request, lambda after, limit: service.store.task_page(job["id"], after, limit, state, since), "tasks"
    )


def get_task(request: Request, service: Service) -> Response:
    job = job_or_404(service, request.params["jobId"])
    return single(request, task_or_404(service, job["id"], request.params["taskId"]), METADATA)


def update_task(request: Request, service: Service) -> Response:
    """PUT: only the constraints of a task can change."""
    job = job_or_404(service, request.params["jobId"], allow_deleting=False)
    task = task_or_404(service, job["id"], request.params["taskId"])
    constraints = wire.lenient_keys(
        body(request).get("constraints") or {}, ["maxWallClockTime", "retentionTime", "maxTaskRetryCount"]
    )
    merged = dict(task.get("constraints") or {})
    if "maxTaskRetryCount" in constraints:
        merged["maxTaskRetryCount"] = constraints["maxTaskRetryCount"]
    for name in ("maxWallClockTime", "retentionTime"):
        if constraints.get(name):
            merged[name] = wire.normalize_duration(constraints[name], f"constraints.{name}")
    task["constraints"] = merged
    wire.stamp(task)
    service.store.update_task(job["id"], task)
    return Response(200, headers=resource_headers(task))


def delete_task(request: Request, service: Service) -> Response:
    job = job_or_404(service, request.params["jobId"], allow_deleting=False)
    task = task_or_404(service, job["id"], request.params["taskId"])
    service.delete_task(job["id"], task)
    service.check_all_complete(job)
    return Response(200)


def terminate_task(request: Request, service: Service) -> Response:
    job = job_or_404(service, request.params["jobId"], allow_deleting=False)
    task = task_or_404(service, job["id"], request.params["taskId"])
    if task["state"] != "completed":
        service.terminate_task(job["id"], task)
    return Response(204, headers={"DataServiceId": task["url"]})


def reactivate_task(request: Request, service: Service) -> Response:
    """Make a failed, completed task eligible to run again with a fresh retry budget."""
    job = _open_job(service, request.params["jobId"])
    task = task_or_404(service, job["id"], request.params["taskId"])
    info = task.get("executionInfo") or {}
    if task["state"] != "completed" or info.get("result") != "failure":
        raise errors.BatchError(
            409,
            "TaskNotCompleted" if task["state"] != "completed" else "TaskCompleted",
            "Only a task that completed with a failure can be reactivated.",
        )
    task["executionInfo"] = {"retryCount": 0, "requeueCount": int(info.get("requeueCount") or 0)}
    task.pop("_dependencySatisfied", None)
    wire.set_state(task, "active")
    service.store.update_task(job["id"], task)
    service.wake()
    return Response(204, headers={"DataServiceId": task["url"]})
