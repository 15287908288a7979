"""The local service answers the monitor's questions from indexes, and exactly as a full scan would.

The monitor asks for the tasks whose state changed since its last poll
(``stateTransitionTime ge datetime'…'``) and for the task counts, every
poll. With 100,000 tasks queued neither may read every task, and neither
may lose one.
"""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from azure.batch import models

from batchflow.local.emulator.store import SCHEMA_VERSION, Store
from tests.local.support import pool_and_job, wait_tasks_completed


def _odata(moment: datetime, digits: int = 6, offset_hours: int = 0) -> str:
    """A datetime literal the way different clients write one: fewer digits, an offset."""
    local = moment.astimezone(timezone(timedelta(hours=offset_hours)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{local.microsecond:06d}"[:digits]
    return text + ("Z" if offset_hours == 0 else local.strftime("%z")[:3] + ":" + local.strftime("%z")[3:])


def test_changed_since_listing_matches_a_full_scan(local_services) -> None:
    client = local_services.batch_client()
    with pool_and_job(client, nodes=1, pool_options={"task_slots_per_node": 2}) as (_pool_id, job_id):
        client.create_tasks(
            job_id, [models.BatchTaskCreateOptions(id=f"t{i}", command_line="sleep 0.05") for i in range(24)]
        )
        client.create_tasks(
            job_id, [models.BatchTaskCreateOptions(id=f"late{i}", command_line="true") for i in range(3)]
        )
        tasks = wait_tasks_completed(client, job_id)
        times = sorted({t.state_transition_time for t in tasks})
        assert len(times) > 5, "the tasks should have completed at different times"
        for moment in (times[0], times[len(times) // 2], times[-1], times[-1] + timedelta(seconds=1)):
            for literal in (_odata(moment), _odata(moment, digits=3), _odata(moment, offset_hours=2)):
                for operator in ("ge", "gt"):
                    bound = literal_time(literal)
                    wanted = {
                        t.id
                        for t in tasks
                        if t.state_transition_time > bound or (operator == "ge" and t.state_transition_time == bound)
                    }
                    for query in (
                        f"stateTransitionTime {operator} datetime'{literal}'",
                        f"state eq 'completed' and stateTransitionTime {operator} datetime'{literal}'",
                        f"(stateTransitionTime {operator} datetime'{literal}') and startswith(id,'t')",
                    ):
                        listed = [t.id for t in client.list_tasks(job_id, filter=query, max_results=5)]
                        expected = {i for i in wanted if "startswith" not in query or i.startswith("t")}
                        assert len(listed) == len(set(listed)), query
                        assert set(listed) == expected, query
        # An "or" cannot be answered from the index: it is still answered exactly.
        moment = times[len(times) // 2]
        query = f"stateTransitionTime ge datetime'{_odata(moment)}' or id eq 't0'"
        expected = {t.id for t in tasks if t.state_transition_time >= moment or t.id == "t0"}
        assert {t.id for t in client.list_tasks(job_id, filter=query)} == expected
        assert {t.id for t in client.list_tasks(job_id, filter="state eq 'active'")} == set()


def literal_time(literal: str) -> datetime:
    return datetime.fromisoformat(literal.replace("Z", "+00:00"))


def _job_with_tasks(store: Store, job_id: str, count: int) -> list[dict]:
    start = datetime(2026, 11, 25, 10, 0, 0, tzinfo=timezone.utc)
    tasks = [
        {
            "id": f"task{i}",
            "state": "active",
            "stateTransitionTime": (start + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z",
        }
        for i in range(count)
    ]
    store.insert_tasks(job_id, tasks)
    return tasks


def test_changed_since_reads_only_the_changed_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite")
    tasks = _job_with_tasks(store, "job", 20_000)
    for task in random.Random(3).sample(tasks, 7):
        task.update(state="completed", stateTransitionTime="2026-11-25T11:00:00.0000000Z")
        task["executionInfo"] = {"result": "success"}
        store.update_task("job", task)
    page = store.task_page("job", 0, 1000, "completed", "2026-11-25T10:59:59.0000000Z")
    assert len(page) == 7
    # What SQLite does for it: a search of the transition-time index, not a scan of the job's tasks.
    database = sqlite3.connect(tmp_path / "state.sqlite")
    plan = database.execute(
        "EXPLAIN QUERY PLAN SELECT seq, data FROM tasks INDEXED BY tasks_by_change"
        " WHERE job_key=? AND seq>? AND state=? AND changed>=? ORDER BY seq LIMIT ?",
        ("job", 0, "completed", "2026-11-25T10:59:59.0000000Z", 1000),
    ).fetchall()
    details = " ".join(row[-1] for row in plan)
    assert "SEARCH tasks USING INDEX tasks_by_change (job_key=? AND changed>?)" in details, details
    assert "SCAN tasks" not in details, details


def _counted_by_scan(path: Path, job_key: str) -> list[tuple]:
    database = sqlite3.connect(path)
    rows = database.execute(
        "SELECT state, result, COUNT(*), SUM(slots) FROM tasks WHERE job_key=? GROUP BY state, result", (job_key,)
    ).fetchall()
    return sorted(rows, key=repr)


def test_counts_stay_equal_to_a_count_of_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = Store(path)
    tasks = _job_with_tasks(store, "Job", 300)
    _job_with_tasks(store, "other", 5)
    pick = random.Random(11)
    for step in range(600):
        task = pick.choice(tasks)
        action = pick.random()
        if action < 0.05 and store.get_task("Job", task["id"]):
            store.delete_task("Job", task["id"])
            tasks.remove(task)
            continue
        state = pick.choice(["active", "running", "completed"])
        task["state"] = state
        task["requiredSlots"] = pick.choice([1, 2])
        task["executionInfo"] = {"result": pick.choice(["success", "failure"])} if state == "completed" else {}
        store.update_task("Job", task)
        if step % 100 == 0:
            assert sorted(store.task_counts("job"), key=repr) == _counted_by_scan(path, "job")
    assert sorted(store.task_counts("job"), key=repr) == _counted_by_scan(path, "job")
    store.close()
    reopened = Store(path)
    assert sorted(reopened.task_counts("job"), key=repr) == _counted_by_scan(path, "job")
    assert sum(n for _, _, n, _ in reopened.task_counts("other")) == 5
    reopened.delete_tasks("job")
    assert reopened.task_counts("job") == []
    assert sum(n for _, _, n, _ in reopened.task_counts("other")) == 5


SCHEMA_1 = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE pools (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE nodes (pool_key TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (pool_key, id));
CREATE TABLE jobs (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE tasks (job_key TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL,
    result TEXT, slots INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job_key, key));
CREATE INDEX tasks_by_seq ON tasks (job_key, seq);
CREATE INDEX tasks_by_state ON tasks (job_key, state, seq);
CREATE TABLE processes (pid INTEGER PRIMARY KEY, started TEXT NOT NULL, label TEXT NOT NULL);
INSERT INTO meta VALUES ('schema', '1');
"""


def test_a_state_file_of_the_previous_version_is_upgraded_in_place(tmp_path: Path) -> None:
    """A user's ~/.batchflow/batch/state.sqlite written by the previous release keeps its jobs and tasks."""
    path = tmp_path / "state.sqlite"
    database = sqlite3.connect(path)
    database.executescript(SCHEMA_1)
    for seq, (state, result, when) in enumerate(
        [
            ("completed", "success", "2026-11-25T10:00:01.0000000Z"),
            ("completed", "failure", "2026-11-25T10:00:02.0000000Z"),
            ("active", None, "2026-11-25T10:00:03.0000000Z"),
        ],
        start=1,
    ):
        data = {"id": f"T{seq}", "state": state, "stateTransitionTime": when}
        if result:
            data["executionInfo"] = {"result": result}
        database.execute(
            "INSERT INTO tasks VALUES ('job', ?, ?, ?, ?, 1, ?)", (f"t{seq}", seq, state, result, json.dumps(data))
        )
    database.commit()
    database.close()

    store = Store(path)
    assert sorted(store.task_counts("job"), key=repr) == sorted(
        [("completed", "success", 1, 1), ("completed", "failure", 1, 1), ("active", None, 1, 1)], key=repr
    )
    changed = store.task_page("job", 0, 10, None, "2026-11-25T10:00:02.0000000Z")
    assert [task["id"] for _, task in changed] == ["T2", "T3"]
    store.insert_tasks("job", [{"id": "T4", "state": "active", "stateTransitionTime": "2026-11-25T10:00:04.0000000Z"}])
    assert [seq for seq, _ in store.task_page("job", 0, 10)] == [1, 2, 3, 4]
    store.close()
    version = sqlite3.connect(path).execute("SELECT value FROM meta WHERE name='schema'").fetchone()[0]
    assert int(version) == SCHEMA_VERSION == 2
