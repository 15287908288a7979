"""Helpers every handler uses: look-ups that raise the right 404/409, listing with paging, created answers."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from batchflow.local.emulator import errors, wire
from batchflow.local.emulator.messages import Request, Response
from batchflow.local.emulator.scheduler import Service

MAX_PAGE = 1000
Fetch = Callable[[int, int], list[tuple[int, dict[str, Any]]]]


def body(request: Request) -> dict[str, Any]:
    """The JSON object body; an absent body reads as ``{}``, anything else is 400."""
    if request.body is None:
        return {}
    if not isinstance(request.body, dict):
        raise errors.invalid_body("the body must be a JSON object")
    return request.body


def pool_or_404(service: Service, pool_id: str, allow_deleting: bool = True) -> dict[str, Any]:
    pool = service.store.get("pools", pool_id)
    if pool is None:
        raise errors.pool_not_found()
    if not allow_deleting and pool["state"] == "deleting":
        raise errors.pool_being_deleted()
    return pool


def job_or_404(service: Service, job_id: str, allow_deleting: bool = True) -> dict[str, Any]:
    job = service.store.get("jobs", job_id)
    if job is None:
        raise errors.job_not_found()
    if not allow_deleting and job["state"] == "deleting":
        raise errors.job_being_deleted()
    return job


def task_or_404(service: Service, job_id: str, task_id: str) -> dict[str, Any]:
    task = service.store.get_task(job_id, task_id)
    if task is None:
        raise errors.task_not_found()
    return task


def node_or_404(service: Service, pool_id: str, node_id: str) -> dict[str, Any]:
    node = service.store.get_node(pool_id, node_id)
    if node is None:
        raise errors.node_not_found()
    return node


def resource_headers(resource: dict[str, Any]) -> dict[str, str]:
    """The headers Batch answers a change with: ETag, Last-Modified and the resource's URL."""
    return {
        "ETag": resource["eTag"],
        "Last-Modified": wire.http_date(resource["lastModified"]),
        "DataServiceId": resource["url"],
    }


def created(resource: dict[str, Any], status: int = 201) -> Response:
    """The answer to a create: empty body, the resource headers and its Location."""
    return Response(status, headers={**resource_headers(resource), "Location": resource["url"]})


def accepted(resource: dict[str, Any] | None = None, status: int = 202) -> Response:
    return Response(status, headers=resource_headers(resource) if resource is not None else {})


def single(request: Request, resource: dict[str, Any], metadata: str) -> Response:
    """A GET of one resource, with ``$select`` applied and its ETag in the headers."""
    headers = {}
    if "eTag" in resource:
        headers["ETag"] = resource["eTag"]
        headers["Last-Modified"] = wire.http_date(resource["lastModified"])
    return Response(
        200, json=wire.select(wire.public(resource), request.query.get("$select")), headers=headers, metadata=metadata
    )


def _page_size(request: Request) -> int:
    raw = request.query.get("maxresults")
    if not raw:
        return MAX_PAGE
    try:
        size = int(raw)
    except ValueError as error:
        raise errors.invalid_query("maxresults", raw) from error
    if not 1 <= size <= MAX_PAGE:
        raise errors.invalid_query("maxresults", raw, "maxresults must be between 1 and 1000")
    return size


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("seq:"))
    except ValueError as error:
        raise errors.invalid_query("$skiptoken", token) from error


def listing(request: Request, fetch: Fetch, metadata: str) -> Response:
    """A list answer: one page of ``$filter``-ed, ``$select``-ed items and an absolute nextLink.

    Items come from ``fetch(after_seq, limit)`` in creation order; the
    opaque ``$skiptoken`` is the last sequence number returned, so pages
    stay stable while tasks change state underneath.
    """
    size = _page_size(request)
    query = wire.compile_filter(request.query.get("$filter"))
    predicate = query.predicate if query else None
    fields = request.query.get("$select")
    after = _decode_token(request.query.get("$skiptoken"))
    items: list[dict[str, Any]] = []
    more = False
    while len(items) < size:
        batch = fetch(after, max(size, 200))
        if not batch:
            break
        for seq, item in batch:
            after = seq
            if predicate is None or predicate(item):
                items.append(wire.select(wire.public(item), fields))
                if len(items) == size:
                    more = True
                    break
        if len(batch) < max(size, 200) and not more:
            break
    answer: dict[str, Any] = {"value": items}
    if more and fetch(after, 1):
        query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
        query["$skiptoken"] = base64.urlsafe_b64encode(f"seq:{after}".encode()).decode()
        answer["odata.nextLink"] = f"{request.base_url}{request.path}?{urlencode(query, quote_via=quote, safe='')}"
    return Response(200, json=answer, metadata=metadata)


def listing_of(items: list[dict[str, Any]]) -> Fetch:
    """A fetch function over an in-memory list (nodes, files), numbering items from 1."""

    def fetch(after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        numbered = list(enumerate(items, start=1))[after:]
        return numbered[:limit] if limit >= 0 else numbered

    return fetch


def error_value(error: errors.BatchError) -> dict[str, Any]:
    """A BatchError as the ``error`` object inside per-item results."""
    out: dict[str, Any] = {"code": error.code, "message": {"lang": "en-US", "value": error.message}}
    if error.values:
        out["values"] = [{"key": k, "value": v} for k, v in error.values]
    return out


def copy_known(source: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The known properties of a create body, in their wire spelling."""
    source = wire.lenient_keys(source, names)
    return {name: source[name] for name in names if source.get(name) is not None}
