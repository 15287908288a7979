"""Benchmark: the cost of recording one task transition, with 100 and 100,000 tasks in the run.

Why this exists: issue 4 requires that writing the state does not grow with
the number of tasks per transition. StateStore appends transitions to
``tasks.jsonl`` instead of rewriting ``state.json``; this script shows the
two costs side by side, so a change that brings back O(tasks) writes is
visible. It prints figures and asserts nothing (timings depend on the disk).

    python3 benchmarks/state_journal.py [--dir PATH] [--repeat 200]

``--dir`` chooses the file system to measure (fsync on tmpfs costs nothing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchflow.state.model import RunState, TaskRecord, new_state, set_step_status  # noqa: E402
from batchflow.state.store import StateStore  # noqa: E402


def build_state(tasks: int) -> RunState:
    """A run in its monitor step with *tasks* tasks, a tenth of them already done."""
    state = new_state(
        run=f"bench-{tasks}",
        workflow="bench",
        workflow_file="bench.yaml",
        fingerprint="sha256:bench",
        steps=["tasks", "monitor"],
    )
    set_step_status(state, "tasks", "done", summary={"added": tasks})
    set_step_status(state, "monitor", "running")
    for index in range(tasks):
        task_id = f"task-{index:06d}"
        if index % 10 == 0:
            state.tasks[task_id] = TaskRecord(
                task_id,
                state="completed",
                exit_code=0,
                result="success",
                node_id="tvm-1234567890_1-20260101t000000z",
                start_time="2026-01-01T00:00:00.000Z",
                end_time="2026-01-01T00:00:09.000Z",
            )
        else:
            state.tasks[task_id] = TaskRecord(task_id)
    return state


def measure(directory: Path, tasks: int, repeat: int) -> dict[str, float]:
    store = StateStore(directory / f"run-{tasks}")
    state = build_state(tasks)
    started = time.perf_counter()
    store.save(state)
    first_save = time.perf_counter() - started
    snapshot_bytes = store.state_path.stat().st_size

    # One transition per call, as the monitor records a task that changed.
    durations = []
    for index in range(repeat):
        task_id = f"task-{(index * 7919) % tasks:06d}"
        record = TaskRecord(task_id, state="running", retry_count=index, node_id="tvm-1234567890_2")
        started = time.perf_counter()
        written = store.record_tasks([record])
        durations.append(time.perf_counter() - started)
        assert written == 1
    journal_bytes = store.journal_path.stat().st_size

    # What each transition would cost if the whole snapshot were rewritten instead.
    rewrites = []
    for index in range(5):
        state.steps["monitor"].summary = {"polls": index}
        started = time.perf_counter()
        store.save(state)
        rewrites.append(time.perf_counter() - started)

    started = time.perf_counter()
    StateStore(store.directory).load()
    load = time.perf_counter() - started
    return {
        "record_median_us": statistics.median(durations) * 1e6,
        "record_mean_us": statistics.fmean(durations) * 1e6,
        "bytes_per_transition": journal_bytes / repeat,
        "snapshot_bytes": snapshot_bytes,
        "first_save_ms": first_save * 1e3,
        "rewrite_median_ms": statistics.median(rewrites) * 1e3,
        "load_ms": load * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="folder to write in (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=200, help="transitions recorded per run size")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="batchflow-bench-") as folder:
        results = {tasks: measure(Path(folder), tasks, args.repeat) for tasks in (100, 100_000)}

    print(f"Recording one task transition ({args.repeat} transitions per run size, fsync each):")
    print(
        f"{'tasks in run':>14} {'median':>10} {'mean':>10} {'bytes':>7}   "
        f"{'state.json':>11} {'full rewrite':>13} {'load':>9}"
    )
    for tasks, r in results.items():
        print(
            f"{tasks:>14,} {r['record_median_us']:>8.0f}us {r['record_mean_us']:>8.0f}us "
            f"{r['bytes_per_transition']:>7.0f}   {r['snapshot_bytes'] / 1e6:>9.2f}MB "
            f"{r['rewrite_median_ms']:>11.1f}ms {r['load_ms']:>7.1f}ms"
        )
    small, large = results[100], results[100_000]
    print(f"journal append, 100,000 vs 100 tasks: x{large['record_median_us'] / small['record_median_us']:.2f}")
    print(
        f"a full rewrite per transition at 100,000 tasks would cost "
        f"x{large['rewrite_median_ms'] * 1e3 / large['record_median_us']:.0f} the journal append"
    )


if __name__ == "__main__":
    main()
