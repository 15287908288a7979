"""Step 3: create the pool, or adopt one this workflow may use, and wait until its nodes are ready.

A start-task failure or a resize error ends the step at once with the node's
start-task stderr, instead of waiting out the timeout for a pool that cannot work.
"""

from __future__ import annotations

import time
from typing import Any

from azure.batch import models

from batchflow.cloud.batch import (
    RUN_METADATA,
    WORKFLOW_METADATA,
    enum_value,
    metadata_of,
    pool_options,
    start_task_of,
    tail,
)
from batchflow.errors import RunFailed
from batchflow.state import redact_secrets
from batchflow.steps.context import RunContext

POLL_SECONDS = 1.0
STDERR_LINES = 20
READY = {"idle", "running"}
BROKEN = {"starttaskfailed", "unusable"}


def _matches(existing: models.BatchPool, ctx: RunContext) -> list[str]:
    """How an existing pool differs from the workflow's (image and VM size)."""
    wanted = ctx.workflow.pool
    differences = []
    if (existing.vm_size or "").lower() != wanted.vm_size.lower():
        differences.append(f"VM size {existing.vm_size}, not {wanted.vm_size}")
    image = getattr(existing.virtual_machine_configuration, "image_reference", None)
    have = tuple((getattr(image, k, "") or "").lower() for k in ("publisher", "offer", "sku"))
    want = (wanted.image.publisher.lower(), wanted.image.offer.lower(), wanted.image.sku.lower())
    if have != want:
        differences.append(f"image {'/'.join(have)}, not {'/'.join(want)}")
    return differences


def _adopt_or_refuse(existing: models.BatchPool, ctx: RunContext) -> str:
    """Decide what an existing pool with our id is to this run: ours, kept by the workflow, or reused."""
    record = ctx.resources("pool")
    tags = metadata_of(existing)
    pool_id = ctx.workflow.pool.id
    if (record.get("id") == pool_id and record.get("created")) or tags.get(RUN_METADATA) == ctx.run:
        record.update(id=pool_id, created=True)
        return "adopted (created by this run)"
    differences = _matches(existing, ctx)
    if tags.get(WORKFLOW_METADATA) == ctx.workflow.name and not differences:
        record.update(id=pool_id, created=False, kept_from=tags.get(RUN_METADATA))
        return f"reused (made by run {tags.get(RUN_METADATA)})"
    if ctx.workflow.pool.reuse and not differences:
        record.update(id=pool_id, created=False)
        return "reused (pool.reuse is true)"
    why = "; ".join(differences) if differences else "it was not created by this workflow"
    hint = "delete it or change pool.id" if differences else "set pool.reuse: true to use it, or change pool.id"
    raise RunFailed(f"pool {pool_id} already exists and cannot be used: {why}; {hint}")


def _wait_while_deleting(ctx: RunContext, pool_id: str) -> models.BatchPool | None:
    existing = ctx.batch.get_pool(pool_id)
    while existing is not None and enum_value(existing.state) == "deleting":
        ctx.report.note(f"pool {pool_id} is being deleted; waiting for it to go")
        time.sleep(POLL_SECONDS)
        existing = ctx.batch.get_pool(pool_id)
    return existing


def _start_task_failure(ctx: RunContext, pool_id: str, node: models.BatchNode) -> RunFailed:
    info = node.start_task_info
    lines = [f"the start task failed on node {node.id}"]
    if info is not None:
        if info.exit_code is not None:
            lines[0] += f" with exit code {info.exit_code}"
        failure = info.failure_info
        if failure is not None:
            lines.append(f"  {enum_value(failure.category)}: {failure.code}: {redact_secrets(failure.message or '')}")
    stderr = ctx.batch.node_file(pool_id, node.id, "startup/stderr.txt")
    if stderr:
        lines.append("  last lines of startup/stderr.txt:")
        lines += [f"    {line}" for line in redact_secrets(tail(stderr, STDERR_LINES)).splitlines()]
    lines.append(f"  see it all with: batchflow logs {ctx.workflow.path} --start-task {node.id} --stderr")
    return RunFailed("\n".join(lines))


def _wait_for_nodes(ctx: RunContext, pool_id: str) -> dict[str, Any]:
    wanted = ctx.workflow.pool
    target = wanted.dedicated_nodes + wanted.low_priority_nodes
    deadline = time.monotonic() + ctx.workflow.monitor.timeout.total_seconds()
    last = ""
    while True:
        pool = ctx.batch.get_pool(pool_id)
        if pool is None:
            raise RunFailed(f"pool {pool_id} disappeared while waiting for its nodes")
        if pool.resize_errors:
            errors = redact_secrets("; ".join(f"{e.code}: {e.message}" for e in pool.resize_errors))
            raise RunFailed(f"pool {pool_id} could not allocate its nodes: {errors}")
        nodes = ctx.batch.list_nodes(pool_id)
        states = [enum_value(n.state) or "unknown" for n in nodes]
        for node in nodes:
            if enum_value(node.state) == "starttaskfailed" and wanted.start_task and wanted.start_task.wait_for_success:
                raise _start_task_failure(ctx, pool_id, node)
        ready = sum(1 for s in states if s in READY)
        summary = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))) or "no nodes yet"
        if summary != last:
            ctx.report.note(f"pool {pool_id}: {summary}")
            last = summary
        steady = enum_value(pool.allocation_state) == "steady"
        if steady and nodes and all(s in READY | BROKEN for s in states) and ready:
            if len(nodes) < target:
                ctx.report.warn(f"pool {pool_id} has {len(nodes)} of the {target} nodes asked for")
            _record_start_tasks(ctx, nodes)
            return {"nodes": len(nodes), "ready": ready}
        if steady and nodes and all(s in BROKEN for s in states):
            raise RunFailed(f"pool {pool_id}: every node is {summary}, so no task can run")
        if steady and not nodes and target:
            raise RunFailed(f"pool {pool_id} finished resizing with no nodes")
        if time.monotonic() > deadline:
            raise RunFailed(
                f"pool {pool_id} was not ready within the monitor timeout ({ctx.workflow.monitor.timeout}): {summary}"
            )
        time.sleep(POLL_SECONDS)


def _record_start_tasks(ctx: RunContext, nodes: list[models.BatchNode]) -> None:
    """Keep when each node's start task ran, for the run report's timeline."""
    found = {}
    for node in nodes:
        info = node.start_task_info
        if info is not None and info.start_time is not None:
            found[node.id] = {
                "start": info.start_time.isoformat(),
                "end": info.end_time.isoformat() if info.end_time else None,
                "exit_code": info.exit_code,
            }
    ctx.resources("pool")["start_tasks"] = found


def run(ctx: RunContext) -> dict[str, Any]:
    pool_id = ctx.workflow.pool.id
    existing = _wait_while_deleting(ctx, pool_id)
    if existing is not None:
        how = _adopt_or_refuse(existing, ctx)
    else:
        if ctx.batch.create_pool(pool_options(ctx.workflow.pool, ctx.urls(), ctx.metadata)):
            how = "created"
        else:  # created between our look and our request: look again
            existing = ctx.batch.get_pool(pool_id)
            how = _adopt_or_refuse(existing, ctx) if existing else "created"
        record = ctx.resources("pool")
        if how == "created":
            record.pop("kept_from", None)
            record.update(id=pool_id, created=True)
    ctx.save()
    ctx.report.note(f"pool {pool_id} {how}")
    start_task = ctx.workflow.pool.start_task
    if how != "created" and start_task and any(r.container for r in start_task.resource_files):
        # Its start task carries the SAS tokens of the run that made it; nodes that
        # join later (a replaced low-priority node, a resize) need working ones.
        ctx.batch.set_start_task(pool_id, start_task_of(ctx.workflow.pool, ctx.urls()))
    summary = _wait_for_nodes(ctx, pool_id)
    return {"pool": pool_id, "how": how, **summary}
