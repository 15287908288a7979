"""Fault simulation: transient HTTP errors, preempted low-priority nodes, slow node start."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError

from batchflow.local import account
from tests.conftest import _HOMES, unique
from tests.local.support import create_job, create_pool, wait_for


@pytest.fixture(scope="module")
def faulty_endpoint(tmp_path_factory):
    """A second local Batch service with every fault switched on, deterministically seeded."""
    home = tmp_path_factory.mktemp("faulty-home")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchflow.local.emulator",
            "--home",
            str(home),
            "--port",
            "0",
            "--fault-seed",
            "7",
            "--fault-http-rate",
            "0.3",
            "--fault-preempt-rate",
            "1.0",
            "--fault-node-start-delay",
            "0.6",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={
            **__import__("os").environ,
            "BATCHFLOW_FAULT_PREEMPT_AFTER": "0.3",
            "BATCHFLOW_FAULT_PREEMPT_DOWNTIME": "0.3",
        },
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    endpoint = re.search(r"http://127\.0\.0\.1:\d+", line)
    assert endpoint, line
    _HOMES.append(home)
    yield endpoint.group(0)
    process.terminate()
    process.wait(10)


def _client(endpoint: str, retries: int) -> BatchClient:
    credential = AzureNamedKeyCredential(account.BATCH_ACCOUNT_NAME, account.BATCH_ACCOUNT_KEY)
    # retry_status too: azure-core retries a bad status only 3 times by default, whatever retry_total says.
    return BatchClient(
        endpoint,
        credential,
        retry_total=retries,
        retry_status=retries,
        retry_backoff_factor=0.01,
        retry_backoff_max=0.05,
    )


def test_transient_errors_at_the_configured_rate(faulty_endpoint):
    bare = _client(faulty_endpoint, retries=0)
    statuses = []
    for _ in range(60):
        try:
            list(bare.list_pools())
            statuses.append(200)
        except HttpResponseError as error:
            statuses.append(error.status_code)
    failures = [s for s in statuses if s != 200]
    assert set(failures) <= {500, 503, 429}
    assert 5 <= len(failures) <= 35
    retrying = _client(faulty_endpoint, retries=10)
    for _ in range(20):
        list(retrying.list_pools())  # the SDK's own retries absorb every transient fault


def test_preempted_low_priority_node_requeues_its_task(faulty_endpoint):
    client = _client(faulty_endpoint, retries=10)
    pool_id, job_id = unique("pool"), unique("job")
    create_pool(client, pool_id, nodes=0, low_priority=1)
    started = time.monotonic()
    node = wait_for(lambda: next(iter(client.list_nodes(pool_id)), None), what="a node")
    assert node.state == models.BatchNodeState.STARTING and node.is_dedicated is False
    wait_for(lambda: next(iter(client.list_nodes(pool_id))).state == models.BatchNodeState.IDLE, what="idle node")
    assert time.monotonic() - started >= 0.5  # the slow start
    create_job(client, job_id, pool_id)
    try:
        client.create_task(job_id, models.BatchTaskCreateOptions(id="t", command_line="sleep 5"))
        task = wait_for(
            lambda: (t := client.get_task(job_id, "t")).execution_info.requeue_count >= 1 and t,
            timeout=10,
            what="a requeue",
        )
        assert task.execution_info.last_requeue_time is not None
    finally:
        client.begin_delete_job(job_id, polling_interval=0.05).result()
        client.begin_delete_pool(pool_id, polling_interval=0.05).result()
