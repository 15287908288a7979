"""What every step gets: the workflow, the services, the run's state, and where to report."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from batchflow.cloud.batch import BatchService, Urls
from batchflow.cloud.storage import BlobStore
from batchflow.model.spec import Workflow
from batchflow.runner.cache import CacheIndex
from batchflow.state import RunState, StateStore

#: Environment variable naming a step to pause inside (see RunContext.checkpoint).
FAULT_PAUSE = "BATCHFLOW_FAULT_PAUSE"

#: SAS tokens outlive the monitor timeout by this much, so that the last tasks
#: can still upload their outputs and the download can still read them.
SAS_MARGIN = timedelta(hours=1)


class Reporter(Protocol):
    """Where steps report; the command line implements it (text with progress bars, or JSON lines)."""

    def step(self, number: int, text: str) -> None:
        """A step's headline: ``[3/9] pool PythonTutorialPool: 1 node idle``."""

    def note(self, text: str) -> None:
        """A detail line under the current step."""

    def warn(self, text: str) -> None:
        """Something the user should know that does not stop the run."""

    def progress(self, label: str, total: int, unit: str) -> Progress:
        """Start a progress display for ``total`` items."""

    def confirm(self, question: str) -> bool | None:
        """Ask yes/no on a terminal; ``None`` when there is no terminal to ask on."""


class Progress(Protocol):
    def update(self, done: int, text: str = "") -> None: ...
    def close(self) -> None: ...


@dataclass
class RunContext:
    """One apply of one run. ``workflow`` carries the run's physical names (see batchflow.runner.naming)."""

    workflow: Workflow
    run: str
    blobs: BlobStore
    batch: BatchService
    store: StateStore
    state: RunState
    report: Reporter
    assume_yes: bool = False
    #: The MD5 of each file to upload, computed once when the run was identified.
    digests: dict[Path, bytes] = field(default_factory=dict)
    #: The machine's task cache, or None when caching is off for this apply.
    cache: CacheIndex | None = None
    #: Task id -> cache key, for the cacheable tasks (see batchflow.runner.cache).
    cache_keys: dict[str, str] = field(default_factory=dict)
    #: Physical container name -> the name the workflow declares.
    logical_containers: dict[str, str] = field(default_factory=dict)
    _paused: set[str] = field(default_factory=set, repr=False)

    @property
    def metadata(self) -> dict[str, str]:
        """What batchflow tags its pools and jobs with."""
        from batchflow.cloud.batch import RUN_METADATA, WORKFLOW_METADATA

        return {RUN_METADATA: self.run, WORKFLOW_METADATA: self.workflow.name}

    def urls(self) -> Urls:
        """A SAS issuer whose tokens expire after the monitor timeout plus a margin, from now."""
        expiry = datetime.now(timezone.utc) + self.workflow.monitor.timeout + SAS_MARGIN
        return Urls(self.blobs, expiry)

    #: The step being run, for :meth:`checkpoint`.
    current_step: str = ""

    def save(self) -> None:
        """Write the state, then pass a checkpoint: each save marks a unit of work done."""
        self.store.save(self.state)
        self.checkpoint()

    def checkpoint(self) -> None:
        """Mark a point between two units of a step's work (one file, one round of tasks).

        Fault injection for the resume tests: with ``BATCHFLOW_FAULT_PAUSE=<step>``
        in the environment, the first checkpoint inside that step stops for
        ``BATCHFLOW_FAULT_PAUSE_SECONDS`` (default 60) so that a test can kill the
        process in the middle of that step. Without the variable it does nothing.
        """
        wanted = os.environ.get(FAULT_PAUSE)
        if wanted and wanted == self.current_step and wanted not in self._paused:
            self._paused.add(wanted)
            print(f"batchflow: paused inside step {wanted} (pid {os.getpid()})", file=sys.stderr, flush=True)
            time.sleep(float(os.environ.get(FAULT_PAUSE + "_SECONDS", "60")))

    def resources(self, kind: str) -> dict[str, Any]:
        """The state's record of what this run made of ``kind`` (containers, pool, job)."""
        return self.state.resources.setdefault(kind, {})
