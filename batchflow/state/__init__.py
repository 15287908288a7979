"""The record of a run: its state file, task journal and lock, under ``.batchflow/<run>/``.

``model`` defines RunState and its versioned JSON format, ``store`` writes it
crash-safely, ``lock`` keeps one writer per run, and ``redact`` keeps
secrets out of all of them. Nothing here prints; problems are returned or
raised for the command line to report.
"""

from __future__ import annotations

from batchflow.state.lock import LockInfo, RunLock, read_lock_info
from batchflow.state.model import (
    FORMAT_VERSION,
    RunState,
    StateFormatError,
    StateVersionError,
    StepRecord,
    TaskRecord,
    new_state,
    set_step_status,
    state_from_json,
    state_to_json,
)
from batchflow.state.redact import assert_no_secrets, find_secrets, redact_secrets
from batchflow.state.store import StateConflict, StateStore

__all__ = [
    "FORMAT_VERSION",
    "LockInfo",
    "RunLock",
    "RunState",
    "StateConflict",
    "StateFormatError",
    "StateStore",
    "StateVersionError",
    "StepRecord",
    "TaskRecord",
    "assert_no_secrets",
    "find_secrets",
    "new_state",
    "read_lock_info",
    "redact_secrets",
    "set_step_status",
    "state_from_json",
    "state_to_json",
]
