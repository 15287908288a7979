"""Adding tasks: every task ends up in the job once, whatever the service answers for each.

A scripted service stands in for Batch here, because the local service never
answers ``servererror`` for one task or refuses a request as too large; a
kill during step 5 against the local service is covered by tests/e2e.
"""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ODataV4Format

from batchflow.cloud.batch import BatchService
from batchflow.errors import RunFailed


class ScriptedBatch:
    """``create_task_collection`` as Azure answers it: one result per task, in any order."""

    def __init__(self, existing: set[str] = frozenset(), flaky: set[str] = frozenset(), max_body: int = 100) -> None:
        self.job: list[str] = list(existing)
        self.flaky = set(flaky)  # answered servererror the first time they are sent
        self.max_body = max_body  # more tasks than this in one request is RequestBodyTooLarge
        self.requests: list[int] = []
        self.lock = threading.Lock()

    def create_task_collection(self, job_id: str, collection: dict[str, Any], *, stream: bool) -> Any:
        assert stream, "the answer is read as bytes, not as a model per task"
        tasks = collection["value"]
        with self.lock:
            self.requests.append(len(tasks))
            if len(tasks) > self.max_body:
                error = HttpResponseError("the request body is too large")
                error.error = ODataV4Format({"code": "RequestBodyTooLarge", "message": "too large"})
                raise error
            results = []
            for task in reversed(tasks):
                if task["id"] in self.flaky:
                    self.flaky.discard(task["id"])
                    results.append({"status": "servererror", "taskId": task["id"]})
                elif task["id"] in self.job:
                    error = {"code": "TaskExists", "message": {"value": "The specified task already exists."}}
                    results.append({"status": "clienterror", "taskId": task["id"], "error": error})
                elif task["id"].startswith("bad"):
                    error = {"code": "InvalidPropertyValue", "message": {"value": "commandLine is empty\nsecond"}}
                    results.append({"status": "clienterror", "taskId": task["id"], "error": error})
                else:
                    self.job.append(task["id"])
                    results.append({"status": "success", "taskId": task["id"]})
        return iter([json.dumps({"value": results}).encode()])


def service_for(batch: ScriptedBatch) -> BatchService:
    return BatchService(SimpleNamespace(batch_client=lambda: batch, kind="azure"))  # type: ignore[arg-type]


def bodies(ids: list[str]) -> list[dict[str, Any]]:
    return [{"id": task_id, "commandLine": "/bin/bash -c true"} for task_id in ids]


def test_every_task_ends_up_in_the_job_once() -> None:
    ids = [f"t{i}" for i in range(250)]
    # t3 was added by a run that was killed; t5 and t200 meet a passing server error.
    batch = ScriptedBatch(existing={"t3"}, flaky={"t5", "t200"})
    service_for(batch).add_tasks("job", bodies(ids))
    assert sorted(batch.job) == sorted(ids)
    assert max(batch.requests) <= 100


def test_a_request_too_large_for_the_service_is_split() -> None:
    ids = [f"t{i}" for i in range(100)]
    batch = ScriptedBatch(max_body=30)
    service_for(batch).add_tasks("job", bodies(ids))
    assert sorted(batch.job) == sorted(ids)


def test_a_refused_task_fails_the_step_and_is_named() -> None:
    batch = ScriptedBatch()
    with pytest.raises(
        RunFailed, match=r"^adding task bad7 to job job failed: InvalidPropertyValue: commandLine is empty$"
    ):
        service_for(batch).add_tasks("job", bodies(["t1", "bad7", "t2"]))
    assert sorted(batch.job) == ["t1", "t2"]
