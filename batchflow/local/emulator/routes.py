"""The route table, as data: (method, path template) → handler.

Templates are matched segment by segment on the raw, still-encoded path,
because the SDK percent-encodes ``/`` inside ``{filePath}``; each
parameter is decoded after matching. ``{filePath}`` also swallows any
remaining segments, for clients that send the slashes unencoded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from batchflow.local.emulator.handlers import files, images, jobs, nodes, pools, tasks
from batchflow.local.emulator.messages import Request, Response
from batchflow.local.emulator.scheduler import Service

Handler = Callable[[Request, Service], Response]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler

    @property
    def parts(self) -> list[str]:
        return self.template.strip("/").split("/")


ROUTES = [
    Route("POST", "/pools", pools.create_pool),
    Route("GET", "/pools", pools.list_pools),
    Route("GET", "/pools/{poolId}", pools.get_pool),
    Route("HEAD", "/pools/{poolId}", pools.pool_exists),
    Route("DELETE", "/pools/{poolId}", pools.delete_pool),
    Route("PATCH", "/pools/{poolId}", pools.update_pool),
    Route("POST", "/pools/{poolId}/updateproperties", pools.replace_pool_properties),
    Route("POST", "/pools/{poolId}/resize", pools.resize_pool),
    Route("POST", "/pools/{poolId}/stopresize", pools.stop_resize),
    Route("POST", "/pools/{poolId}/removenodes", pools.remove_nodes),
    Route("GET", "/pools/{poolId}/nodes", nodes.list_nodes),
    Route("GET", "/pools/{poolId}/nodes/{nodeId}", nodes.get_node),
    Route("POST", "/pools/{poolId}/nodes/{nodeId}/reboot", nodes.reboot_node),
    Route("POST", "/pools/{poolId}/nodes/{nodeId}/reimage", nodes.reimage_node),
    Route("POST", "/pools/{poolId}/nodes/{nodeId}/disablescheduling", nodes.disable_scheduling),
    Route("POST", "/pools/{poolId}/nodes/{nodeId}/enablescheduling", nodes.enable_scheduling),
    Route("GET", "/pools/{poolId}/nodes/{nodeId}/files", files.list_node_files),
    Route("GET", "/pools/{poolId}/nodes/{nodeId}/files/{filePath}", files.get_node_file),
    Route("HEAD", "/pools/{poolId}/nodes/{nodeId}/files/{filePath}", files.node_file_properties),
    Route("DELETE", "/pools/{poolId}/nodes/{nodeId}/files/{filePath}", files.delete_node_file),
    Route("GET", "/supportedimages", images.list_supported_images),
    Route("POST", "/jobs", jobs.create_job),
    Route("GET", "/jobs", jobs.list_jobs),
    Route("GET", "/jobs/{jobId}", jobs.get_job),
    Route("PATCH", "/jobs/{jobId}", jobs.update_job),
    Route("PUT", "/jobs/{jobId}", jobs.replace_job),
    Route("DELETE", "/jobs/{jobId}", jobs.delete_job),
    Route("POST", "/jobs/{jobId}/terminate", jobs.terminate_job),
    Route("POST", "/jobs/{jobId}/disable", jobs.disable_job),
    Route("POST", "/jobs/{jobId}/enable", jobs.enable_job),
    Route("GET", "/jobs/{jobId}/taskcounts", jobs.task_counts),
    Route("POST", "/jobs/{jobId}/tasks", tasks.create_task),
    Route("GET", "/jobs/{jobId}/tasks", tasks.list_tasks),
    Route("POST", "/jobs/{jobId}/addtaskcollection", tasks.add_task_collection),
    Route("GET", "/jobs/{jobId}/tasks/{taskId}", tasks.get_task),
    Route("PUT", "/jobs/{jobId}/tasks/{taskId}", tasks.update_task),
    Route("DELETE", "/jobs/{jobId}/tasks/{taskId}", tasks.delete_task),
    Route("POST", "/jobs/{jobId}/tasks/{taskId}/terminate", tasks.terminate_task),
    Route("POST", "/jobs/{jobId}/tasks/{taskId}/reactivate", tasks.reactivate_task),
    Route("GET", "/jobs/{jobId}/tasks/{taskId}/files", files.list_task_files),
    Route("GET", "/jobs/{jobId}/tasks/{taskId}/files/{filePath}", files.get_task_file),
    Route("HEAD", "/jobs/{jobId}/tasks/{taskId}/files/{filePath}", files.task_file_properties),
    Route("DELETE", "/jobs/{jobId}/tasks/{taskId}/files/{filePath}", files.delete_task_file),
]


def match(method: str, raw_path: str) -> tuple[Handler, dict[str, str]] | None:
    """The handler and decoded path parameters for a request, or None."""
    segments = raw_path.strip("/").split("/")
    for route in ROUTES:
        if route.method != method:
            continue
        parts = route.parts
        if parts[-1] == "{filePath}":
            if len(segments) < len(parts):
                continue
            fixed, rest = segments[: len(parts) - 1], segments[len(parts) - 1 :]
            candidates = [*fixed, "/".join(rest)]
        elif len(segments) != len(parts):
            continue
        else:
            candidates = segments
        params: dict[str, str] = {}
        for part, segment in zip(parts, candidates, strict=True):
            if part.startswith("{"):
                if not segment:
                    break
                params[part[1:-1]] = unquote(segment)
            elif part != segment.lower():
                break
        else:
            return route.handler, params
    return None
