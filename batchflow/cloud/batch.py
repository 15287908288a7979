"""Azure Batch for the steps: the workflow's dataclasses as SDK models, and the calls the steps make.

Everything goes through ``azure.batch.BatchClient`` (azure-batch 15.x). The
conversion functions take a :class:`SasIssuer` so that container references
become URLs with SAS tokens only here, at the moment a request is built:
the tokens go to the service and nowhere else.

The two calls made once per task, adding tasks and listing completed ones,
carry the REST API's JSON through the SDK's own operations and pipeline
instead of SDK models: building, serialising and reading back one model per
task cost more CPU than everything else an apply of many tasks did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import quote

from azure.batch import models
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    map_error,
)
from azure.core.rest import HttpRequest

from batchflow.cloud.errors import error_code, service_errors
from batchflow.cloud.targets import Target
from batchflow.durations import to_iso8601
from batchflow.errors import RunFailed
from batchflow.model import spec
from batchflow.state.redact import redact_secrets

#: Metadata batchflow puts on the pools and jobs it creates, to recognise them later.
RUN_METADATA = "batchflow-run"
WORKFLOW_METADATA = "batchflow-workflow"

#: How often the SDK's long-running operations (delete pool, delete job) poll.
LRO_POLL_SECONDS = 1
#: The same for the local service, which finishes a delete in milliseconds: a second per poll was most of step 9.
LOCAL_LRO_POLL_SECONDS = 0.05


class SasIssuer(Protocol):
    """Makes the SAS URLs that resource and output files need (``storage.BlobStore`` is one)."""

    def container_sas_url(self, container: str, access: Any, expiry: datetime) -> str: ...
    def blob_sas_url(self, container: str, blob: str, expiry: datetime) -> str: ...


#: The REST API's ``uploadCondition`` for each ``upload_on`` of the workflow.
UPLOAD_CONDITIONS = {"success": "tasksuccess", "failure": "taskfailure", "completion": "taskcompletion"}


def _present(**fields: Any) -> dict[str, Any]:
    """The fields that have a value: the REST API, like the SDK's models, leaves out what is None."""
    return {name: value for name, value in fields.items() if value is not None}


@dataclass(frozen=True)
class Urls:
    """A SAS issuer and the expiry every token of one request batch gets.

    Each URL is signed once per batch: thousands of tasks reading the same
    script or writing to the same container share one token instead of
    signing one each.
    """

    issuer: SasIssuer
    expiry: datetime
    _signed: dict[tuple[str, ...], str] = field(default_factory=dict, init=False, compare=False, repr=False)

    def container_url(self, container: str, access: Any) -> str:
        """The container's URL with a SAS for ``access`` (``read`` or ``write``)."""
        key = ("container", container, access)
        if key not in self._signed:
            self._signed[key] = self.issuer.container_sas_url(container, access, self.expiry)
        return self._signed[key]

    def blob_url(self, container: str, blob: str) -> str:
        """One blob's URL with a read SAS."""
        key = ("blob", container, blob)
        if key not in self._signed:
            self._signed[key] = self.issuer.blob_sas_url(container, blob, self.expiry)
        return self._signed[key]

    def resource_file(self, resource: spec.ResourceFile) -> dict[str, Any]:
        """The REST API's ``ResourceFile`` (JSON) for ``resource``."""
        mode = resource.mode
        if resource.url:
            return _present(httpUrl=resource.url, filePath=resource.path, fileMode=mode)
        assert resource.container
        if resource.blob is not None:
            url = self.blob_url(resource.container, resource.blob)
            return _present(httpUrl=url, filePath=resource.path or resource.blob, fileMode=mode)
        url = self.container_url(resource.container, "read")
        return _present(
            storageContainerUrl=url, blobPrefix=resource.prefix or None, filePath=resource.path, fileMode=mode
        )

    def output_file(self, output: spec.OutputFile) -> dict[str, Any]:
        """The REST API's ``OutputFile`` (JSON) for ``output``."""
        url = self.container_url(output.container, "write")
        return {
            "filePattern": output.pattern,
            "destination": {"container": _present(containerUrl=url, path=output.path)},
            "uploadOptions": {"uploadCondition": UPLOAD_CONDITIONS[output.upload_on]},
        }


def _environment(values: dict[str, str]) -> list[models.EnvironmentSetting] | None:
    return [models.EnvironmentSetting(name=k, value=v) for k, v in values.items()] or None


def _environment_json(values: dict[str, str]) -> list[dict[str, str]] | None:
    return [{"name": k, "value": v} for k, v in values.items()] or None


def start_task_of(pool: spec.Pool, urls: Urls) -> models.BatchStartTask | None:
    """The pool's start task with its resource files' SAS URLs, or None."""
    start_task = None
    if pool.start_task:
        st = pool.start_task
        elevation = models.ElevationLevel.ADMIN if st.elevation == "admin" else models.ElevationLevel.NON_ADMIN
        start_task = models.BatchStartTask(
            command_line=st.command_line,
            resource_files=[models.ResourceFile(urls.resource_file(r)) for r in st.resource_files] or None,
            environment_settings=_environment(st.environment),
            user_identity=models.UserIdentity(
                auto_user=models.AutoUserSpecification(scope=models.AutoUserScope.POOL, elevation_level=elevation)
            ),
            max_task_retry_count=st.retries,
            wait_for_success=st.wait_for_success,
        )
    return start_task


def pool_options(pool: spec.Pool, urls: Urls, metadata: dict[str, str]) -> models.BatchPoolCreateOptions:
    """The create-pool request for ``pool``."""
    start_task = start_task_of(pool, urls)
    image = pool.image
    return models.BatchPoolCreateOptions(
        id=pool.id,
        vm_size=pool.vm_size,
        virtual_machine_configuration=models.VirtualMachineConfiguration(
            image_reference=models.BatchVmImageReference(
                publisher=image.publisher, offer=image.offer, sku=image.sku, version=image.version
            ),
            node_agent_sku_id=image.node_agent_sku,
        ),
        resize_timeout=pool.resize_timeout,
        target_dedicated_nodes=pool.dedicated_nodes,
        target_low_priority_nodes=pool.low_priority_nodes,
        task_slots_per_node=pool.task_slots_per_node,
        start_task=start_task,
        metadata=[models.BatchMetadataItem(name=k, value=v) for k, v in metadata.items()],
    )


def job_options(job: spec.Job, pool_id: str, metadata: dict[str, str]) -> models.BatchJobCreateOptions:
    """The create-job request. ``onAllTasksComplete`` is applied after the tasks are added.

    Batch counts a job with no tasks as complete, so a job created with
    ``terminatejob`` could end before its first task arrives.
    """
    return models.BatchJobCreateOptions(
        id=job.id,
        pool_info=models.BatchPoolInfo(pool_id=pool_id),
        priority=job.priority,
        uses_task_dependencies=job.uses_task_dependencies or None,
        constraints=models.BatchJobConstraints(
            max_wall_clock_time=job.max_wall_clock, max_task_retry_count=job.max_task_retries
        ),
        task_failure_mode=job.on_task_failure,
        common_environment_settings=_environment(job.environment),
        metadata=[models.BatchMetadataItem(name=k, value=v) for k, v in metadata.items()],
    )


def task_body(task: spec.Task, urls: Urls) -> dict[str, Any]:
    """The add-task request for one task as the REST API's JSON (``BatchTaskCreateOptions``), with its SAS URLs."""
    environment = dict(task.environment)
    for variable in task.container_urls:
        environment[variable.variable] = urls.container_url(variable.container, variable.access)
    constraints = None
    if task.max_wall_clock or task.retention or task.retries is not None:
        constraints = _present(
            maxWallClockTime=to_iso8601(task.max_wall_clock) if task.max_wall_clock is not None else None,
            retentionTime=to_iso8601(task.retention) if task.retention is not None else None,
            maxTaskRetryCount=task.retries,
        )
    depends_on = None
    if task.depends_on_ids or task.depends_on_ranges:
        depends_on = _present(
            taskIds=list(task.depends_on_ids) or None,
            taskIdRanges=[{"start": a, "end": b} for a, b in task.depends_on_ranges] or None,
        )
    return _present(
        id=task.id,
        displayName=task.display_name,
        commandLine=task.command_line,
        resourceFiles=[urls.resource_file(r) for r in task.resource_files] or None,
        outputFiles=[urls.output_file(o) for o in task.output_files] or None,
        environmentSettings=_environment_json(environment),
        constraints=constraints,
        requiredSlots=task.required_slots if task.required_slots != 1 else None,
        dependsOn=depends_on,
    )


#: The fields the monitor reads of a completed task (REST names).
_COMPLETED_FIELDS = "id,state,stateTransitionTime,executionInfo,nodeInfo"
#: The exception an error status raises, as in the SDK's generated operations.
_ERROR_TYPES = {401: ClientAuthenticationError, 404: ResourceNotFoundError, 409: ResourceExistsError}


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class CompletedTask:
    """What a run records of a completed task, read from the service's JSON.

    Times are kept as the service wrote them (ISO 8601): the run records them as
    text, and parsing and printing three times per task would be most of the cost
    of reading a listing.
    """

    id: str
    state: str
    state_transition_time: str | None
    exit_code: int | None
    result: str | None
    failure_info: dict[str, Any] | None  # category, code, message
    retry_count: int
    requeue_count: int
    start_time: str | None
    end_time: str | None
    node_id: str | None

    @property
    def changed_at(self) -> datetime | None:
        """``state_transition_time`` as a time, to compare with the listing's watermark."""
        return _time(self.state_transition_time)

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> CompletedTask:
        info = item.get("executionInfo") or {}
        return cls(
            id=item["id"],
            state=item.get("state") or "completed",
            state_transition_time=item.get("stateTransitionTime"),
            exit_code=info.get("exitCode"),
            result=info.get("result"),
            failure_info=info.get("failureInfo"),
            retry_count=info.get("retryCount") or 0,
            requeue_count=info.get("requeueCount") or 0,
            start_time=info.get("startTime"),
            end_time=info.get("endTime"),
            node_id=(item.get("nodeInfo") or {}).get("nodeId"),
        )


def enum_value(value: Any) -> str | None:
    """The wire string of an SDK enum member (``"idle"``); ``str()`` would give ``"BatchNodeState.IDLE"``."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def metadata_of(resource: Any) -> dict[str, str]:
    return {item.name: item.value for item in (getattr(resource, "metadata", None) or [])}


class BatchService:
    """One Batch account, as the steps use it."""

    def __init__(self, target: Target) -> None:
        self.client = target.batch_client()
        self.is_local = target.kind == "local"
        self._lro_poll = LOCAL_LRO_POLL_SECONDS if self.is_local else LRO_POLL_SECONDS

    # ----------------------------------------------------------------- pools

    def get_pool(self, pool_id: str) -> models.BatchPool | None:
        with service_errors(f"looking up pool {pool_id}"):
            try:
                return self.client.get_pool(pool_id)
            except ResourceNotFoundError:
                return None

    def create_pool(self, options: models.BatchPoolCreateOptions) -> bool:
        """Create the pool; returns False if one with this id already exists."""
        with service_errors(f"creating pool {options.id}"):
            try:
                self.client.create_pool(options)
            except ResourceExistsError:
                return False
        return True

    def set_start_task(self, pool_id: str, start_task: models.BatchStartTask) -> None:
        """Replace the pool's start task; nodes that join from now on run the new one."""
        with service_errors(f"updating the start task of pool {pool_id}"):
            self.client.update_pool(pool_id, models.BatchPoolUpdateOptions(start_task=start_task))

    def list_nodes(self, pool_id: str) -> list[models.BatchNode]:
        with service_errors(f"listing the nodes of pool {pool_id}"):
            return list(self.client.list_nodes(pool_id))

    def delete_pool(self, pool_id: str) -> bool:
        """Delete the pool and wait until it is gone; returns False if it did not exist."""
        with service_errors(f"deleting pool {pool_id}"):
            try:
                self.client.begin_delete_pool(pool_id, polling_interval=self._lro_poll).result()
            except ResourceNotFoundError:
                return False
        return True

    # ------------------------------------------------------------------ jobs

    def get_job(self, job_id: str) -> models.BatchJob | None:
        with service_errors(f"looking up job {job_id}"):
            try:
                return self.client.get_job(job_id)
            except ResourceNotFoundError:
                return None

    def create_job(self, options: models.BatchJobCreateOptions) -> bool:
        """Create the job; returns False if one with this id already exists."""
        with service_errors(f"creating job {options.id}"):
            try:
                self.client.create_job(options)
            except ResourceExistsError:
                return False
        return True

    def jobs_using_pool(self, pool_id: str) -> list[tuple[str, str | None]]:
        """(job id, batchflow run or None) of every job on ``pool_id`` that has not completed."""
        with service_errors(f"listing the jobs on pool {pool_id}"):
            jobs = self.client.list_jobs(select=["id", "state", "poolInfo", "metadata"])
            return [
                (job.id, metadata_of(job).get(RUN_METADATA))
                for job in jobs
                if job.pool_info is not None
                and (job.pool_info.pool_id or "").lower() == pool_id.lower()
                and enum_value(job.state) not in ("completed", "deleting")
            ]

    def terminate_job_when_tasks_complete(self, job_id: str) -> None:
        with service_errors(f"updating job {job_id}"):
            self.client.update_job(
                job_id,
                models.BatchJobUpdateOptions(all_tasks_complete_mode=models.BatchAllTasksCompleteMode.TERMINATE_JOB),
            )

    def delete_job(self, job_id: str) -> bool:
        """Delete the job (its running tasks are stopped) and wait; returns False if it did not exist."""
        with service_errors(f"deleting job {job_id}"):
            try:
                self.client.begin_delete_job(job_id, polling_interval=self._lro_poll).result()
            except ResourceNotFoundError:
                return False
        return True

    # ----------------------------------------------------------------- tasks

    def task_ids(self, job_id: str, state: str | None = None) -> set[str]:
        """The ids of the job's tasks, or of those in ``state`` (one listing, ids only)."""
        with service_errors(f"listing the tasks of job {job_id}"):
            return {item["id"] for item in self._listed_tasks(job_id, f"state eq '{state}'" if state else None, "id")}

    def delete_task(self, job_id: str, task_id: str) -> None:
        with service_errors(f"deleting task {task_id}"):
            try:
                self.client.delete_task(job_id, task_id)
            except ResourceNotFoundError:
                pass

    def add_tasks(self, job_id: str, tasks: Sequence[dict[str, Any]]) -> None:
        """Add tasks (:func:`task_body` JSON): ``ADD_CHUNK`` per request, ``ADD_CONCURRENCY`` requests at a time.

        What the SDK's ``create_tasks`` does, without its models: a task that
        already exists counts as added (a resumed run sends again what a killed
        one may have added), a task the service could not add for a passing
        reason (``servererror``) is sent again, a request too large for the
        service is split, and any other refusal fails the step, naming the task.
        """
        pending = list(tasks)
        for _ in range(ADD_ATTEMPTS):
            chunks = [pending[start : start + ADD_CHUNK] for start in range(0, len(pending), ADD_CHUNK)]
            pool = ThreadPoolExecutor(ADD_CONCURRENCY)
            try:
                with service_errors(f"adding tasks to job {job_id}"):
                    outcomes = list(pool.map(lambda chunk: self._add_chunk(job_id, chunk), chunks))
            finally:
                # On a failure or Ctrl-C, the requests in flight finish and the others are not sent.
                pool.shutdown(wait=True, cancel_futures=True)
            refused = [failure for _, failures in outcomes for failure in failures]
            if refused:
                first = refused[0]
                error = first.get("error") or {}
                message = (error.get("message") or {}).get("value") or ""
                raise RunFailed(
                    redact_secrets(
                        f"adding task {first.get('taskId')} to job {job_id} failed: "
                        f"{error.get('code') or first.get('status')}: {message.splitlines()[0] if message else ''}"
                        + (f" ({len(refused) - 1} more failed)" if len(refused) > 1 else "")
                    )
                )
            pending = [task for again, _ in outcomes for task in again]
            if not pending:
                return
        raise RunFailed(
            f"adding tasks to job {job_id} failed: the service answered servererror for {len(pending)} task(s) "
            f"{ADD_ATTEMPTS} times; run the same command again to add them"
        )

    def _add_chunk(self, job_id: str, chunk: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Send one add-collection request; return the tasks to send again and the results that refuse a task.

        The SDK's own operation builds and sends the request; ``stream=True``
        makes it hand back the answer's bytes rather than a model per task.
        """
        try:
            answer = self.client.create_task_collection(job_id, {"value": chunk}, stream=True)
        except HttpResponseError as error:
            if error_code(error) != "RequestBodyTooLarge" or len(chunk) == 1:
                raise
            half = len(chunk) // 2
            first, second = self._add_chunk(job_id, chunk[:half]), self._add_chunk(job_id, chunk[half:])
            return first[0] + second[0], first[1] + second[1]
        results = json.loads(b"".join(answer)).get("value") or []
        statuses = {result.get("taskId"): result for result in results}
        again, refused = [], []
        for task in chunk:
            result = statuses.get(task["id"]) or {"status": "servererror"}
            status = str(result.get("status")).lower()
            if status == "servererror":
                again.append(task)
            elif status != "success" and (result.get("error") or {}).get("code") != "TaskExists":
                refused.append(result)
        return again, refused

    def task_counts(self, job_id: str) -> models.BatchTaskCounts:
        with service_errors(f"reading the task counts of job {job_id}"):
            return self.client.get_job_task_counts(job_id).task_counts

    def completed_tasks(self, job_id: str, since: datetime | None = None) -> Iterator[CompletedTask]:
        """The completed tasks, with what the run records of them; with ``since``, only those
        whose state changed at or after that time (the service's clock)."""
        query = "state eq 'completed'"
        if since is not None:
            query += f" and stateTransitionTime ge datetime'{odata_time(since)}'"
        with service_errors(f"listing the completed tasks of job {job_id}"):
            for item in self._listed_tasks(job_id, query, _COMPLETED_FIELDS):
                yield CompletedTask.from_json(item)

    def _listed_tasks(self, job_id: str, query: str | None, fields: str) -> Iterator[dict[str, Any]]:
        """The job's tasks that match the OData ``query`` (all with None), with ``fields`` only, as JSON.

        Read through the SDK client's own pipeline (``send_request``: the same
        authentication, retries and logging), not as SDK models: building a ``BatchTask``
        model per task cost more CPU than all the rest of watching a run. Streamed, so
        that the pipeline hands over the bytes instead of decoding the JSON a second time.
        """
        params = {"api-version": self.client._config.api_version, "$select": fields}
        if query:
            params["$filter"] = query
        request: HttpRequest | None = HttpRequest("GET", f"/jobs/{quote(job_id, safe='')}/tasks", params=params)
        while request is not None:
            response = self.client.send_request(request, stream=True)
            body = response.read()
            if response.status_code != 200:
                # The exceptions the SDK's own operations raise, so that errors read the same.
                map_error(response.status_code, response, _ERROR_TYPES)
                raise HttpResponseError(response=response)
            page = json.loads(body)
            yield from page.get("value") or []
            next_link = page.get("odata.nextLink")
            request = HttpRequest("GET", next_link) if next_link else None

    def task_file(self, job_id: str, task_id: str, path: str) -> bytes | None:
        with service_errors(f"reading {path} of task {task_id}"):
            try:
                return b"".join(self.client.download_task_file(job_id, task_id, path))
            except ResourceNotFoundError:
                return None

    def node_file(self, pool_id: str, node_id: str, path: str) -> bytes | None:
        with service_errors(f"reading {path} on node {node_id}"):
            try:
                return b"".join(self.client.download_node_file(pool_id, node_id, path))
            except ResourceNotFoundError:
                return None

    # A file download that is refused carries no error code (the SDK streams the
    # body and never reads it), so these ask the service what is really missing.

    def why_no_task_file(self, job_id: str, task_id: str, path: str) -> str:
        """Why ``task_file`` found nothing: the job is gone, the task does not exist, or the file is missing."""
        with service_errors(f"looking up task {task_id}"):
            try:
                task = self.client.get_task(job_id, task_id, select=["id", "state"])
            except ResourceNotFoundError as error:
                if error_code(error) == "JobNotFound":
                    return f"job {job_id} does not exist (deleted by cleanup or destroy); its tasks' files went with it"
                return f"job {job_id} has no task {task_id}; `batchflow status` lists the run's failed tasks"
        if task.state in ("active", "preparing"):
            return f"task {task_id} has not started yet, so it has no {path}"
        return f"task {task_id} has no {path} (its node may have been removed)"

    def why_no_node_file(self, pool_id: str, node_id: str, path: str) -> str:
        """Why ``node_file`` found nothing: the pool or the node is gone, or the file is missing."""
        with service_errors(f"looking up node {node_id}"):
            try:
                self.client.get_node(pool_id, node_id, select=["id"])
            except ResourceNotFoundError as error:
                if error_code(error) == "PoolNotFound":
                    return f"pool {pool_id} does not exist (deleted by cleanup or destroy)"
                return f"pool {pool_id} has no node {node_id}; `batchflow status` lists the pool's nodes"
        return f"node {node_id} has no {path} (it has no start task, or it has not run yet)"


#: Add-collection requests in flight at once: the service takes each in about the time the
#: client needs to build the next, so a few in parallel keep both busy.
ADD_CONCURRENCY = 4
#: Tasks per add-collection request: the most the Batch service takes in one.
ADD_CHUNK = 100
#: How often tasks the service answers ``servererror`` for are sent before the step fails.
ADD_ATTEMPTS = 5


def odata_time(moment: datetime) -> str:
    """``moment`` as an OData datetime literal's text: UTC, with microseconds, ``Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tail(data: bytes, lines: int) -> str:
    """The last ``lines`` lines of ``data``, decoded leniently."""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])
