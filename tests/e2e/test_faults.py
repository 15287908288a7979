"""`apply` rides out a faulty service: transient 500/503/429 answers, preempted nodes, slow node start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batchflow.local import services
from tests.conftest import azurite_for_tests
from tests.e2e.harness import Batchflow, check_topwords_outputs, topwords_variant


@pytest.fixture(scope="module")
def faulty_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, services.LocalEndpoints]]:
    home = tmp_path_factory.mktemp("faulty-home")
    with pytest.MonkeyPatch.context() as patch:
        # read by the Batch service when it starts (it inherits this environment)
        patch.setenv("BATCHFLOW_FAULT_SEED", "7")
        patch.setenv("BATCHFLOW_FAULT_HTTP_RATE", "0.2")
        patch.setenv("BATCHFLOW_FAULT_PREEMPT_RATE", "0.5")
        patch.setenv("BATCHFLOW_FAULT_PREEMPT_AFTER", "0.3")
        patch.setenv("BATCHFLOW_FAULT_PREEMPT_DOWNTIME", "0.5")
        patch.setenv("BATCHFLOW_FAULT_NODE_START_DELAY", "1")
        endpoints = services.ensure_running(
            home, batch_port=0, blob_port=0, azurite_executable=azurite_for_tests(), max_nodes=2
        )
    try:
        yield home, endpoints
    finally:
        services.stop(home)


def test_apply_survives_transient_errors_and_preemption(faulty_home, tmp_path: Path) -> None:  # noqa: ANN001
    home, endpoints = faulty_home
    batch_port = int(endpoints.batch_endpoint.rsplit(":", 1)[1])
    blob_port = int(endpoints.blob_endpoint.split(":")[2].split("/")[0])
    batchflow = Batchflow(tmp_path, home, batch_port, blob_port)
    marker = tmp_path / "executions.log"
    workflow, pool, job = topwords_variant(
        tmp_path, cleanup="  containers: delete\n  job: delete\n  pool: delete\n", marker=marker, sleep=1, extra_files=3
    )
    # low-priority nodes, so that preemption applies
    workflow.write_text(workflow.read_text().replace("    dedicated: 1", "    dedicated: 0\n    low_priority: 2"))
    run = batchflow.run("apply", str(workflow), timeout=300)
    assert run.returncode == 0, run.stderr
    inputs = sorted((tmp_path / "topwords" / "data").glob("*.txt"))
    check_topwords_outputs(inputs, tmp_path / "output" / "topwords", 3, job, pool)
    executions = marker.read_text().split()
    assert set(executions) == {f"topNtask{i}" for i in range(len(inputs))}
    # preempted tasks run again (that is what preemption means); the seed makes it happen here
    assert len(executions) > len(inputs), "no preemption happened; the fault settings did not take effect"


def test_incremental_listing_misses_nothing_through_errors_and_preemption(faulty_home, tmp_path: Path) -> None:  # noqa: ANN001
    from tests.e2e.test_monitor import check_every_task_recorded_once, sweep

    home, endpoints = faulty_home
    batch_port = int(endpoints.batch_endpoint.rsplit(":", 1)[1])
    blob_port = int(endpoints.blob_endpoint.split(":")[2].split("/")[0])
    batchflow = Batchflow(tmp_path, home, batch_port, blob_port)
    # low-priority nodes, so that preemption applies and tasks go back to the queue mid-run
    workflow, marker = sweep(tmp_path, 40, nodes="dedicated: 0, low_priority: 2")
    run = batchflow.run("apply", str(workflow), timeout=300)
    assert run.returncode == 0, run.stderr
    check_every_task_recorded_once(tmp_path, marker, 40)
