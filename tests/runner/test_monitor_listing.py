"""The monitor's incremental listing, against listings the local service cannot produce.

Azure's task listings can lag behind its task counts: a task that completed
before the newest one already listed may show up only later, with the older
time. The local service answers consistently, so these tests hand the listing
a scripted service instead; everything else about the listing is covered end
to end in tests/e2e/test_monitor.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from batchflow.cloud.batch import CompletedTask
from batchflow.state import TaskRecord
from batchflow.steps.monitor import LOOKBACK, _CompletedListing, record_of

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)


def task(task_id: str, seconds: float, exit_code: int = 0) -> CompletedTask:
    moment = T0 + timedelta(seconds=seconds)
    result = "success" if exit_code == 0 else "failure"
    return CompletedTask.from_json(
        {
            "id": task_id,
            "state": "completed",
            "stateTransitionTime": moment.isoformat(),
            "executionInfo": {"retryCount": 0, "requeueCount": 0, "exitCode": exit_code, "result": result},
        }
    )


class ScriptedService:
    """Completed tasks as the service would list them; ``hidden`` ones are not visible yet."""

    def __init__(self) -> None:
        self.tasks: list[CompletedTask] = []
        self.hidden: set[str] = set()
        self.queries: list[datetime | None] = []

    def completed_tasks(self, job_id: str, since: datetime | None = None):  # noqa: ANN201
        self.queries.append(since)
        return [t for t in self.tasks if t.id not in self.hidden and (since is None or t.changed_at >= since)]


class Store:
    def __init__(self) -> None:
        self.recorded: dict[str, object] = {}

    def record_tasks(self, records) -> None:  # noqa: ANN001
        for record in records:
            self.recorded[record.task_id] = record


def listing_of(
    service: ScriptedService,
    ids: list[str],
    recorded: list[TaskRecord] = (),  # type: ignore[assignment]
    job_created: datetime | None = None,
) -> tuple[_CompletedListing, Store]:
    """A listing of job ``job`` holding ``ids``; ``recorded`` is what the run's state holds (a resume)."""
    store = Store()
    ctx = SimpleNamespace(
        batch=service,
        store=store,
        state=SimpleNamespace(tasks={r.task_id: r for r in recorded}),
        workflow=SimpleNamespace(job=SimpleNamespace(id="job")),
    )
    return _CompletedListing(ctx, {i.lower() for i in ids}, job_created), store  # type: ignore[arg-type]


def test_each_poll_fetches_only_what_changed_since_the_last() -> None:
    service = ScriptedService()
    listing, store = listing_of(service, ["a", "b", "c"])
    service.tasks = [task("a", 1)]
    listing.catch_up(1)
    service.tasks += [task("b", 2), task("c", 3)]
    listing.catch_up(3)
    assert service.queries == [None, T0 + timedelta(seconds=1)]
    assert set(store.recorded) == {"a", "b", "c"}
    # a's timestamp is the watermark, so it comes back once with the second listing, and no more
    assert listing.records == 4


def test_tasks_sharing_the_latest_timestamp_are_not_missed() -> None:
    service = ScriptedService()
    listing, store = listing_of(service, ["a", "b"])
    service.tasks = [task("a", 1)]
    listing.catch_up(1)
    service.tasks.append(task("b", 1))  # the same millisecond as a, listed after it
    listing.catch_up(2)
    assert set(store.recorded) == {"a", "b"}
    assert len(service.queries) == 2


def test_a_task_that_shows_up_late_with_an_older_time_is_found_by_looking_back() -> None:
    service = ScriptedService()
    listing, store = listing_of(service, ["a", "b", "late"])
    service.tasks = [task("a", 1), task("late", 2), task("b", 3)]
    service.hidden = {"late"}  # completed at 2, but the listing does not show it yet
    listing.catch_up(2)
    assert set(store.recorded) == {"a", "b"}
    service.hidden = set()
    listing.catch_up(3)  # the counts say three: the listing from b's time misses late, so it looks back
    assert set(store.recorded) == {"a", "b", "late"}
    assert service.queries[-1] == T0 + timedelta(seconds=3) - LOOKBACK


def test_when_looking_back_is_not_enough_everything_is_listed() -> None:
    service = ScriptedService()
    listing, store = listing_of(service, ["old", "new"])
    service.tasks = [task("old", 0), task("new", 1000)]
    service.hidden = {"old"}
    listing.catch_up(1)
    service.hidden = set()
    listing.catch_up(2)
    assert set(store.recorded) == {"old", "new"}
    assert service.queries[-1] is None


def test_a_resumed_listing_goes_on_from_the_newest_time_the_state_recorded() -> None:
    service = ScriptedService()
    service.tasks = [task("a", 1), task("b", 2), task("c", 3)]
    # What the killed monitor recorded: a and b, with their times.
    recorded = [record_of(task("a", 1)), record_of(task("b", 2))]
    listing, store = listing_of(service, ["a", "b", "c"], recorded, job_created=T0)
    listing.catch_up(3)
    assert service.queries == [T0 + timedelta(seconds=2)], "not a listing of every completed task"
    assert "c" in store.recorded
    assert listing.records == 2  # c, and b once more for sharing the newest time


def test_a_task_rerun_in_a_job_made_anew_is_not_taken_for_its_old_record() -> None:
    service = ScriptedService()
    # x failed in an earlier job of the same id; that job was deleted and x added to this one again.
    old_failure = record_of(task("x", -10, exit_code=1))
    service.tasks = [task("x", 5), task("y", 6)]
    service.hidden = {"x"}  # completed at 5, but the listing lags
    listing, store = listing_of(service, ["x", "y", "z"], [old_failure], job_created=T0)
    listing.catch_up(2)
    service.hidden = set()
    service.tasks.append(task("z", 7))
    listing.catch_up(3)
    assert store.recorded["x"].result == "success"


@pytest.mark.parametrize(
    ("sent", "recorded"),
    [
        ("2026-11-25T04:06:35.5900660Z", "2026-11-25T04:06:35.590Z"),  # Azure: seven digits
        ("2026-11-25T04:06:35.59Z", "2026-11-25T04:06:35.590Z"),
        ("2026-11-25T04:06:35Z", "2026-11-25T04:06:35.000Z"),
        ("2026-11-25T05:06:35.590066+01:00", "2026-11-25T04:06:35.590Z"),
    ],
)
def test_task_times_are_recorded_in_utc_to_the_millisecond(sent: str, recorded: str) -> None:
    listed = {"id": "a", "state": "completed", "stateTransitionTime": sent, "executionInfo": {"startTime": sent}}
    record = record_of(CompletedTask.from_json(listed))
    assert record.start_time == recorded
    assert record.transition_time == sent, "kept as the service wrote it, for the next listing's filter"
