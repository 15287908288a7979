#!/usr/bin/env python3
"""Benchmark the local Batch service at scale: adding, scheduling, listing, counting, idling.

Prints figures, each goal as a ratio measured in this run; asserts nothing
(timings are not tests). Issue 9's goals for the service:

- adding 100,000 tasks grows linearly from adding 10,000: the time per task added
  at most 3x (add-collection requests of 100, sent 4 at a time as batchflow does);
- scheduling overhead at most 2 ms per task beyond the process start, with
  100,000 tasks queued (one node with one slot runs them one after another, so
  the time per task is the process start plus the service's own work);
- the monitor's questions (the tasks changed since a time, the task counts)
  cost the same with 100,000 tasks in the job as with 1,000;
- an idle service uses no measurable CPU.

    python3 benchmarks/local_batch.py [--large 100000] [--dir PATH] [--output json]

``--dir`` chooses where the service keeps its state and node folders (the
default is the system's temporary folder). Creating a task's folder and files
costs what that file system makes it cost; the figure is printed first,
because on a disk that has just deleted many files it can exceed the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.batch import BatchClient, models  # noqa: E402
from azure.core.credentials import AzureNamedKeyCredential  # noqa: E402

from batchflow.cloud.batch import ADD_CONCURRENCY, odata_time  # noqa: E402
from batchflow.local import account  # noqa: E402

IMAGE = models.VirtualMachineConfiguration(
    image_reference=models.BatchVmImageReference(
        publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts"
    ),
    node_agent_sku_id="batch.node.ubuntu 22.04",
)
#: What batchflow runs for a command (README, "Commands are shell scripts").
COMMAND = "/bin/bash -c 'set -e -o pipefail; true'"


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


def folder_cost(parent: Path, count: int = 300) -> float:
    """Seconds to create what a task gets on a node (two folders, two files), on this file system."""
    base = Path(tempfile.mkdtemp(dir=parent))
    started = time.perf_counter()
    for index in range(count):
        task = base / f"t{index}"
        (task / "wd").mkdir(parents=True)
        (task / "stdout.txt").write_bytes(b"")
        (task / "stderr.txt").write_bytes(b"")
    return (time.perf_counter() - started) / count


def process_start_cost(runs: int = 200) -> float:
    """Seconds to start and reap the task command from Python: the floor any runner pays."""
    started = time.perf_counter()
    for _ in range(runs):
        subprocess.run(["/bin/bash", "-c", "set -e -o pipefail; true"], check=True)
    return (time.perf_counter() - started) / runs


def new_job(client: BatchClient, name: str, nodes: int) -> None:
    client.create_pool(
        models.BatchPoolCreateOptions(
            id=name, vm_size="local", virtual_machine_configuration=IMAGE, target_dedicated_nodes=nodes
        )
    )
    while client.get_pool(name).allocation_state != models.AllocationState.STEADY:
        time.sleep(0.02)
    client.create_job(models.BatchJobCreateOptions(id=name, pool_info=models.BatchPoolInfo(pool_id=name)))


def add(client: BatchClient, job: str, count: int, prefix: str = "t") -> float:
    tasks = [models.BatchTaskCreateOptions(id=f"{prefix}{i}", command_line=COMMAND) for i in range(count)]
    started = time.perf_counter()
    client.create_tasks(job, tasks, max_concurrency=ADD_CONCURRENCY)
    return time.perf_counter() - started


def scheduling(client: BatchClient, job: str, runs: int) -> float:
    """Seconds per task while the job's single-slot node runs ``runs`` of its queued tasks."""
    first = client.get_job_task_counts(job).task_counts.completed
    started = time.perf_counter()
    while client.get_job_task_counts(job).task_counts.completed < first + runs:
        time.sleep(0.02)
    return (time.perf_counter() - started) / runs


def stop(client: BatchClient, job: str) -> None:
    """Delete the job: its running task ends and its queued ones never start."""
    client.begin_delete_job(job, polling_interval=0.05).result()


def monitor_questions(client: BatchClient, job: str, repeat: int = 20) -> tuple[float, float]:
    """Seconds for the counts, and for the listing of the tasks changed since the questions began."""
    started = time.perf_counter()
    for _ in range(repeat):
        client.get_job_task_counts(job)
    counts = (time.perf_counter() - started) / repeat
    since = datetime.now(timezone.utc)
    query = f"state eq 'completed' and stateTransitionTime ge datetime'{odata_time(since)}'"
    started = time.perf_counter()
    for _ in range(repeat):
        list(client.list_tasks(job, filter=query, select=["id", "state", "stateTransitionTime"]))
    return counts, (time.perf_counter() - started) / repeat


def measure(client: BatchClient, pid: int, large: int, runs: int) -> dict[str, float]:
    small = large // 10
    figures: dict[str, float] = {}
    new_job(client, "queued-small", 0)
    figures["add_small_s"] = add(client, "queued-small", small)
    new_job(client, "queued-large", 0)
    figures["add_large_s"] = add(client, "queued-large", large)

    new_job(client, "run-few", 1)
    add(client, "run-few", runs + runs // 2)
    figures["per_task_few_queued_s"] = scheduling(client, "run-few", runs)
    figures["counts_few_s"], figures["changed_listing_few_s"] = monitor_questions(client, "run-few")
    stop(client, "run-few")  # its node stops, so it does not share the CPU with the next
    # The same single-slot node, with the large queue behind the tasks it runs.
    new_job(client, "run-many", 1)
    add(client, "run-many", large)
    before = cpu_seconds(pid)
    figures["per_task_many_queued_s"] = scheduling(client, "run-many", runs)
    figures["service_cpu_per_task_s"] = (cpu_seconds(pid) - before) / runs
    figures["counts_many_s"], figures["changed_listing_many_s"] = monitor_questions(client, "run-many")
    stop(client, "run-many")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=100_000, help="tasks in the large job (the small one has a tenth)")
    parser.add_argument("--runs", type=int, default=500, help="tasks run to measure scheduling")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--output", choices=["text", "json"], default="text")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="batchflow-bench-", dir=args.dir))
    figures: dict[str, float] = {"task_folder_s": folder_cost(home), "process_start_s": process_start_cost()}
    process, endpoint = start_service(home)
    try:
        client = BatchClient(endpoint, AzureNamedKeyCredential(account.BATCH_ACCOUNT_NAME, account.BATCH_ACCOUNT_KEY))
        figures.update(measure(client, process.pid, args.large, args.runs))
        time.sleep(1)
        before = cpu_seconds(process.pid)
        time.sleep(5)
        figures["idle_cpu_fraction"] = (cpu_seconds(process.pid) - before) / 5
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(home, ignore_errors=True)  # its state and 100,000 tasks' folders: on tmpfs, memory
    large, small = args.large, args.large // 10
    add_ratio = figures["add_large_s"] / figures["add_small_s"]
    overhead = figures["per_task_many_queued_s"] - figures["process_start_s"]
    if args.output == "json":
        figures.update(add_ratio=add_ratio, add_per_task_ratio=add_ratio / (large / small), overhead_s=overhead)
        print(json.dumps({"large": large, "small": small, **figures}, indent=2))
        return 0
    ms = 1000
    print(f"local Batch service, {os.cpu_count()} CPUs, state and node folders under {home} (now removed)")
    print(f"creating one task's folders and files here: {figures['task_folder_s'] * ms:.2f} ms")
    print(
        f"add {small:,} tasks: {figures['add_small_s']:.2f} s; add {large:,}: {figures['add_large_s']:.2f} s "
        f"({add_ratio:.1f}x the time for {large // small}x the tasks); time per task added, {large:,} over "
        f"{small:,}: {add_ratio / (large / small):.2f} (goal: linear, at most 3)"
    )
    print(
        f"one single-slot node, {args.runs} no-op tasks: {figures['per_task_few_queued_s'] * ms:.2f} ms per task "
        f"with {args.runs // 2} queued behind, {figures['per_task_many_queued_s'] * ms:.2f} ms with {large:,} queued "
        f"(ratio {figures['per_task_many_queued_s'] / figures['per_task_few_queued_s']:.2f})"
    )
    print(
        f"process start alone: {figures['process_start_s'] * ms:.2f} ms; scheduling overhead with {large:,} queued: "
        f"{overhead * ms:.2f} ms per task (goal: at most 2); service CPU {figures['service_cpu_per_task_s'] * ms:.2f} ms per task"
    )
    print(
        f"task counts: {figures['counts_many_s'] * ms:.2f} ms with {large:,} tasks in the job, "
        f"{figures['counts_few_s'] * ms:.2f} ms with {args.runs + args.runs // 2:,} "
        f"(ratio {figures['counts_many_s'] / figures['counts_few_s']:.2f})"
    )
    print(
        f"tasks changed since a moment ago: {figures['changed_listing_many_s'] * ms:.2f} ms with {large:,} tasks, "
        f"{figures['changed_listing_few_s'] * ms:.2f} ms with {args.runs + args.runs // 2:,} "
        f"(ratio {figures['changed_listing_many_s'] / figures['changed_listing_few_s']:.2f})"
    )
    print(f"idle service CPU: {figures['idle_cpu_fraction'] * 100:.2f} % (goal: not measurable)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
