"""Step 2: upload the files in parallel; a blob whose MD5 already matches is not sent again."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from batchflow.model.spec import UploadFile
from batchflow.steps.context import RunContext

#: Parallel uploads. Each is I/O-bound; azure-storage-blob adds its own
#: concurrency inside large files.
WORKERS = 8


def run(ctx: RunContext) -> dict[str, Any]:
    files = ctx.workflow.uploads
    outcomes: Counter[str] = Counter()
    progress = ctx.report.progress("uploading", len(files), "file")

    def one(upload: UploadFile) -> str:
        return ctx.blobs.upload(
            upload.local_path, upload.container, upload.blob_name, ctx.digests.get(upload.local_path)
        )

    pool = ThreadPoolExecutor(max_workers=WORKERS)
    futures = {pool.submit(one, upload): upload for upload in files}
    try:
        for done, future in enumerate(as_completed(futures), start=1):
            outcomes[future.result()] += 1
            progress.update(done, futures[future].blob_name)
            ctx.checkpoint()
    finally:
        # On Ctrl-C or an error, drop the queued files instead of uploading them all first.
        pool.shutdown(wait=True, cancel_futures=True)
        progress.close()
    summary = {key: outcomes.get(key, 0) for key in ("new", "changed", "unchanged")}
    summary["bytes"] = sum(u.size for u in files)
    ctx.report.note(f"{summary['new']} new, {summary['changed']} changed, {summary['unchanged']} unchanged")
    return summary
