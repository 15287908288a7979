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

from batchflow.cloud.batch import CompletedTask
from batchflow.steps.monitor import LOOKBACK, _CompletedListing

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)


def task(task_id: str, seconds: float) -> CompletedTask:
    moment = T0 + timedelta(seconds=seconds)
    return CompletedTask.from_json(
        {
            "id": task_id,
            "state": "completed",
            "stateTransitionTime": moment.isoformat(),
            "executionInfo": {"retryCount": 0, "requeueCount": 0, "exitCode": 0, "result": "success"},
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
        return [
            t for t in self.tasks if t.id not in self.hidden and (since is None or t.state_transition_time >= since)
        ]


class Store:
    def __init__(self) -> None:
        self.recorded: dict[str, object] = {}

    def record_tasks(self, records) -> None:  # noqa: ANN001
        for record in records:
            self.recorded[record.task_id] = record


def listing_of(service: ScriptedService, ids: list[str]) -> tuple[_CompletedListing, Store]:
    store = Store()
    ctx = SimpleNamespace(batch=service, store=store, workflow=SimpleNamespace(job=SimpleNamespace(id="job")))
    return _CompletedListing(ctx, {i.lower() for i in ids}), store  # type: ignore[arg-type]


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
