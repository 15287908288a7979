"""RunLock: one writer per run, and a refusal that says who the writer is.

Two ``apply`` (or an ``apply`` and a ``destroy``) on the same run would add
tasks twice and overwrite each other's state, so each takes the run's lock
first. The lock has two parts, in the run directory::

    lock        an OS lock (flock, through the filelock library); the kernel
                releases it when the process dies, however it dies
    lock.json   who holds it: pid, host, operation, start time, batchflow version

The OS lock decides; ``lock.json`` only explains. A second process is refused
at once with ``LockHeld``, whose message names the holder::

    run 'topwords-3f2a' is locked by apply (pid 4242 on host ci-7 since 2026-03-01T10:00:00.000Z)

If the OS lock is free but a ``lock.json`` remains, its writer died holding
the lock (a live holder removes it before releasing). The new holder takes
over and reports the dead one in :attr:`RunLock.took_over`, for the command
line to mention. The lock is not re-entrant: one process takes it once.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

import filelock

from batchflow import __version__
from batchflow.errors import LockHeld
from batchflow.state.model import now_iso
from batchflow.state.redact import assert_no_secrets

LOCK_FILE = "lock"
LOCK_INFO_FILE = "lock.json"

# How long a refused process waits for the holder's lock.json to appear: the
# holder writes it right after taking the OS lock, so this only bridges that
# instant and keeps the refusal message informative.
_HOLDER_INFO_WAIT = 1.0


@dataclass(frozen=True)
class LockInfo:
    """Who holds (or held) a run's lock, as written to ``lock.json``."""

    pid: int
    host: str
    operation: str
    started: str
    batchflow_version: str

    def describe(self) -> str:
        """The holder in words: ``apply (pid 123 on host h since 2026-...)``."""
        return f"{self.operation} (pid {self.pid} on host {self.host} since {self.started})"


def read_lock_info(directory: Path) -> LockInfo | None:
    """The lock information in *directory*, or ``None`` if there is none or it is unreadable.

    For ``status`` to show who is running a run, and for RunLock itself.
    """
    try:
        data = json.loads((Path(directory) / LOCK_INFO_FILE).read_text(encoding="utf-8"))
        return LockInfo(
            pid=int(data["pid"]),
            host=str(data["host"]),
            operation=str(data["operation"]),
            started=str(data["started"]),
            batchflow_version=str(data["batchflow_version"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


class RunLock:
    """The lock of one run directory, held for the duration of an operation.

    ::

        with RunLock(run_dir, "apply") as lock:
            if lock.took_over:
                note(f"took over the lock left by {lock.took_over.describe()}")
            ...

    :param directory: the run directory; created if missing.
    :param operation: what the holder does (``apply``, ``destroy``), shown to others.
    :param run: the run's name for messages; defaults to the directory's name.
    """

    def __init__(self, directory: Path, operation: str, *, run: str | None = None) -> None:
        self.directory = Path(directory)
        self.operation = operation
        self.run = run or self.directory.name
        #: The lock information of a dead holder this lock replaced, if any.
        self.took_over: LockInfo | None = None
        #: This holder's information while the lock is held.
        self.info: LockInfo | None = None
        self._os_lock = filelock.FileLock(str(self.directory / LOCK_FILE))

    @property
    def info_path(self) -> Path:
        return self.directory / LOCK_INFO_FILE

    def acquire(self) -> RunLock:
        """Take the lock now or raise ``LockHeld`` naming the holder; never waits for it."""
        if self.info is not None:
            raise RuntimeError(f"the lock of run '{self.run}' is already held by this RunLock")
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._os_lock.acquire(blocking=False)
        except filelock.Timeout:
            holder = self._holder_info()
            if holder is None:
                raise LockHeld(
                    f"run '{self.run}' is locked by another process (no readable {self.info_path})"
                ) from None
            raise LockHeld(f"run '{self.run}' is locked by {holder.describe()}") from None
        try:
            previous = read_lock_info(self.directory)
            if previous is not None and (previous.pid, previous.host) != (os.getpid(), socket.gethostname()):
                self.took_over = previous
            info = LockInfo(
                pid=os.getpid(),
                host=socket.gethostname(),
                operation=self.operation,
                started=now_iso(),
                batchflow_version=__version__,
            )
            self._write_info(info)
            self.info = info
        except BaseException:
            self._os_lock.release()
            raise
        return self

    def release(self) -> None:
        """Give the lock up: remove ``lock.json`` first, then the OS lock.

        In this order, a ``lock.json`` found under a free OS lock always
        means a holder that died, never one that is just leaving.
        """
        if self.info is None:
            return
        try:
            if read_lock_info(self.directory) == self.info:
                self.info_path.unlink(missing_ok=True)
        finally:
            self.info = None
            self._os_lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _write_info(self, info: LockInfo) -> None:
        """Write lock.json whole or not at all (temporary file, then rename)."""
        text = json.dumps(asdict(info), indent=2) + "\n"
        assert_no_secrets(text, where=str(self.info_path))
        temp = self.directory / f".{LOCK_INFO_FILE}.{uuid.uuid4().hex}.tmp"
        try:
            temp.write_text(text, encoding="utf-8")
            os.replace(temp, self.info_path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _holder_info(self) -> LockInfo | None:
        """The live holder's information, waiting briefly if it has not written it yet.

        Right after a holder takes the OS lock, lock.json is missing or still
        the one of a dead predecessor; both last only an instant.
        """
        deadline = time.monotonic() + _HOLDER_INFO_WAIT
        while True:
            info = read_lock_info(self.directory)
            if info is not None and (info.host != socket.gethostname() or _process_exists(info.pid)):
                return info
            if time.monotonic() >= deadline:
                return info
            time.sleep(0.02)


def _process_exists(pid: int) -> bool:
    """Whether a process with this id exists on this host (signal 0 tests without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True
