"""The exceptions batchflow raises, and the exit status each one means.

Every error a user can cause or meet derives from :class:`BatchflowError`;
the command line (``batchflow.cli.main``) is the one place that turns them
into a message and an exit status::

    BatchflowError            1  something failed at run time
    ├── UsageError            2  the command line is wrong
    ├── WorkflowError         2  the workflow file is invalid (carries diagnostics)
    ├── SetupError            2  something batchflow needs is missing (Node.js, a port)
    ├── RunFailed             1  a task failed, the timeout passed, the pool could not start
    │   └── UnsafeBlobName    1  a blob name that would leave the download folder (cloud.storage)
    ├── LockHeld              1  another batchflow process holds the run
    ├── StateFormatError      1  a state file that cannot be read (state.model)
    │   └── StateVersionError 1  a state file from a newer batchflow
    ├── StateConflict         1  a save that would overwrite another run's or newer state (state.store)
    └── Interrupted         130  Ctrl-C or SIGTERM

SDK exceptions never escape ``batchflow.cloud``: ``cloud.errors.service_errors``
turns them into :class:`RunFailed` saying what was being done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchflow.diagnostics import Diagnostic


class BatchflowError(Exception):
    """Base of all batchflow errors; ``exit_code`` is the process exit status."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        assert message, "an error needs a message a user can act on"
        super().__init__(message)
        self.message = message


class UsageError(BatchflowError):
    """The command line itself is wrong (unknown option, malformed ``--set``)."""

    exit_code = 2


class WorkflowError(BatchflowError):
    """The workflow is invalid; ``diagnostics`` holds every problem found."""

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        errors = [d for d in diagnostics if d.severity == "error"]
        super().__init__(f"{len(errors)} error(s) in the workflow")


class SetupError(BatchflowError):
    """A prerequisite is missing or unusable: Node.js, npm, a free port."""

    exit_code = 2


class RunFailed(BatchflowError):
    """The run ended without success: a task failed, a timeout, a refused request."""

    exit_code = 1


class LockHeld(BatchflowError):
    """Another live batchflow process holds this run's lock."""

    exit_code = 1


class Interrupted(BatchflowError):
    """The user interrupted the command (Ctrl-C, SIGTERM)."""

    exit_code = 130
