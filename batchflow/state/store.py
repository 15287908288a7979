"""StateStore: read and write one run's state directory, crash-safe and in bounded time.

A run directory (``.batchflow/<run>/``) holds::

    state.json          the last snapshot of the RunState (see batchflow.state.model)
    state.json.backup   the snapshot before it
    tasks.jsonl         task transitions recorded since the snapshot, one JSON line each

Why two files for one state: a run can have 100,000 tasks, and the monitor
step learns of a few transitions at every poll. Rewriting the whole snapshot
each time would cost O(tasks) per transition; appending the transitions to
the journal costs O(transitions). The journal is folded back into the
snapshot by :meth:`StateStore.save` / :meth:`StateStore.compact`, which the
runner calls at step boundaries.

Crash safety, for ``kill -9`` at any instant:

* A snapshot is written to a temporary file in the same folder, flushed,
  fsynced and renamed over ``state.json`` (a rename within one file system
  is atomic), then the folder is fsynced so the rename itself survives a
  power loss. ``state.json`` is therefore always either the old or the new
  snapshot, never a mix. The old one is hard-linked to the backup first.
* Journal lines are appended and fsynced per batch. A line cut short by a
  kill has no newline; readers ignore it and the next writer cuts it off
  before appending, so it never fuses with the next record.
* Each journal line carries a sequence number ``n`` and the snapshot records
  the last one it folded (``journal_seq``), so a crash between writing a
  snapshot and emptying the journal replays nothing twice.

Each task record is serialised once: the store keeps the line it wrote for
each record (records are frozen, so the same object means the same text) and
a snapshot reuses those lines, encoding only the records that are new since.
A snapshot of a 100,000-task run after a poll therefore costs the changed
tasks plus joining lines, not 100,000 encodings and checks.

The store never prints: problems it recovered from are left in
:attr:`StateStore.warnings` for the command line to show. It takes no lock;
the caller holds :class:`batchflow.state.lock.RunLock` around writes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from batchflow.errors import BatchflowError
from batchflow.state.model import (
    RunState,
    StateFormatError,
    StateVersionError,
    TaskRecord,
    check_task_entry,
    check_task_record,
    head_to_dict,
    journal_line,
    json_head,
    json_task_lines,
    now_iso,
    state_from_json,
    task_from_dict,
    task_json,
    task_line,
    text_content_key,
)
from batchflow.state.redact import assert_no_secrets

STATE_FILE = "state.json"
BACKUP_FILE = "state.json.backup"
JOURNAL_FILE = "tasks.jsonl"


class StateConflict(BatchflowError):
    """The state being saved is not a successor of the one on disk (another lineage, an older serial)."""


@dataclass(frozen=True)
class _Snapshot:
    """What the store knows of the snapshot on disk, to decide whether and how to write."""

    lineage: str
    serial: int
    key: str
    journal_seq: int
    #: False when state.json was unreadable and the backup stood in for it.
    intact: bool


class StateStore:
    """The state files of one run directory: load, save, record task transitions, compact.

    Usage by the runner::

        store = StateStore(Path(".batchflow") / run)
        state = store.load() or new_state(...)
        store.save(state)                       # after each step transition
        store.record_tasks(changed_records)     # after each poll: appends only
        store.compact()                         # at a step boundary

    The store keeps the state it loaded or last saved as :attr:`state`;
    :meth:`record_tasks` applies each transition to it as well as to the
    journal, so the next :meth:`save` writes a snapshot that holds them all.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        #: The state last loaded or saved; record_tasks() updates its tasks.
        self.state: RunState | None = None
        #: What the last load() recovered from, one sentence each, for the CLI to print.
        self.warnings: list[str] = []
        self._disk: _Snapshot | None = None
        self._disk_known = False
        # The sequence number of the last journal record written or read.
        self._seq = 0
        self._journal_tail_checked = False
        self._temp_files_cleaned = False
        # task id -> (the record, its line in the state file), for records whose text was
        # checked for secrets: written to the journal, or in a snapshot written or found on disk.
        self._lines: dict[str, tuple[TaskRecord, str]] = {}

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE

    @property
    def backup_path(self) -> Path:
        return self.directory / BACKUP_FILE

    @property
    def journal_path(self) -> Path:
        return self.directory / JOURNAL_FILE

    @property
    def journal_length(self) -> int:
        """How many journal records the snapshot on disk does not hold yet.

        Loading replays them all, so a long monitor step can compact when
        this outgrows the number of tasks, without waiting for its end.
        """
        return self._seq - (self._disk.journal_seq if self._disk else 0)

    # ----------------------------------------------------------------- reading

    def load(self) -> RunState | None:
        """Read the run's state: the snapshot with the journal replayed over it.

        Returns ``None`` if the run has no state yet. If ``state.json`` is
        unreadable (a truncated or corrupt file), the backup is used and a
        warning is added to :attr:`warnings`. Raises ``StateFormatError`` if
        neither can be read, and ``StateVersionError`` (without looking at
        the backup) if the snapshot comes from a newer batchflow.

        Loading writes nothing, so ``status`` may load while ``apply`` runs.
        """
        self.warnings = []
        state = self._read_snapshot()
        self.state = state
        if state is None:
            if self.journal_path.exists():
                self.warnings.append(f"{self.journal_path} exists without a state file and was ignored")
            return None
        last_seq = self._replay_journal(state)
        self._seq = max(state.journal_seq, last_seq)
        return state

    def _read_snapshot(self) -> RunState | None:
        """Read state.json, or the backup if state.json is unreadable; remember what is on disk."""
        self._disk_known = True
        self._disk = None
        primary_error: StateFormatError | None = None
        if self.state_path.exists():
            try:
                text = self.state_path.read_text(encoding="utf-8")
                state = state_from_json(text)
            except StateVersionError:
                raise
            except (StateFormatError, UnicodeDecodeError) as error:
                primary_error = StateFormatError(f"{self.state_path} is unreadable: {error}")
            else:
                key = text_content_key(text)
                self._disk = _Snapshot(state.lineage, state.serial, key, state.journal_seq, True)
                return state
        if not self.backup_path.exists():
            if primary_error is not None:
                raise StateFormatError(f"{primary_error.message}, and there is no {BACKUP_FILE} to fall back on")
            return None
        try:
            text = self.backup_path.read_text(encoding="utf-8")
            state = state_from_json(text)
        except (StateFormatError, UnicodeDecodeError) as error:
            first = primary_error.message if primary_error else f"{self.state_path} is missing"
            raise StateFormatError(f"{first}, and {self.backup_path} is unreadable too: {error}") from None
        reason = primary_error.message if primary_error else f"{self.state_path} is missing"
        self.warnings.append(
            f"{reason}; using the backup {self.backup_path} (serial {state.serial}, written {state.updated}) "
            "instead, so the most recent changes may be missing"
        )
        self._disk = _Snapshot(state.lineage, state.serial, text_content_key(text), state.journal_seq, False)
        return state

    def _replay_journal(self, state: RunState) -> int:
        """Apply the journal's records newer than the snapshot to *state*; return the last ``n`` seen."""
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return 0
        lines = data.split(b"\n")
        # The piece after the last newline is empty, or a line a kill cut short: never a record.
        last_seq = 0
        for number, line in enumerate(lines[:-1], start=1):
            if not line.strip():
                continue
            try:
                seq, record = _decode_journal_line(line)
            except (StateFormatError, ValueError) as error:
                self.warnings.append(f"{self.journal_path} line {number} is unreadable and was skipped: {error}")
                continue
            last_seq = max(last_seq, seq)
            if seq > state.journal_seq:
                state.tasks[record.task_id] = record
        return last_seq

    # ----------------------------------------------------------------- writing

    def save(self, state: RunState) -> bool:
        """Write *state* as the new snapshot, atomically, keeping the old one as the backup.

        ``serial`` goes up (and ``updated`` is stamped) only if the content
        differs from the snapshot on disk; an unchanged state is not written
        at all. The snapshot holds every task recorded so far, so the journal
        is emptied afterwards. Returns whether a file was written.

        Raises ``StateConflict`` if *state* belongs to another lineage or is
        older than the snapshot on disk, and ``ValueError`` if it contains a
        secret or a value that is not plain JSON; nothing is written then.
        """
        if not self._disk_known and (self.state_path.exists() or self.backup_path.exists()):
            self._read_snapshot()
        disk = self._disk
        if disk is not None:
            if state.lineage != disk.lineage:
                raise StateConflict(
                    f"{self.state_path} holds another run's state (lineage {disk.lineage}, not "
                    f"{state.lineage}); refusing to overwrite it"
                )
            if state.serial < disk.serial:
                raise StateConflict(
                    f"the state being saved (serial {state.serial}) is older than {self.state_path} "
                    f"(serial {disk.serial}); load the run's state again before saving"
                )
        if self.state is not None and state is not self.state and self._seq > state.journal_seq:
            raise StateConflict(
                "task transitions were recorded into the state this store loaded, and the state "
                "being saved is a different object that lacks them; save the loaded state"
            )

        document = head_to_dict(state)
        lines, fresh = self._task_lines(state)
        tasks_data = json_task_lines([line for _, line in lines.values()]).encode("utf-8")
        key = text_content_key(json_head(document), tasks_data)
        changed = disk is None or key != disk.key
        journal_pending = self._seq > (disk.journal_seq if disk else 0)
        if not changed and not journal_pending and disk is not None and disk.intact:
            # The same text as the file on disk, which was checked when it was written.
            self._lines = lines
            self.state = state
            return False

        previous = (state.serial, state.updated, state.journal_seq)
        if changed:
            state.serial += 1
            state.updated = now_iso()
        state.journal_seq = self._seq
        document.update(serial=state.serial, updated=state.updated, journal_seq=state.journal_seq)
        try:
            head = json_head(document)
            # The lines kept from earlier writes were checked then; a secret lives within one line.
            assert_no_secrets(head + "\n".join(fresh), where=str(self.state_path))
            self._write_snapshot(head.encode("utf-8"), tasks_data, keep_backup=disk is not None and disk.intact)
        except BaseException:
            state.serial, state.updated, state.journal_seq = previous
            raise
        self._lines = lines
        self._disk = _Snapshot(state.lineage, state.serial, key, state.journal_seq, True)
        self._disk_known = True
        self.state = state
        self._empty_journal()
        return True

    def _task_lines(self, state: RunState) -> tuple[dict[str, tuple[TaskRecord, str]], list[str]]:
        """Each task's line in the state file, reusing the kept line of every record seen before.

        Returns the lines by task id (with their records, to keep) and the lines
        made now, which the caller must check for secrets before keeping them.
        Raises ``ValueError`` if a new record is malformed or filed under another id.
        """
        kept = self._lines
        lines: dict[str, tuple[TaskRecord, str]] = {}
        fresh: list[str] = []
        for task_id, record in state.tasks.items():
            entry = kept.get(task_id)
            if entry is None or entry[0] is not record:
                check_task_entry(task_id, record)
                entry = (record, task_line(task_id, task_json(record)))
                fresh.append(entry[1])
            lines[task_id] = entry
        return lines, fresh

    def compact(self) -> bool:
        """Fold the journal into the snapshot: save the state this store holds.

        Called at step boundaries, so that ``tasks.jsonl`` stays short and
        loading stays fast. Returns whether a file was written.
        """
        if self.state is None:
            raise RuntimeError("compact() needs a state: load() or save() one first")
        return self.save(self.state)

    def record_tasks(self, records: Iterable[TaskRecord]) -> int:
        """Append the transitions among *records* to the journal, durably, as one batch.

        A record equal to what the state already holds is not a transition
        and is skipped, so callers may pass everything a poll listed. The
        cost is proportional to the transitions written, never to the
        number of tasks in the run. Returns how many records were written.

        Raises ``ValueError`` (writing nothing) if a record is malformed or
        contains a secret.
        """
        state = self.state
        if state is None:
            raise RuntimeError("record_tasks() needs a saved state: load() or save() one first")
        batch: dict[str, TaskRecord] = {}
        for record in records:
            check_task_record(record)
            batch.pop(record.task_id, None)  # the last record of a task in a batch wins
            batch[record.task_id] = record
        transitions = [r for r in batch.values() if state.tasks.get(r.task_id) != r]
        if not transitions:
            return 0

        fields = [task_json(record) for record in transitions]
        data = "".join(
            journal_line(self._seq + offset, record, text)
            for offset, (record, text) in enumerate(zip(transitions, fields, strict=True), start=1)
        )
        assert_no_secrets(data, where=str(self.journal_path))

        self._cut_torn_journal_tail()
        created = not self.journal_path.exists()
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _write_all(fd, data.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_directory(self.directory)

        self._seq += len(transitions)
        for record, text in zip(transitions, fields, strict=True):
            if record.failure is not None:
                # Records are frozen, but the failure is a dict the caller still holds:
                # a copy, so that it cannot change the state without a journal line saying so.
                record = dataclasses.replace(record, failure=copy.deepcopy(record.failure))
            state.tasks[record.task_id] = record
            self._lines[record.task_id] = (record, task_line(record.task_id, text))
        return len(transitions)

    def _write_snapshot(self, *parts: bytes, keep_backup: bool) -> None:
        """Replace state.json with *parts*, one after the other, atomically; link the old state.json as the
        backup first."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._clean_temp_files()
        temp = self._temp_path(STATE_FILE)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                for data in parts:
                    _write_all(fd, data)
                # Flushed to disk before the rename: otherwise a power loss can
                # leave the new name pointing at an empty file.
                os.fsync(fd)
            finally:
                os.close(fd)
            if keep_backup:
                self._backup_current()
            os.replace(temp, self.state_path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_directory(self.directory)

    def _backup_current(self) -> None:
        """Make the current state.json the backup, without a moment where either name is missing.

        A hard link costs nothing whatever the size of the state; where the
        file system refuses links, the bytes are copied to a temporary file
        and renamed instead.
        """
        temp = self._temp_path(BACKUP_FILE)
        try:
            try:
                os.link(self.state_path, temp)
            except OSError:
                shutil.copyfile(self.state_path, temp)
                with open(temp, "rb+") as handle:
                    os.fsync(handle.fileno())
            os.replace(temp, self.backup_path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _temp_path(self, name: str) -> Path:
        return self.directory / f".{name}.{uuid.uuid4().hex}.tmp"

    def _clean_temp_files(self) -> None:
        """Remove temporary files a killed writer left; once per store, as only a lock holder writes."""
        if self._temp_files_cleaned:
            return
        for leftover in self.directory.glob(f".{STATE_FILE}*.tmp"):
            leftover.unlink(missing_ok=True)
        self._temp_files_cleaned = True

    def _empty_journal(self) -> None:
        """Empty the journal once a snapshot holds its records (journal_seq makes a crash here harmless)."""
        try:
            with open(self.journal_path, "rb+") as handle:
                if os.fstat(handle.fileno()).st_size:
                    handle.truncate(0)
                    os.fsync(handle.fileno())
        except FileNotFoundError:
            pass
        self._journal_tail_checked = True

    def _cut_torn_journal_tail(self) -> None:
        """Cut a partial last line (a kill mid-append) off the journal, once, before appending.

        Appending after it would glue the next record onto the fragment and
        lose both. Done here and not in load(), because load() must not write:
        a reader cutting a line that the lock holder is still writing would
        corrupt the journal.
        """
        if self._journal_tail_checked:
            return
        try:
            with open(self.journal_path, "rb+") as handle:
                size = os.fstat(handle.fileno()).st_size
                end = size
                while end > 0:
                    start = max(0, end - 65536)
                    handle.seek(start)
                    chunk = handle.read(end - start)
                    newline = chunk.rfind(b"\n")
                    if newline >= 0:
                        end = start + newline + 1
                        break
                    end = start
                if end != size:
                    handle.truncate(end)
                    os.fsync(handle.fileno())
        except FileNotFoundError:
            pass
        self._journal_tail_checked = True


def _decode_journal_line(line: bytes) -> tuple[int, TaskRecord]:
    """One journal line as (sequence number, task record)."""
    try:
        fields = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StateFormatError(f"not valid JSON ({error})") from None
    if not isinstance(fields, dict):
        raise StateFormatError("not a JSON object")
    seq = fields.pop("n", None)
    task_id = fields.pop("id", None)
    if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(task_id, str):
        raise StateFormatError("the sequence number 'n' or the task 'id' is missing")
    return seq, task_from_dict(task_id, fields)


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written; a single call may write less."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(directory: Path) -> None:
    """Flush a folder's entries, so a rename or a new file in it survives a power loss.

    Not every platform can open a folder (Windows cannot); there the rename
    is as durable as the platform makes it.
    """
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
