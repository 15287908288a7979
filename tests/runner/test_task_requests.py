"""Step 5 sends each task as the REST API's JSON: the same request the SDK's models would have sent.

The reference below is how batchflow built a task with ``azure.batch.models``
before it wrote the JSON itself; the service must not be able to tell the two
apart. Durations are compared by value, since ISO 8601 spells one duration
several ways (``PT1H30S`` or ``PT01H00M30S``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from azure.batch import models

from batchflow.cloud.batch import Urls, task_body
from batchflow.durations import parse_duration
from batchflow.model.spec import ContainerUrl, OutputFile, ResourceFile, Task

EXPIRY = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


class Issuer:
    """Signs URLs as storage would, counting how many tokens it makes."""

    def __init__(self) -> None:
        self.signed = 0

    def container_sas_url(self, container: str, access: Any, expiry: datetime) -> str:
        self.signed += 1
        return f"https://acct.blob.core.windows.net/{container}?sp={access}&se={expiry:%Y%m%d}&sig={container}"

    def blob_sas_url(self, container: str, blob: str, expiry: datetime) -> str:
        self.signed += 1
        return f"https://acct.blob.core.windows.net/{container}/{blob}?sp=r&se={expiry:%Y%m%d}&sig={blob}"


def sdk_request(task: Task, issuer: Issuer) -> dict[str, Any]:
    """The add-task request as batchflow built it with the SDK's models."""
    conditions = {
        "success": models.OutputFileUploadCondition.TASK_SUCCESS,
        "failure": models.OutputFileUploadCondition.TASK_FAILURE,
        "completion": models.OutputFileUploadCondition.TASK_COMPLETION,
    }

    def resource(r: ResourceFile) -> models.ResourceFile:
        if r.url:
            return models.ResourceFile(http_url=r.url, file_path=r.path, file_mode=r.mode)
        if r.blob is not None:
            url = issuer.blob_sas_url(r.container, r.blob, EXPIRY)
            return models.ResourceFile(http_url=url, file_path=r.path or r.blob, file_mode=r.mode)
        url = issuer.container_sas_url(r.container, "read", EXPIRY)
        return models.ResourceFile(
            storage_container_url=url, blob_prefix=r.prefix or None, file_path=r.path, file_mode=r.mode
        )

    def output(o: OutputFile) -> models.OutputFile:
        return models.OutputFile(
            file_pattern=o.pattern,
            destination=models.OutputFileDestination(
                container=models.OutputFileBlobContainerDestination(
                    container_url=issuer.container_sas_url(o.container, "write", EXPIRY), path=o.path
                )
            ),
            upload_options=models.OutputFileUploadConfiguration(upload_condition=conditions[o.upload_on]),
        )

    environment = dict(task.environment)
    for variable in task.container_urls:
        environment[variable.variable] = issuer.container_sas_url(variable.container, variable.access, EXPIRY)
    constraints = None
    if task.max_wall_clock or task.retention or task.retries is not None:
        constraints = models.BatchTaskConstraints(
            max_wall_clock_time=task.max_wall_clock, retention_time=task.retention, max_task_retry_count=task.retries
        )
    depends_on = None
    if task.depends_on_ids or task.depends_on_ranges:
        depends_on = models.BatchTaskDependencies(
            task_ids=list(task.depends_on_ids) or None,
            task_id_ranges=[models.BatchTaskIdRange(start=a, end=b) for a, b in task.depends_on_ranges] or None,
        )
    options = models.BatchTaskCreateOptions(
        id=task.id,
        display_name=task.display_name,
        command_line=task.command_line,
        resource_files=[resource(r) for r in task.resource_files] or None,
        output_files=[output(o) for o in task.output_files] or None,
        environment_settings=[models.EnvironmentSetting(name=k, value=v) for k, v in environment.items()] or None,
        constraints=constraints,
        required_slots=task.required_slots if task.required_slots != 1 else None,
        depends_on=depends_on,
    )
    return options.as_dict()


def durations_as_values(body: dict[str, Any]) -> dict[str, Any]:
    if "constraints" not in body:
        return body
    constraints = dict(body["constraints"])
    for name in ("maxWallClockTime", "retentionTime"):
        constraints[name] = parse_duration(constraints[name])
    return {**body, "constraints": constraints}


def full_task(index: int) -> Task:
    return Task(
        id=f"task-{index}",
        command="python3 $AZ_BATCH_NODE_SHARED_DIR/count.py input.txt",
        display_name=f"count {index}",
        resource_files=(
            ResourceFile(container="application", blob="count.py"),
            ResourceFile(container="input", blob=f"data{index}.txt", path="input.txt", mode="0644"),
            ResourceFile(container="input", prefix="shared/", path="shared"),
            ResourceFile(url="https://example.org/words.txt", path="words.txt"),
        ),
        output_files=(
            OutputFile(pattern="*.out", container="output", path=f"run/{index}", upload_on="completion"),
            OutputFile(pattern="../std*.txt", container="output", upload_on="failure"),
        ),
        container_urls=(ContainerUrl("OUTPUT_URL", "output", "write"), ContainerUrl("INPUT_URL", "input", "read")),
        environment={"NUMWORDS": "3"},
        max_wall_clock=timedelta(hours=1, seconds=30),
        retention=timedelta(days=2),
        retries=0,
        required_slots=2,
        depends_on_ids=("setup",),
        depends_on_ranges=((1, 9),),
    )


def test_each_task_is_sent_as_the_sdk_would_have_sent_it() -> None:
    for task in (full_task(1), Task(id="plain", command="true")):
        body = task_body(task, Urls(Issuer(), EXPIRY))
        assert durations_as_values(body) == durations_as_values(sdk_request(task, Issuer()))


def test_tasks_of_one_round_share_each_signed_url() -> None:
    issuer = Issuer()
    urls = Urls(issuer, EXPIRY)
    bodies = [task_body(full_task(index), urls) for index in range(100)]
    # count.py for all, one input file each, the input container to read (prefix and INPUT_URL), the output one.
    assert issuer.signed == 1 + 100 + 1 + 1
    assert len({b["outputFiles"][0]["destination"]["container"]["containerUrl"] for b in bodies}) == 1
