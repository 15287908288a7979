"""Pools: create, get, exists, list, delete, update, resize, stop resize, remove nodes."""

from __future__ import annotations

from typing import Any

from batchflow.local.emulator import errors, wire
from batchflow.local.emulator.handlers.common import (
    accepted,
    body,
    copy_known,
    created,
    listing,
    pool_or_404,
    resource_headers,
    single,
)
from batchflow.local.emulator.messages import Request, Response
from batchflow.local.emulator.scheduler import Service

_CREATE_FIELDS = [
    "id",
    "displayName",
    "vmSize",
    "virtualMachineConfiguration",
    "resizeTimeout",
    "resourceTags",
    "targetDedicatedNodes",
    "targetLowPriorityNodes",
    "enableAutoScale",
    "autoScaleFormula",
    "autoScaleEvaluationInterval",
    "enableInterNodeCommunication",
    "networkConfiguration",
    "startTask",
    "certificateReferences",
    "applicationPackageReferences",
    "taskSlotsPerNode",
    "taskSchedulingPolicy",
    "userAccounts",
    "metadata",
    "mountConfiguration",
    "targetNodeCommunicationMode",
    "upgradePolicy",
]
_PATCH_FIELDS = [
    "startTask",
    "metadata",
    "applicationPackageReferences",
    "targetNodeCommunicationMode",
    "displayName",
    "vmSize",
    "taskSlotsPerNode",
    "taskSchedulingPolicy",
    "resourceTags",
]
METADATA = "pools/@Element"


def _check_start_task(start_task: Any) -> None:
    if start_task is None:
        return
    if not isinstance(start_task, dict) or not start_task.get("commandLine"):
        raise errors.missing_property("startTask.commandLine")


def _check_counts(values: dict[str, Any]) -> None:
    for name in ("targetDedicatedNodes", "targetLowPriorityNodes"):
        value = values.get(name)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise errors.invalid_property(name, value)


def create_pool(request: Request, service: Service) -> Response:
    options = body(request)
    pool = copy_known(options, _CREATE_FIELDS)
    wire.check_id(pool.get("id"))
    if not pool.get("vmSize"):
        raise errors.missing_property("vmSize")
    if pool.get("enableAutoScale"):
        raise errors.invalid_property(
            "enableAutoScale",
            True,
            "the local Batch service does not evaluate autoscale formulas; set target node counts",
        )
    _check_counts(pool)
    _check_start_task(pool.get("startTask"))
    slots = pool.get("taskSlotsPerNode", 1)
    if not isinstance(slots, int) or not 1 <= slots <= 256:
        raise errors.invalid_property("taskSlotsPerNode", slots, "between 1 and 256")
    existing = service.store.get("pools", pool["id"])
    if existing is not None:
        raise errors.pool_being_deleted() if existing["state"] == "deleting" else errors.pool_exists()
    at = wire.timestamp()
    pool.update(
        url=service.url("pools", pool["id"]),
        creationTime=at,
        state="active",
        stateTransitionTime=at,
        allocationState="resizing",
        allocationStateTransitionTime=at,
        currentDedicatedNodes=0,
        currentLowPriorityNodes=0,
        taskSlotsPerNode=slots,
        targetDedicatedNodes=pool.get("targetDedicatedNodes", 0),
        targetLowPriorityNodes=pool.get("targetLowPriorityNodes", 0),
        resizeTimeout=wire.normalize_duration(pool.get("resizeTimeout", "PT15M"), "resizeTimeout"),
        enableAutoScale=False,
        enableInterNodeCommunication=bool(pool.get("enableInterNodeCommunication", False)),
    )
    pool.setdefault("taskSchedulingPolicy", {"nodeFillType": "spread"})
    wire.stamp(pool)
    service.store.insert("pools", pool)
    service.resize(pool)
    return created(pool)


def get_pool(request: Request, service: Service) -> Response:
    return single(request, pool_or_404(service, request.params["poolId"]), METADATA)


def pool_exists(request: Request, service: Service) -> Response:
    pool = service.store.get("pools", request.params["poolId"])
    if pool is None:
        return Response(404)
    return Response(200, headers={"ETag": pool["eTag"], "Last-Modified": wire.http_date(pool["lastModified"])})


def list_pools(request: Request, service: Service) -> Response:
    return listing(request, lambda after, limit: service.store.page("pools", after, limit), "pools")


def delete_pool(request: Request, service: Service) -> Response:
    pool = pool_or_404(service, request.params["poolId"])
    if pool["state"] != "deleting":
        service.delete_pool(pool)
    return accepted()


def update_pool(request: Request, service: Service) -> Response:
    """PATCH: change only the properties present."""
    pool = pool_or_404(service, request.params["poolId"], allow_deleting=False)
    changes = copy_known(body(request), _PATCH_FIELDS)
    _check_start_task(changes.get("startTask"))
    pool.update(changes)
    wire.stamp(pool)
    service.store.update("pools", pool)
    return Response(200, headers=resource_headers(pool))


def replace_pool_properties(request: Request, service: Service) -> Response:
    """POST updateproperties: replace startTask, metadata and packages; absent ones are cleared."""
    pool = pool_or_404(service, request.params["poolId"], allow_deleting=False)
    options = body(request)
    changes = copy_known(
        options,
        [
            "startTask",
            "metadata",
            "applicationPackageReferences",
            "certificateReferences",
            "targetNodeCommunicationMode",
        ],
    )
    _check_start_task(changes.get("startTask"))
    for name in ("startTask", "metadata", "applicationPackageReferences"):
        pool.pop(name, None)
    pool.update(changes)
    wire.stamp(pool)
    service.store.update("pools", pool)
    return Response(204, headers={"ETag": pool["eTag"], "DataServiceId": pool["url"]})


def resize_pool(request: Request, service: Service) -> Response:
    pool = pool_or_404(service, request.params["poolId"], allow_deleting=False)
    options = wire.lenient_keys(
        body(request), ["targetDedicatedNodes", "targetLowPriorityNodes", "resizeTimeout", "nodeDeallocationOption"]
    )
    _check_counts(options)
    for name in ("targetDedicatedNodes", "targetLowPriorityNodes"):
        if options.get(name) is not None:
            pool[name] = options[name]
    if options.get("resizeTimeout"):
        pool["resizeTimeout"] = wire.normalize_duration(options["resizeTimeout"], "resizeTimeout")
    pool["_deallocation"] = options.get("nodeDeallocationOption") or "requeue"
    service.resize(pool)
    return accepted(pool)


def stop_resize(request: Request, service: Service) -> Response:
    """Resizes finish at once locally, so stopping one only confirms the pool is steady."""
    pool = pool_or_404(service, request.params["poolId"], allow_deleting=False)
    return accepted(pool)


def remove_nodes(request: Request, service: Service) -> Response:
    pool = pool_or_404(service, request.params["poolId"], allow_deleting=False)
    options = wire.lenient_keys(body(request), ["nodeList", "resizeTimeout", "nodeDeallocationOption"])
    node_ids = options.get("nodeList") or []
    if not node_ids:
        raise errors.missing_property("nodeList")
    option = options.get("nodeDeallocationOption") or "requeue"
    for node_id in node_ids:
        node = service.store.get_node(pool["id"], node_id)
        if node is None:
            raise errors.node_not_found()
    for node_id in node_ids:
        node = service.store.get_node(pool["id"], node_id)
        assert node is not None
        key = "targetDedicatedNodes" if node.get("isDedicated") else "targetLowPriorityNodes"
        pool[key] = max(0, int(pool.get(key) or 0) - 1)
        service._remove_node(pool["id"], node, option)
    service.resize(pool)
    return accepted(pool)
