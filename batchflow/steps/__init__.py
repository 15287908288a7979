"""The nine steps of a run, one module each, run in this order by ``batchflow.runner.apply``.

Every step is safe to repeat: it looks at what exists before it acts, adopts
what a previous attempt of the same run made, and returns a plain-JSON
summary that the runner records in the state file. Steps reach Azure only
through ``batchflow.cloud`` and report progress only through the context's
reporter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchflow.steps import containers, job, monitor, outputs, pool, tasks, teardown, uploads
from batchflow.steps.context import RunContext

Step = Callable[[RunContext], dict[str, Any]]

#: (key, function) in the order they run; keys match ``batchflow.plan.build.STEPS``.
STEPS: tuple[tuple[str, Step], ...] = (
    ("containers", containers.run),
    ("uploads", uploads.run),
    ("pool", pool.run),
    ("job", job.run),
    ("tasks", tasks.run),
    ("monitor", monitor.run),
    ("download", outputs.run),
    ("delete_containers", teardown.delete_containers),
    ("delete_job_pool", teardown.delete_job_and_pool),
)
