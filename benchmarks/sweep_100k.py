#!/usr/bin/env python3
"""100,000 no-op tasks end to end, with a kill in the middle of monitoring and a resume.

On the local services (started here, on free ports, in a temporary
BATCHFLOW_HOME; the service's folders follow TMPDIR): ``batchflow apply`` of N
no-op tasks on a pool with as many nodes as cores is killed with SIGKILL once
a third of the tasks have completed, then the same command is run again and
finishes the run. Then every task of the job is compared with what the run's
state says of it.

Prints the time of each apply and of the steps, the peak RSS of each apply
process (issue 9's goal: at most 500 MB), what the resumed monitor fetched
against the tasks that completed after the kill (it should list what changed,
not everything again), the largest task journal and state file seen, how often
the state file was rewritten, and whether the run adopted every task exactly:
each task once (no retry, no requeue), with the exit code, node and times the
service reports. Asserts nothing; exits 1 if the run did not finish.

    .venv/bin/python benchmarks/sweep_100k.py [--tasks 100000] [--kill-at 0.33] [--output json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from session import noop_sweep, start_local_services

from batchflow.local import services


class Watcher(threading.Thread):
    """Samples the run folder while an apply runs: the largest journal and state file, and the state rewrites."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.largest_journal = 0
        self.largest_state = 0
        self.rewrites: set[tuple[int, int]] = set()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.25):
            for run_dir in self.folder.glob(".batchflow/*/"):
                for name, attribute in (("tasks.jsonl", "largest_journal"), ("state.json", "largest_state")):
                    try:
                        info = (run_dir / name).stat()
                    except OSError:
                        continue
                    setattr(self, attribute, max(getattr(self, attribute), info.st_size))
                    if name == "state.json":
                        self.rewrites.add((info.st_ino, info.st_mtime_ns))


def start_apply(workflow: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchflow", "apply", str(workflow), "--yes"],
        env=env,
        cwd=workflow.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_apply(process: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Exit status and peak RSS in MB of a finished apply."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024


def run_job(client: BatchClient) -> str:
    """The id of the run's job (named after the declared one and the run)."""
    while True:
        jobs = [job.id for job in client.list_jobs() if job.id.startswith("sweep-job-")]
        if jobs:
            return jobs[0]
        time.sleep(0.2)


def compare(client: BatchClient, job_id: str, state: dict[str, Any]) -> dict[str, int]:
    """How the job's tasks, as the service lists them, agree with the run's state."""
    figures = {"service_tasks": 0, "ran_more_than_once": 0, "missing_from_state": 0, "different_in_state": 0}
    for task in client.list_tasks(job_id):
        figures["service_tasks"] += 1
        info = task.execution_info
        if info.retry_count or info.requeue_count:
            figures["ran_more_than_once"] += 1
        record = state["tasks"].get(task.id)
        if record is None:
            figures["missing_from_state"] += 1
            continue
        same = (
            record["state"] == "completed"
            and record["exit_code"] == info.exit_code
            and record["node_id"] == task.node_info.node_id
            and record["end_time"] == info.end_time.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
        figures["different_in_state"] += 0 if same else 1
    return figures


def step_seconds(state: dict[str, Any]) -> dict[str, float]:
    from datetime import datetime

    def moment(text: str) -> datetime:
        return datetime.fromisoformat(text)

    return {
        name: round((moment(step["finished"]) - moment(step["started"])).total_seconds(), 2)
        for name, step in state["steps"].items()
        if step.get("started") and step.get("finished")
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--kill-at", type=float, default=0.33, help="fraction of tasks completed when apply is killed")
    parser.add_argument("--output", choices=["text", "json"], default="text")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    figures: dict[str, Any] = {"tasks": args.tasks, "cores": cores}
    with tempfile.TemporaryDirectory() as scratch:
        home, endpoints, env = start_local_services(Path(scratch), cores)
        client = BatchClient(
            endpoints.batch_endpoint,
            AzureNamedKeyCredential(endpoints.batch_account_name, endpoints.batch_account_key),
        )
        folder = Path(scratch) / "sweep"
        folder.mkdir()
        workflow = folder / "sweep.yaml"
        workflow.write_text(noop_sweep("sweep", args.tasks, cores, cleanup="keep", timeout="6h"))
        watcher = Watcher(folder)
        watcher.start()
        try:
            started = time.perf_counter()
            first = start_apply(workflow, env)
            job_id = run_job(client)
            while client.get_job_task_counts(job_id).task_counts.completed < args.tasks * args.kill_at:
                if first.poll() is not None:
                    sys.stderr.write(first.stderr.read().decode(errors="replace") if first.stderr else "")
                    print(f"apply ended with {first.returncode} before it could be killed", file=sys.stderr)
                    return 1
                time.sleep(0.5)
            first.send_signal(signal.SIGKILL)
            _, figures["first_apply_peak_rss_mb"] = wait_apply(first)
            figures["first_apply_s"] = round(time.perf_counter() - started, 1)
            completed_at_kill = client.get_job_task_counts(job_id).task_counts.completed
            figures["completed_at_kill"] = completed_at_kill

            resumed = time.perf_counter()
            second = start_apply(workflow, env)
            code, figures["resumed_apply_peak_rss_mb"] = wait_apply(second)
            figures["resumed_apply_s"] = round(time.perf_counter() - resumed, 1)
            figures["total_s"] = round(time.perf_counter() - started, 1)
            if code != 0:
                sys.stderr.write(second.stderr.read().decode(errors="replace") if second.stderr else "")
                print(f"the resumed apply exited {code}", file=sys.stderr)
                return 1
        finally:
            watcher.stopped.set()
            watcher.join()
        (state_file,) = folder.glob(".batchflow/*/state.json")
        state = json.loads(state_file.read_text())
        monitor = state["steps"]["monitor"]["summary"]
        figures["resumed_steps_s"] = step_seconds(state)
        figures["resumed_monitor_records_fetched"] = monitor["records_listed"]
        figures["tasks_completed_after_kill"] = args.tasks - completed_at_kill
        figures["resumed_monitor_polls"] = monitor["polls"]
        figures["largest_journal_mb"] = round(watcher.largest_journal / 2**20, 2)
        figures["largest_state_mb"] = round(watcher.largest_state / 2**20, 2)
        figures["state_rewrites_seen"] = len(watcher.rewrites)
        figures["succeeded_in_state"] = sum(1 for r in state["tasks"].values() if r.get("result") == "success")
        figures.update(compare(client, job_id, state))
        services.stop(home)
    if args.output == "json":
        print(json.dumps(figures, indent=2))
        return 0
    n = args.tasks
    print(
        f"{n:,} no-op tasks on {cores} local node(s); apply killed (SIGKILL) at {figures['completed_at_kill']:,} completed"
    )
    print(
        f"first apply: {figures['first_apply_s']} s, peak RSS {figures['first_apply_peak_rss_mb']:.0f} MB; "
        f"resumed apply: {figures['resumed_apply_s']} s, peak RSS {figures['resumed_apply_peak_rss_mb']:.0f} MB "
        f"(goal: at most 500); total {figures['total_s']} s"
    )
    print(f"resumed apply's steps (s): {figures['resumed_steps_s']}")
    print(
        f"resumed monitor fetched {figures['resumed_monitor_records_fetched']:,} task records for "
        f"{figures['tasks_completed_after_kill']:,} tasks completed after the kill, in {figures['resumed_monitor_polls']} polls"
    )
    print(
        f"largest journal {figures['largest_journal_mb']} MB, largest state file {figures['largest_state_mb']} MB, "
        f"state file written {figures['state_rewrites_seen']} times (sampled every 0.25 s)"
    )
    print(
        f"adopted: {figures['succeeded_in_state']:,} of {n:,} succeeded in the state; the service lists "
        f"{figures['service_tasks']:,} tasks, {figures['ran_more_than_once']} ran more than once, "
        f"{figures['missing_from_state']} missing from the state, {figures['different_in_state']} recorded differently"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
