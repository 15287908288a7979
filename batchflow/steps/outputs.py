"""Step 7: download the outputs; a blob name never places a file outside the destination."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from batchflow.cloud.storage import BlobInfo, UnsafeBlobName, file_md5, remove_partial_downloads, safe_destination
from batchflow.errors import RunFailed
from batchflow.report.summary import DOWNLOADS_FILE
from batchflow.steps.context import RunContext

WORKERS = 8


def run(ctx: RunContext) -> dict[str, Any]:
    download = ctx.workflow.download
    if download is None:
        ctx.report.note("nothing to download")
        return {"downloaded": 0, "unchanged": 0}
    blobs = ctx.blobs.list_blobs(download.container, download.prefix)
    download.destination.mkdir(parents=True, exist_ok=True)
    if remove_partial_downloads(download.destination):
        ctx.report.note("removed partial files left by an interrupted download")
    refused: list[str] = []
    written = unchanged = 0
    progress = ctx.report.progress("downloading", len(blobs), "file")

    def one(blob: BlobInfo) -> bool:
        return ctx.blobs.download(download.container, blob, download.destination)

    pool = ThreadPoolExecutor(max_workers=WORKERS)
    futures = {pool.submit(one, blob): blob for blob in blobs}
    try:
        for done, future in enumerate(as_completed(futures), start=1):
            try:
                if future.result():
                    written += 1
                else:
                    unchanged += 1
            except UnsafeBlobName as error:
                refused.append(error.message)
            except OSError as error:
                refused.append(f"cannot write blob {futures[future].name!r}: {error.strerror or error}")
            progress.update(done, futures[future].name)
            ctx.checkpoint()
    finally:
        # On Ctrl-C or an error, drop the queued blobs instead of downloading them all first.
        pool.shutdown(wait=True, cancel_futures=True)
        progress.close()
    ctx.report.note(f"{written} downloaded, {unchanged} already there, into {download.destination}")
    if refused:
        raise RunFailed("\n".join(refused))
    if ctx.cache is not None:
        _remember_local_copies(ctx)
    write_listing(ctx.store.directory / DOWNLOADS_FILE, [{"name": b.name, "size": b.size} for b in blobs])
    return {
        "downloaded": written,
        "unchanged": unchanged,
        "destination": str(download.destination),
        "files": len(blobs),
        "bytes": sum(b.size for b in blobs),
    }


def write_listing(path: Path, items: list[dict[str, Any]]) -> None:
    """Write what the run downloaded (for its report), atomically: a kill leaves the old list or the new one."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)


def _remember_local_copies(ctx: RunContext) -> None:
    """Note in the cache where this run's task outputs were downloaded, with their MD5.

    When the run's containers are deleted at cleanup, a later run can still
    reuse these outputs from the local files, once their digests match.
    """
    download = ctx.workflow.download
    assert download is not None
    entries = ctx.cache.entries_of(ctx.run) if ctx.cache else []
    changed = []
    for entry in entries:
        touched = False
        for blob in entry.blobs:
            if blob.container != download.container or not blob.name.startswith(download.prefix):
                continue
            try:
                path = safe_destination(download.destination, blob.name)
            except UnsafeBlobName:
                continue
            if path.is_file():
                blob.file, blob.file_md5 = str(path.resolve()), file_md5(path).hex()
                touched = True
        if touched:
            changed.append(entry)
    if ctx.cache is not None:
        ctx.cache.record(changed)
