"""What a person looks at after a run: the end-of-run summary and the HTML run report.

``summary`` computes the numbers from the run's state; ``page`` draws the
self-contained ``report.html``. Both read only the state and the run folder,
so ``apply`` writes the report at its end and ``batchflow report`` rebuilds it.
"""

from __future__ import annotations

from pathlib import Path

from batchflow.model.spec import Workflow
from batchflow.report.page import write_report
from batchflow.report.summary import Summary, summarize, task_times
from batchflow.state import RunState


def build(workflow: Workflow, state: RunState, run_dir: Path, target: str) -> Summary:
    """Summarize the run and write its report page; returns the summary (which names the page)."""
    times = task_times(state)
    summary = summarize(workflow, state, run_dir, target, times)
    write_report(summary, workflow, state, run_dir, times)
    return summary


__all__ = ["Summary", "build", "summarize"]
