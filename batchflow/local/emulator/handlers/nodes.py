"""Compute nodes: list, get, reboot, reimage, disable and enable scheduling."""

from __future__ import annotations

from batchflow.local.emulator import wire
from batchflow.local.emulator.handlers.common import (
    accepted,
    body,
    listing,
    listing_of,
    node_or_404,
    pool_or_404,
    single,
)
from batchflow.local.emulator.messages import Request, Response
from batchflow.local.emulator.scheduler import Service


def list_nodes(request: Request, service: Service) -> Response:
    pool = pool_or_404(service, request.params["poolId"])
    return listing(request, listing_of([service.live_node(n) for n in service.store.nodes(pool["id"])]), "nodes")


def get_node(request: Request, service: Service) -> Response:
    pool = pool_or_404(service, request.params["poolId"])
    node = node_or_404(service, pool["id"], request.params["nodeId"])
    return single(request, service.live_node(node), "nodes/@Element")


def _restart(request: Request, service: Service, option_name: str) -> Response:
    pool = pool_or_404(service, request.params["poolId"], allow_deleting=False)
    node = node_or_404(service, pool["id"], request.params["nodeId"])
    option = body(request).get(option_name) or "requeue"
    service.reboot_node(pool["id"], node, option)
    return accepted()


def reboot_node(request: Request, service: Service) -> Response:
    return _restart(request, service, "nodeRebootOption")


def reimage_node(request: Request, service: Service) -> Response:
    return _restart(request, service, "nodeReimageOption")


def disable_scheduling(request: Request, service: Service) -> Response:
    pool = pool_or_404(service, request.params["poolId"], allow_deleting=False)
    node = node_or_404(service, pool["id"], request.params["nodeId"])
    option = body(request).get("nodeDisableSchedulingOption") or "requeue"
    if option in ("requeue", "terminate"):
        for run in [r for r in service.runs.values() if r.node_id == node["id"]]:
            run.kill(option)
    node["schedulingState"] = "disabled"
    wire.stamp(node)
    service.store.put_node(pool["id"], node)
    return Response(200)


def enable_scheduling(request: Request, service: Service) -> Response:
    pool = pool_or_404(service, request.params["poolId"], allow_deleting=False)
    node = node_or_404(service, pool["id"], request.params["nodeId"])
    node["schedulingState"] = "enabled"
    wire.stamp(node)
    service.store.put_node(pool["id"], node)
    service.wake()
    return Response(200)
