"""Benchmark the local Batch service: bulk task adds, per-task scheduling overhead, idle CPU.

Prints figures; it asserts nothing (timings are not tests). Targets from
issue 3: ``create_tasks`` of 10,000 tasks in at most 5 s; scheduling
overhead per no-op task at most 15 ms beyond the process start; an idle
service uses no measurable CPU. Run with ``python3 benchmarks/local_batch.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from azure.batch import BatchClient, models
from azure.core.credentials import AzureNamedKeyCredential

from batchflow.local import account

IMAGE = models.VirtualMachineConfiguration(
    image_reference=models.BatchVmImageReference(
        publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts"
    ),
    node_agent_sku_id="batch.node.ubuntu 22.04",
)


def start_service(home: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "batchflow.local.emulator", "--home", str(home), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    match = re.search(r"http://127\.0\.0\.1:\d+", process.stdout.readline())
    assert match, "the service did not report its endpoint"
    return process, match.group(0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its threads, from /proc."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_all_completed(client: BatchClient, job_id: str, count: int) -> None:
    while client.get_job_task_counts(job_id).task_counts.completed < count:
        time.sleep(0.02)


def bench_create_tasks(client: BatchClient) -> None:
    client.create_pool(
        models.BatchPoolCreateOptions(
            id="bulk", vm_size="local", virtual_machine_configuration=IMAGE, target_dedicated_nodes=0
        )
    )
    client.create_job(models.BatchJobCreateOptions(id="bulk", pool_info=models.BatchPoolInfo(pool_id="bulk")))
    tasks = [models.BatchTaskCreateOptions(id=f"task{i:05d}", command_line="true") for i in range(10_000)]
    started = time.perf_counter()
    client.create_tasks("bulk", tasks)
    elapsed = time.perf_counter() - started
    print(f"create_tasks of 10,000 tasks: {elapsed:.2f} s (target <= 5 s)")
    started = time.perf_counter()
    listed = sum(1 for _ in client.list_tasks("bulk", select=["id", "state"]))
    print(f"listing {listed} tasks (10 pages, $select id,state): {time.perf_counter() - started:.2f} s")


def process_start_cost(runs: int = 200) -> float:
    """Seconds to start and reap one `true` from Python: the floor any runner pays."""
    started = time.perf_counter()
    for _ in range(runs):
        subprocess.run(["true"], check=True)
    return (time.perf_counter() - started) / runs


def bench_scheduling(client: BatchClient, count: int = 300) -> None:
    client.create_pool(
        models.BatchPoolCreateOptions(
            id="noop", vm_size="local", virtual_machine_configuration=IMAGE, target_dedicated_nodes=1
        )
    )
    while client.get_pool("noop").allocation_state != models.AllocationState.STEADY:
        time.sleep(0.02)
    client.create_job(models.BatchJobCreateOptions(id="noop", pool_info=models.BatchPoolInfo(pool_id="noop")))
    client.create_tasks("noop", [models.BatchTaskCreateOptions(id=f"n{i}", command_line="true") for i in range(count)])
    started = time.perf_counter()
    wait_all_completed(client, "noop", count)
    elapsed = time.perf_counter() - started
    per_task = elapsed / count
    floor = process_start_cost()
    # One node with one slot runs the tasks strictly one after another, so the
    # time per task is process start + the service's own per-task work.
    print(f"{count} no-op tasks on one single-slot node: {elapsed:.2f} s, {per_task * 1000:.1f} ms per task")
    print(
        f"process start alone: {floor * 1000:.1f} ms; scheduling overhead: {(per_task - floor) * 1000:.1f} ms per task (target <= 15 ms)"
    )


def bench_idle(pid: int, seconds: float = 10.0) -> None:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    used = cpu_seconds(pid) - before
    print(
        f"idle service CPU over {seconds:.0f} s: {used:.2f} s ({100 * used / seconds:.2f} %) (target: not measurable)"
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="batchflow-bench-") as folder:
        process, endpoint = start_service(Path(folder))
        try:
            client = BatchClient(
                endpoint, AzureNamedKeyCredential(account.BATCH_ACCOUNT_NAME, account.BATCH_ACCOUNT_KEY)
            )
            print(f"local Batch service at {endpoint}, {os.cpu_count()} CPUs")
            bench_create_tasks(client)
            bench_scheduling(client)
            time.sleep(1)
            bench_idle(process.pid)
        finally:
            process.terminate()
            process.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
