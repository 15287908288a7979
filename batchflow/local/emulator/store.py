"""SQLite schema and all the SQL: pools, nodes, jobs, tasks and live processes.

Every resource is one row holding its wire-shaped JSON, plus the few
columns queries need (state, order, result, slots). WAL mode with
``synchronous=NORMAL`` keeps each change durable across a crash of the
service (not of the machine) without an fsync per task transition, which
is what makes thousands of small updates per second possible. The caller
(the service) serialises access with its own lock; the store adds one too
so that it is safe on its own.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pools (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    pool_key TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (pool_key, id));
CREATE TABLE IF NOT EXISTS jobs (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    job_key TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL,
    result TEXT, slots INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (job_key, key));
CREATE INDEX IF NOT EXISTS tasks_by_seq ON tasks (job_key, seq);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (job_key, state, seq);
CREATE TABLE IF NOT EXISTS processes (pid INTEGER PRIMARY KEY, started TEXT NOT NULL, label TEXT NOT NULL);
"""


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


class Store:
    """The service's durable state in ``<home>/batch/state.sqlite``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise RuntimeError(f"{path} has schema {row[0]}; this service reads schema {SCHEMA_VERSION}")
        top = 0
        for table in ("pools", "nodes", "jobs", "tasks"):
            top = max(top, self._db.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()[0])
        self._seq = top

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # --- pools and jobs (same shape) -----------------------------------------

    def insert(self, table: str, data: dict[str, Any]) -> None:
        """Insert a pool or job; ``table`` is ``pools`` or ``jobs``."""
        assert table in ("pools", "jobs")
        with self._lock:
            self._db.execute(
                f"INSERT INTO {table} (key, seq, data) VALUES (?, ?, ?)",
                (data["id"].lower(), self._next_seq(), _dump(data)),
            )

    def get(self, table: str, resource_id: str) -> dict[str, Any] | None:
        assert table in ("pools", "jobs")
        with self._lock:
            row = self._db.execute(f"SELECT data FROM {table} WHERE key=?", (resource_id.lower(),)).fetchone()
        return json.loads(row[0]) if row else None

    def update(self, table: str, data: dict[str, Any]) -> None:
        assert table in ("pools", "jobs")
        with self._lock:
            self._db.execute(f"UPDATE {table} SET data=? WHERE key=?", (_dump(data), data["id"].lower()))

    def delete(self, table: str, resource_id: str) -> None:
        assert table in ("pools", "jobs")
        with self._lock:
            self._db.execute(f"DELETE FROM {table} WHERE key=?", (resource_id.lower(),))

    def page(self, table: str, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Pools or jobs in creation order after sequence number ``after``."""
        assert table in ("pools", "jobs")
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, data FROM {table} WHERE seq>? ORDER BY seq LIMIT ?", (after, limit)
            ).fetchall()
        return [(seq, json.loads(data)) for seq, data in rows]

    def all(self, table: str) -> list[dict[str, Any]]:
        return [data for _, data in self.page(table, 0, -1)]

    # --- nodes ---------------------------------------------------------------

    def put_node(self, pool_id: str, node: dict[str, Any]) -> None:
        """Insert or replace a node of ``pool_id``."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq FROM nodes WHERE pool_key=? AND id=?", (pool_id.lower(), node["id"])
            ).fetchone()
            seq = row[0] if row else self._next_seq()
            self._db.execute(
                "INSERT OR REPLACE INTO nodes (pool_key, id, seq, data) VALUES (?, ?, ?, ?)",
                (pool_id.lower(), node["id"], seq, _dump(node)),
            )

    def get_node(self, pool_id: str, node_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM nodes WHERE pool_key=? AND id=?", (pool_id.lower(), node_id)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def nodes(self, pool_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM nodes WHERE pool_key=? ORDER BY seq", (pool_id.lower(),)
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def delete_node(self, pool_id: str, node_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM nodes WHERE pool_key=? AND id=?", (pool_id.lower(), node_id))

    def delete_nodes(self, pool_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM nodes WHERE pool_key=?", (pool_id.lower(),))

    # --- tasks ---------------------------------------------------------------

    @staticmethod
    def _task_row(job_id: str, task: dict[str, Any]) -> tuple[Any, ...]:
        result = (task.get("executionInfo") or {}).get("result")
        return (
            task["state"],
            result,
            int(task.get("requiredSlots") or 1),
            _dump(task),
            job_id.lower(),
            task["id"].lower(),
        )

    def insert_tasks(self, job_id: str, tasks: list[dict[str, Any]]) -> None:
        """Insert many tasks in one transaction (the add-collection path)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for task in tasks:
                    state, result, slots, data, job_key, key = self._task_row(job_id, task)
                    self._db.execute(
                        "INSERT INTO tasks (job_key, key, seq, state, result, slots, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (job_key, key, self._next_seq(), state, result, slots, data),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def existing_task_keys(self, job_id: str, task_ids: list[str]) -> set[str]:
        """Which of ``task_ids`` (lowercased) already exist in the job."""
        keys = [task_id.lower() for task_id in task_ids]
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key FROM tasks WHERE job_key=? AND key IN ({marks})", (job_id.lower(), *chunk)
                ).fetchall()
                found.update(row[0] for row in rows)
        return found

    def get_task(self, job_id: str, task_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM tasks WHERE job_key=? AND key=?", (job_id.lower(), task_id.lower())
            ).fetchone()
        return json.loads(row[0]) if row else None

    def tasks_by_ids(self, job_id: str, task_ids: list[str]) -> list[dict[str, Any]]:
        keys = [task_id.lower() for task_id in task_ids]
        out: list[dict[str, Any]] = []
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT data FROM tasks WHERE job_key=? AND key IN ({marks})", (job_id.lower(), *chunk)
                ).fetchall()
                out.extend(json.loads(row[0]) for row in rows)
        return out

    def update_task(self, job_id: str, task: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE tasks SET state=?, result=?, slots=?, data=? WHERE job_key=? AND key=?",
                self._task_row(job_id, task),
            )

    def delete_task(self, job_id: str, task_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM tasks WHERE job_key=? AND key=?", (job_id.lower(), task_id.lower()))

    def delete_tasks(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM tasks WHERE job_key=?", (job_id.lower(),))

    def task_page(
        self, job_id: str, after: int, limit: int, state: str | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        """Tasks of a job in creation order after ``after``, optionally in one state."""
        with self._lock:
            if state is None:
                rows = self._db.execute(
                    "SELECT seq, data FROM tasks WHERE job_key=? AND seq>? ORDER BY seq LIMIT ?",
                    (job_id.lower(), after, limit),
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT seq, data FROM tasks WHERE job_key=? AND state=? AND seq>? ORDER BY seq LIMIT ?",
                    (job_id.lower(), state, after, limit),
                ).fetchall()
        return [(seq, json.loads(data)) for seq, data in rows]

    def iter_tasks(self, job_id: str, state: str | None = None, batch: int = 500) -> Iterator[dict[str, Any]]:
        """Every task of a job (optionally in one state), read in batches."""
        after = 0
        while True:
            page = self.task_page(job_id, after, batch, state)
            if not page:
                return
            for _, task in page:
                yield task
            after = page[-1][0]

    def task_counts(self, job_id: str) -> list[tuple[str, str | None, int, int]]:
        """Rows of (state, result, task count, slot sum) for a job."""
        with self._lock:
            return self._db.execute(
                "SELECT state, result, COUNT(*), SUM(slots) FROM tasks WHERE job_key=? GROUP BY state, result",
                (job_id.lower(),),
            ).fetchall()

    def jobs_with_tasks_in(self, state: str) -> list[str]:
        """Job keys that have at least one task in ``state``."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT job_key FROM tasks WHERE state=?", (state,)).fetchall()
        return [row[0] for row in rows]

    # --- processes started by the service ------------------------------------

    def add_process(self, pid: int, started: str, label: str) -> None:
        """Remember a task process so a restarted service can end it if it outlived a crash."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO processes VALUES (?, ?, ?)", (pid, started, label))

    def remove_process(self, pid: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM processes WHERE pid=?", (pid,))

    def processes(self) -> list[tuple[int, str, str]]:
        with self._lock:
            return self._db.execute("SELECT pid, started, label FROM processes").fetchall()
