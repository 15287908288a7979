#!/usr/bin/env python3
"""End-to-end throughput of ``batchflow apply`` against ``xargs -P`` running the same commands.

For each N, in one session on the local services (started here, on free ports,
in a temporary BATCHFLOW_HOME): an apply of N no-op tasks (``true``) on a pool
with as many nodes as cores, and ``seq N | xargs -P<cores>`` running the same
rendered command line. Prints the wall times and their ratio, the CPU the
apply process used per task, what the monitor's watching cost (polls,
requests per poll, task records fetched per task) and how long after the last
task ended the apply moved on to step 7. Then the CPU of
``batchflow validate`` of the same file (starting Python, loading and
rendering the workflow), and the apply's CPU net of it: what running the
steps cost. Asserts nothing.

    .venv/bin/python benchmarks/apply_throughput.py [--tasks 2000 10000] [--output json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from session import noop_sweep, start_local_services

from batchflow.local import services

#: What batchflow runs for a command (see README, "Commands are shell scripts").
SHELL_COMMAND = "set -e -o pipefail; true"


def run_apply(workflow: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) of the apply process, exit status."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "batchflow", "apply", str(workflow), "--yes"],
        env=env,
        cwd=workflow.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        assert process.stderr is not None
        sys.stderr.write(process.stderr.read().decode(errors="replace"))
    return wall, usage.ru_utime + usage.ru_stime, process.returncode


def validate_cpu(workflow: Path, env: dict[str, str]) -> float:
    """CPU seconds (user + system) of ``batchflow validate`` of the workflow: the loading an apply starts with."""
    process = subprocess.Popen(
        [sys.executable, "-m", "batchflow", "validate", str(workflow)],
        env=env,
        cwd=workflow.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, _, usage = os.wait4(process.pid, 0)
    return usage.ru_utime + usage.ru_stime


def run_xargs(count: int, cores: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        f"seq {count} | xargs -P{cores} -I{{}} /bin/bash -c '{SHELL_COMMAND}'",
        shell=True,
        check=True,
        executable="/bin/bash",
    )
    return time.perf_counter() - started


def monitor_figures(folder: Path) -> tuple[dict[str, int], float]:
    """The monitor step's summary (polls, listings, records fetched), and the seconds from the last
    task's end (the service's clock, this machine's) to the start of step 7 (the runner's clock, the same)."""
    (state_file,) = folder.glob(".batchflow/*/state.json")
    state = json.loads(state_file.read_text())
    last_end = max(parse_time(record["end_time"]) for record in state["tasks"].values())
    step_7 = parse_time(state["steps"]["download"]["started"])
    return state["steps"]["monitor"]["summary"], (step_7 - last_end).total_seconds()


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--output", choices=["text", "json"], default="text")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        home, endpoints, env = start_local_services(Path(scratch), cores)
        try:
            for count in args.tasks:
                folder = Path(scratch) / f"n{count}"
                folder.mkdir()
                workflow = folder / "noop.yaml"
                workflow.write_text(noop_sweep("noop", count, cores, cleanup="delete", timeout="2h"))
                wall, cpu, code = run_apply(workflow, env)
                if code != 0:
                    print(f"apply of {count} tasks exited {code}", file=sys.stderr)
                    return 1
                watched, noticed = monitor_figures(folder)
                loading = validate_cpu(workflow, env)
                baseline = run_xargs(count, cores)
                rows.append(
                    {
                        "tasks": count,
                        "apply_s": round(wall, 2),
                        "xargs_s": round(baseline, 2),
                        "ratio_apply_over_xargs": round(wall / baseline, 2),
                        "apply_cpu_ms_per_task": round(cpu * 1000 / count, 3),
                        "polls": watched.get("polls"),
                        "listing_requests": watched.get("listings"),
                        "requests_per_poll": round((watched["polls"] + watched["listings"]) / watched["polls"], 2),
                        "end_noticed_after_s": round(noticed, 3),
                        "records_per_task": round(watched.get("records_listed", 0) / count, 3),
                        "validate_cpu_ms_per_task": round(loading * 1000 / count, 3),
                        "apply_cpu_net_of_validate_ms_per_task": round((cpu - loading) * 1000 / count, 3),
                    }
                )
        finally:
            services.stop(home)
    if args.output == "json":
        print(json.dumps({"cores": cores, "rows": rows}, indent=2))
        return 0
    print(f"cores: {cores}; apply of N no-op tasks on {cores} node(s) against seq N | xargs -P{cores}")
    header = (
        f"{'tasks':>7} {'apply s':>8} {'xargs s':>8} {'apply/xargs':>11} {'CPU ms/task':>11} {'polls':>6} "
        f"{'requests/poll':>13} {'records/task':>12} {'end noticed s':>13}"
    )
    print(header + f" {'validate CPU ms/task':>20} {'net CPU ms/task':>15}")
    for r in rows:
        print(
            f"{r['tasks']:>7} {r['apply_s']:>8} {r['xargs_s']:>8} {r['ratio_apply_over_xargs']:>11} "
            f"{r['apply_cpu_ms_per_task']:>11} {r['polls']:>6} {r['requests_per_poll']:>13} {r['records_per_task']:>12}"
            f" {r['end_noticed_after_s']:>13} {r['validate_cpu_ms_per_task']:>20} {r['apply_cpu_net_of_validate_ms_per_task']:>15}"
        )
    print(
        "goals: apply/xargs at most 2; records/task at most 1.2; CPU ms/task at most 0.3 at 10,000; "
        "end noticed within one poll interval (locally 0.2 s, 0.1 s once no task waits)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
