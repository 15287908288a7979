"""The local Batch service answers only with fields and enum values the azure-batch SDK's models have.

Every JSON answer the test session receives is recorded and checked when the
session ends (tests/conftest.py); this test drives one of each kind of answer
and checks them at once, so a failure names the call.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from azure.batch import models
from azure.core.exceptions import ResourceNotFoundError

from batchflow.local.emulator import wire
from tests.conftest import LocalServices, unique
from tests.local.wire_models import check_recording


def test_every_kind_of_answer_has_only_sdk_fields(local_services: LocalServices) -> None:
    assert local_services.wire_record is not None
    client = local_services.batch_client()
    pool_id, job_id = unique("wire-pool"), unique("wire-job")
    image = models.VirtualMachineConfiguration(
        image_reference=models.BatchVmImageReference(publisher="canonical", offer="ubuntu-24_04-lts", sku="server"),
        node_agent_sku_id="batch.node.ubuntu 24.04",
    )
    client.create_pool(
        models.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="standard_d2s_v3",
            virtual_machine_configuration=image,
            target_dedicated_nodes=1,
            start_task=models.BatchStartTask(command_line="/bin/true", wait_for_success=True),
        )
    )
    client.create_job(models.BatchJobCreateOptions(id=job_id, pool_info=models.BatchPoolInfo(pool_id=pool_id)))
    client.create_tasks(
        job_id,
        [models.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/sh -c 'echo hi; exit 0'") for i in range(3)],
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        counts = client.get_job_task_counts(job_id).task_counts
        if counts.completed == 3:
            break
        time.sleep(0.1)
    list(client.list_pools())
    client.get_pool(pool_id)
    (node,) = list(client.list_nodes(pool_id))
    client.get_node(pool_id, node.id)
    list(client.list_node_files(pool_id, node.id, recursive=True))
    list(client.list_jobs())
    client.get_job(job_id)
    list(client.list_tasks(job_id, select=["id", "state", "stateTransitionTime", "executionInfo", "nodeInfo"]))
    client.get_task(job_id, "t0")
    list(client.list_task_files(job_id, "t0"))
    list(client.list_supported_images())
    try:
        client.get_job("no-such-job")
    except ResourceNotFoundError:
        pass
    client.begin_delete_job(job_id, polling_interval=0.1).result()
    client.begin_delete_pool(pool_id, polling_interval=0.1).result()

    problems = check_recording(local_services.wire_record)
    assert problems == []


def test_timestamps_are_the_current_time_in_the_services_format() -> None:
    """Times of the current moment are written from a per-second cache; they must read the same clock as
    ``datetime.now``, keep seven fractional digits and ``Z``, and read back as the moment they name."""
    for _ in range(3):
        before = wire.timestamp()
        moment = datetime.now(timezone.utc)
        after = wire.timestamp()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", before), before
        assert before <= wire.timestamp(moment) <= after
        assert wire.parse_timestamp(before) <= moment <= wire.parse_timestamp(after)
        assert wire.parse_timestamp(wire.timestamp(moment)) == moment
        time.sleep(0.6)  # into another second, past the cached one
