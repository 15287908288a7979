"""Step 1: create the declared containers; existing ones are fine.

The state records each container as ``created`` (this run made it, so cleanup
and ``destroy`` may delete it) or ``existing`` (it was there before).
"""

from __future__ import annotations

from typing import Any

from batchflow.steps.context import RunContext


def run(ctx: RunContext) -> dict[str, Any]:
    record = ctx.resources("containers")
    created = existing = 0
    for container in ctx.workflow.containers:
        name = container.name
        if name not in record:
            # Recorded before the request, so that a process killed right after
            # the service made the container still knows, on resume, that it did.
            record[name] = "existing" if ctx.blobs.container_exists(name) else "creating"
            ctx.store.save(ctx.state)
        if ctx.blobs.create_container(name) or record[name] != "existing":
            record[name] = "created"
            created += 1
        else:
            existing += 1
        ctx.save()
    ctx.report.note(f"{created} created, {existing} already there")
    return {"created": created, "existing": existing}
