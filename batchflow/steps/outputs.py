"""Step 7: download the outputs; a blob name never places a file outside the destination."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from batchflow.cloud.storage import BlobInfo, UnsafeBlobName, remove_partial_downloads
from batchflow.errors import RunFailed
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
    return {"downloaded": written, "unchanged": unchanged, "destination": str(download.destination)}
