"""Task files and node files: list, get (with ``ocp-range``), properties, delete."""

from __future__ import annotations

import mimetypes
import os
import shutil
import stat
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from batchflow.local.emulator import errors, noderunner, wire
from batchflow.local.emulator.handlers.common import (
    job_or_404,
    listing,
    listing_of,
    node_or_404,
    pool_or_404,
    task_or_404,
)
from batchflow.local.emulator.messages import Request, Response
from batchflow.local.emulator.scheduler import Service


def _task_base(service: Service, request: Request) -> tuple[Path, str]:
    """The task's folder on its node and the URL files are listed under."""
    job = job_or_404(service, request.params["jobId"])
    task = task_or_404(service, job["id"], request.params["taskId"])
    node_info = task.get("nodeInfo")
    if not node_info:
        raise errors.task_files_unavailable()
    retention = wire.duration((task.get("constraints") or {}).get("retentionTime"), "retentionTime")
    end = (task.get("executionInfo") or {}).get("endTime")
    root = noderunner.node_root(service.config, node_info["poolId"], node_info["nodeId"])
    folder = noderunner.task_dir(root, job["id"], task["id"])
    if (
        end
        and retention is not None
        and retention.days < 10675199
        and wire.parse_timestamp(end) + retention < wire.now()
    ):
        shutil.rmtree(folder, ignore_errors=True)
        raise errors.task_files_cleaned_up()
    return folder, service.url("jobs", job["id"], "tasks", task["id"], "files")


def _node_base(service: Service, request: Request) -> tuple[Path, str]:
    pool = pool_or_404(service, request.params["poolId"])
    node = node_or_404(service, pool["id"], request.params["nodeId"])
    return noderunner.node_root(service.config, pool["id"], node["id"]), service.url(
        "pools", pool["id"], "nodes", node["id"], "files"
    )


def _resolve(base: Path, relative: str) -> Path:
    target = Path(os.path.normpath(base / relative.replace("\\", "/")))
    if target != base and base not in target.parents:
        raise errors.file_not_found()
    return target


def _entry(path: Path, base: Path, url: str) -> dict[str, Any]:
    name = path.relative_to(base).as_posix()
    info = path.stat()
    entry: dict[str, Any] = {"name": name, "url": f"{url}/{quote(name, safe='')}", "isDirectory": path.is_dir()}
    if not entry["isDirectory"]:
        entry["properties"] = {
            "creationTime": wire.timestamp(datetime.fromtimestamp(info.st_ctime, timezone.utc)),
            "lastModified": wire.timestamp(datetime.fromtimestamp(info.st_mtime, timezone.utc)),
            "contentLength": str(info.st_size),
            "contentType": _content_type(path),
            "fileMode": f"0{stat.S_IMODE(info.st_mode):o}",
        }
    return entry


def _content_type(path: Path) -> str:
    if path.suffix == ".txt":
        return "text/plain"
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _list(request: Request, base: Path, url: str) -> Response:
    entries: list[dict[str, Any]] = []
    if base.is_dir():
        if request.flag("recursive"):
            for folder, dirs, files in os.walk(base):
                dirs.sort()
                for name in [*sorted(dirs), *sorted(files)]:
                    entries.append(_entry(Path(folder) / name, base, url))
        else:
            entries = [_entry(child, base, url) for child in sorted(base.iterdir())]
    return listing(request, listing_of(entries), "files")


def _headers(path: Path, base: Path, url: str) -> dict[str, str]:
    info = path.stat()
    name = path.relative_to(base).as_posix()
    return {
        "Content-Type": _content_type(path) if path.is_file() else "application/octet-stream",
        "Last-Modified": format_datetime(datetime.fromtimestamp(info.st_mtime, timezone.utc), usegmt=True),
        "ocp-creation-time": format_datetime(datetime.fromtimestamp(info.st_ctime, timezone.utc), usegmt=True),
        "ocp-batch-file-isdirectory": "True" if path.is_dir() else "False",
        "ocp-batch-file-url": f"{url}/{quote(name, safe='')}",
        "ocp-batch-file-mode": f"0{stat.S_IMODE(info.st_mode):o}",
    }


def _get(request: Request, base: Path, url: str, head: bool) -> Response:
    path = _resolve(base, request.params["filePath"])
    if not path.exists():
        raise errors.file_not_found()
    headers = _headers(path, base, url)
    if path.is_dir():
        return Response(200, raw=b"", headers={**headers, "Content-Length": "0"})
    size = path.stat().st_size
    if head:
        return Response(200, headers={**headers, "Content-Length": str(size)})
    with open(path, "rb") as handle:
        data = handle.read()
    wanted = request.header("ocp-range")
    if wanted:
        start, end = _parse_range(wanted, size)
        data = data[start : end + 1]
    return Response(200, raw=data, headers=headers)


def _parse_range(value: str, size: int) -> tuple[int, int]:
    unit, _, spec = value.partition("=")
    first, _, last = spec.partition("-")
    try:
        if unit.strip() != "bytes":
            raise ValueError(unit)
        if first == "":
            start, end = max(0, size - int(last)), size - 1
        else:
            start = int(first)
            end = int(last) if last else size - 1
    except ValueError as error:
        raise errors.invalid_range(value) from error
    if start > end or (size and start >= size):
        raise errors.invalid_range(value)
    return start, min(end, max(size - 1, 0))


def _delete(request: Request, base: Path) -> Response:
    path = _resolve(base, request.params["filePath"])
    if not path.exists() or path == base:
        raise errors.file_not_found()
    if path.is_dir():
        if not request.flag("recursive") and any(path.iterdir()):
            raise errors.BatchError(409, "DirectoryNotEmpty", "The directory is not empty; use recursive=true.")
        shutil.rmtree(path)
    else:
        path.unlink()
    return Response(200)


def list_task_files(request: Request, service: Service) -> Response:
    return _list(request, *_task_base(service, request))


def get_task_file(request: Request, service: Service) -> Response:
    return _get(request, *_task_base(service, request), head=False)


def task_file_properties(request: Request, service: Service) -> Response:
    return _get(request, *_task_base(service, request), head=True)


def delete_task_file(request: Request, service: Service) -> Response:
    return _delete(request, _task_base(service, request)[0])


def list_node_files(request: Request, service: Service) -> Response:
    return _list(request, *_node_base(service, request))


def get_node_file(request: Request, service: Service) -> Response:
    return _get(request, *_node_base(service, request), head=False)


def node_file_properties(request: Request, service: Service) -> Response:
    return _get(request, *_node_base(service, request), head=True)


def delete_node_file(request: Request, service: Service) -> Response:
    return _delete(request, _node_base(service, request)[0])
