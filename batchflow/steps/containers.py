"""Step 1: create the declared containers; existing ones are fine."""

from __future__ import annotations

from typing import Any

from batchflow.steps.context import RunContext


def run(ctx: RunContext) -> dict[str, Any]:
    record = ctx.resources("containers")
    created = existing = 0
    for container in ctx.workflow.containers:
        if ctx.blobs.create_container(container.name):
            record[container.name] = "created"
            created += 1
        else:
            # a container this run created before an interruption stays "created"
            record.setdefault(container.name, "existing")
            existing += 1
        ctx.save()
    ctx.report.note(f"{created} created, {existing} already there")
    return {"created": created, "existing": existing}
