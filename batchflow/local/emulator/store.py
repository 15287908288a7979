"""SQLite schema and all the SQL: pools, nodes, jobs and tasks.

Every resource is one row holding its wire-shaped JSON, plus the few
columns queries need (state, order, result, slots, state transition time).
Those columns are indexed so that no question the service asks per
scheduling decision or per poll reads every task of a job: the next
active tasks come from ``tasks_by_state``, the tasks changed since a time
from ``tasks_by_change``, and the task counts from ``task_counts``, which
triggers keep in step with every insert, update and delete. WAL mode with
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pools (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    pool_key TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (pool_key, id));
CREATE TABLE IF NOT EXISTS jobs (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    job_key TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL,
    result TEXT, slots INTEGER NOT NULL, data TEXT NOT NULL, changed TEXT,
    PRIMARY KEY (job_key, key));
CREATE INDEX IF NOT EXISTS tasks_by_seq ON tasks (job_key, seq);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (job_key, state, seq);
CREATE INDEX IF NOT EXISTS tasks_by_change ON tasks (job_key, changed);
-- No longer written: a restarted service finds its predecessor's task processes by their environment.
CREATE TABLE IF NOT EXISTS processes (pid INTEGER PRIMARY KEY, started TEXT NOT NULL, label TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS task_counts (
    job_key TEXT NOT NULL, state TEXT NOT NULL, result TEXT NOT NULL, n INTEGER NOT NULL, slots INTEGER NOT NULL,
    PRIMARY KEY (job_key, state, result));
CREATE TRIGGER IF NOT EXISTS task_counted AFTER INSERT ON tasks BEGIN
    INSERT INTO task_counts VALUES (new.job_key, new.state, COALESCE(new.result, ''), 1, new.slots)
        ON CONFLICT DO UPDATE SET n = n + 1, slots = slots + excluded.slots;
END;
CREATE TRIGGER IF NOT EXISTS task_uncounted AFTER DELETE ON tasks BEGIN
    UPDATE task_counts SET n = n - 1, slots = slots - old.slots
        WHERE job_key = old.job_key AND state = old.state AND result = COALESCE(old.result, '');
END;
CREATE TRIGGER IF NOT EXISTS task_recounted AFTER UPDATE OF state, result, slots ON tasks
    WHEN old.state IS NOT new.state OR old.result IS NOT new.result OR old.slots IS NOT new.slots BEGIN
    UPDATE task_counts SET n = n - 1, slots = slots - old.slots
        WHERE job_key = old.job_key AND state = old.state AND result = COALESCE(old.result, '');
    INSERT INTO task_counts VALUES (new.job_key, new.state, COALESCE(new.result, ''), 1, new.slots)
        ON CONFLICT DO UPDATE SET n = n + 1, slots = slots + excluded.slots;
END;
"""

# Schema 1 had neither the transition time column nor the counts; both are derived from the rows.
_FROM_SCHEMA_1 = """
ALTER TABLE tasks ADD COLUMN changed TEXT;
UPDATE tasks SET changed = json_extract(data, '$.stateTransitionTime');
"""
_COUNT_EXISTING = """
INSERT INTO task_counts
    SELECT job_key, state, COALESCE(result, ''), COUNT(*), SUM(slots) FROM tasks GROUP BY job_key, state, result;
"""


#: The fields of :meth:`Store.node_summaries`.
_NODE_SUMMARY = ("id", "state", "schedulingState", "affinityId", "url", "isDedicated")


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


class Store:
    """The service's durable state in ``<home>/batch/state.sqlite``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # What the scheduler asks before every decision, kept between writes (see in_state and
        # node_summaries); dropped whole when a transaction rolls back.
        self._writes = {"pools": 0, "jobs": 0}
        self._in_state: dict[tuple[str, str], tuple[int, list[dict[str, Any]]]] = {}
        self._summaries: dict[str, dict[str, dict[str, Any]]] = {}
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._create_or_upgrade(path)
        top = 0
        for table in ("pools", "nodes", "jobs", "tasks"):
            top = max(top, self._db.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {table}").fetchone()[0])
        self._seq = top

    def _create_or_upgrade(self, path: Path) -> None:
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = self._db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        found = int(row[0]) if row else None
        if found is not None and found > SCHEMA_VERSION:
            raise RuntimeError(f"{path} has schema {found}; this service reads schema {SCHEMA_VERSION} and older")
        if found == SCHEMA_VERSION:
            self._db.executescript(_SCHEMA)  # a no-op unless an object is missing
            return
        # executescript commits first, so the upgrade is one explicit transaction.
        script = "BEGIN;\n"
        if found == 1:
            script += _FROM_SCHEMA_1
        script += _SCHEMA
        if found == 1:
            script += _COUNT_EXISTING
        script += f"INSERT OR REPLACE INTO meta VALUES ('schema', '{SCHEMA_VERSION}');\nCOMMIT;\n"
        try:
            self._db.executescript(script)
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make the changes inside one transaction: one commit instead of one per statement.

        Reentrant: inside another transaction it simply joins it.
        """
        with self._lock:
            if self._db.in_transaction:
                yield
                return
            self._db.execute("BEGIN")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                self._forget_views()
                raise
            self._db.execute("COMMIT")

    def _forget_views(self) -> None:
        self._writes = {table: count + 1 for table, count in self._writes.items()}
        self._in_state.clear()
        self._summaries.clear()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # --- pools and jobs (same shape) -----------------------------------------

    def insert(self, table: str, data: dict[str, Any]) -> None:
        """Insert a pool or job; ``table`` is ``pools`` or ``jobs``."""
        assert table in ("pools", "jobs")
        with self._lock:
            self._writes[table] += 1
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
            self._writes[table] += 1
            self._db.execute(f"UPDATE {table} SET data=? WHERE key=?", (_dump(data), data["id"].lower()))

    def delete(self, table: str, resource_id: str) -> None:
        assert table in ("pools", "jobs")
        with self._lock:
            self._writes[table] += 1
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

    def in_state(self, table: str, state: str) -> list[dict[str, Any]]:
        """Pools or jobs in ``state``, in creation order.

        Read-only: the scheduler asks before every decision and the answer changes only
        when a pool or job is written, so the same objects come back until then. Change
        a copy from :meth:`get`, never one of these.
        """
        assert table in ("pools", "jobs")
        with self._lock:
            writes = self._writes[table]
            kept = self._in_state.get((table, state))
            if kept is not None and kept[0] == writes:
                return list(kept[1])
            rows = self._db.execute(
                f"SELECT data FROM {table} WHERE json_extract(data, '$.state')=? ORDER BY seq", (state,)
            ).fetchall()
            found = [json.loads(row[0]) for row in rows]
            self._in_state[(table, state)] = (writes, found)
            return list(found)

    # --- nodes ---------------------------------------------------------------

    def put_node(self, pool_id: str, node: dict[str, Any]) -> None:
        """Insert or replace a node of ``pool_id``."""
        data = _dump(node)
        pool_key = pool_id.lower()
        with self._lock:
            changed = self._db.execute(
                "UPDATE nodes SET data=? WHERE pool_key=? AND id=?", (data, pool_key, node["id"])
            ).rowcount
            if not changed:
                self._db.execute(
                    "INSERT INTO nodes (pool_key, id, seq, data) VALUES (?, ?, ?, ?)",
                    (pool_key, node["id"], self._next_seq(), data),
                )
            summaries = self._summaries.get(pool_key)
            if summaries is not None:  # a new node goes last, as it does in creation order
                summaries[node["id"]] = {name: node.get(name) for name in _NODE_SUMMARY}

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

    def node_summaries(self, pool_id: str) -> list[dict[str, Any]]:
        """What scheduling reads of each node of ``pool_id``, in creation order: ``id``, ``state``,
        ``schedulingState``, ``affinityId``, ``url`` and ``isDedicated``.

        Read-only, and kept up to date by every node written through this store, so that
        the scheduler does not read and decode every node (recent tasks and all) before
        each decision.
        """
        pool_key = pool_id.lower()
        with self._lock:
            summaries = self._summaries.get(pool_key)
            if summaries is None:
                rows = self._db.execute("SELECT data FROM nodes WHERE pool_key=? ORDER BY seq", (pool_key,)).fetchall()
                nodes = [json.loads(row[0]) for row in rows]
                summaries = self._summaries[pool_key] = {
                    node["id"]: {name: node.get(name) for name in _NODE_SUMMARY} for node in nodes
                }
            return list(summaries.values())

    def node_summary(self, pool_id: str, node_id: str) -> dict[str, Any] | None:
        """One node's entry of :meth:`node_summaries`, or None when the pool has no such node."""
        with self._lock:
            if pool_id.lower() not in self._summaries:
                self.node_summaries(pool_id)
            return self._summaries[pool_id.lower()].get(node_id)

    def delete_node(self, pool_id: str, node_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM nodes WHERE pool_key=? AND id=?", (pool_id.lower(), node_id))
            self._summaries.get(pool_id.lower(), {}).pop(node_id, None)

    def delete_nodes(self, pool_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM nodes WHERE pool_key=?", (pool_id.lower(),))
            self._summaries.pop(pool_id.lower(), None)

    # --- tasks ---------------------------------------------------------------

    @staticmethod
    def _task_row(job_id: str, task: dict[str, Any]) -> tuple[Any, ...]:
        result = (task.get("executionInfo") or {}).get("result")
        return (
            task["state"],
            result,
            int(task.get("requiredSlots") or 1),
            task.get("stateTransitionTime"),
            _dump(task),
            job_id.lower(),
            task["id"].lower(),
        )

    def insert_tasks(self, job_id: str, tasks: list[dict[str, Any]]) -> None:
        """Insert many tasks in one transaction (the add-collection path)."""
        with self.transaction():
            self._db.executemany(
                "INSERT INTO tasks (state, result, slots, changed, data, job_key, key, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(*self._task_row(job_id, task), self._next_seq()) for task in tasks],
            )

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
                "UPDATE tasks SET state=?, result=?, slots=?, changed=?, data=? WHERE job_key=? AND key=?",
                self._task_row(job_id, task),
            )

    def delete_task(self, job_id: str, task_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM tasks WHERE job_key=? AND key=?", (job_id.lower(), task_id.lower()))

    def delete_tasks(self, job_id: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM tasks WHERE job_key=?", (job_id.lower(),))
            self._db.execute("DELETE FROM task_counts WHERE job_key=?", (job_id.lower(),))

    def task_page(
        self, job_id: str, after: int, limit: int, state: str | None = None, changed_since: str | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        """Tasks of a job in creation order after sequence number ``after``.

        ``state`` keeps only tasks in that state; ``changed_since`` (a time as
        the service writes them, which sort as text) only tasks whose state
        changed at or after it. Each narrows the rows read through an index;
        with ``changed_since`` the rows read are those changed since, however
        many tasks the job has.
        """
        where, values = ["job_key=?", "seq>?"], [job_id.lower(), after]
        if state is not None:
            where.append("state=?")
            values.append(state)
        if changed_since is not None:
            where.append("changed>=?")
            values.append(changed_since)
        index = "tasks_by_change" if changed_since is not None else "tasks_by_state" if state else "tasks_by_seq"
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, data FROM tasks INDEXED BY {index} WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
                (*values, limit),
            ).fetchall()
        return [(seq, json.loads(data)) for seq, data in rows]

    def iter_tasks(self, job_id: str, state: str | None = None, batch: int = 500) -> Iterator[dict[str, Any]]:
        """Every task of a job (optionally in one state), read in batches of ``batch``."""
        after = 0
        while True:
            page = self.task_page(job_id, after, batch, state)
            if not page:
                return
            for _, task in page:
                yield task
            after = page[-1][0]

    def task_counts(self, job_id: str) -> list[tuple[str, str | None, int, int]]:
        """Rows of (state, result, task count, slot sum) for a job, from the counts the triggers keep."""
        with self._lock:
            rows = self._db.execute(
                "SELECT state, result, n, slots FROM task_counts WHERE job_key=? AND n>0", (job_id.lower(),)
            ).fetchall()
        return [(state, result or None, n, slots) for state, result, n, slots in rows]

    def jobs_with_tasks_in(self, state: str) -> list[str]:
        """Job keys that have at least one task in ``state``."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT job_key FROM tasks WHERE state=?", (state,)).fetchall()
        return [row[0] for row in rows]

    # --- processes ------------------------------------------------------------

    def forget_processes(self) -> None:
        """Empty the table in which services before this version recorded each task process."""
        with self._lock:
            self._db.execute("DELETE FROM processes")
