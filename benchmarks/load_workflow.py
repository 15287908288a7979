#!/usr/bin/env python3
"""How long loading (and planning) a workflow takes as the number of tasks grows.

Prints figures; asserts nothing. Each task of a sweep is rendered from the
template; the first valid one is validated whole against the schema's task
definition, the others only at the values their template strings filled in.
Loading is linear in the number of tasks; this shows the constant.

    .venv/bin/python benchmarks/load_workflow.py [--tasks 100 1000 10000] [--cli]

With ``--cli``, also ``validate`` and ``plan --offline`` as commands, each as a
ratio to the same command on a 1-task workflow (issue 9's goal: at most 5x at
100,000 tasks): the two are run in turns, ``--runs`` times, and the best time of
each counts. ``--output json`` for scripts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from batchflow.model.load import load_workflow
from batchflow.plan.build import describe

WORKFLOW = """\
name: sweep
vars:
  scale: 2
containers:
  - name: output
pool:
  id: sweep-pool
  vm_size: standard_d2s_v3
  image: {publisher: canonical, offer: ubuntu-24_04-lts, sku: server, node_agent_sku: batch.node.ubuntu 24.04}
  nodes: {dedicated: 2}
job:
  id: sweep-job
tasks:
  for_each:
    range: {from: 1, to: COUNT}
  template:
    id: point-{{ value }}
    command: python3 -c 'print({{ value }} * {{ scale }})' > {{ ('out-' ~ value ~ '.txt') | quote }}
    output_files:
      - pattern: out-{{ value }}.txt
        container: output
    constraints:
      max_wall_clock: 10m
"""


def _cli_seconds(*args: str) -> float:
    """Wall time of one ``batchflow`` command, as a user runs it (interpreter start and imports included)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "batchflow", *args], check=True, capture_output=True)
    return time.perf_counter() - started


def _best_of_pairs(command: str, one: Path, many: Path, runs: int) -> tuple[float, float]:
    """The best times of ``command`` on the 1-task and the many-task workflow, run in turns, so that
    a noisy moment on a shared machine weighs on both sides alike."""
    best_one = best_many = float("inf")
    for _ in range(runs):
        best_one = min(best_one, _cli_seconds(*command.split(), str(one)))
        best_many = min(best_many, _cli_seconds(*command.split(), str(many)))
    return best_one, best_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument(
        "--cli", action="store_true", help="also time `validate` and `plan --offline` as commands, as ratios to 1 task"
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each command, the best counts (default 5)")
    parser.add_argument("--output", choices=["text", "json"], default="text")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    commands: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as folder:
        for count in args.tasks:
            path = Path(folder) / f"sweep{count}.yaml"
            path.write_text(WORKFLOW.replace("COUNT", str(count)))
            started = time.perf_counter()
            workflow = load_workflow(path, environ={}).workflow
            loaded = time.perf_counter() - started
            started = time.perf_counter()
            describe(workflow)
            planned = time.perf_counter() - started
            assert len(workflow.tasks) == count
            rows.append({"tasks": count, "load_s": round(loaded, 3), "load_ms_per_task": round(loaded / count * 1000, 4),
                         "describe_s": round(planned, 3)})  # fmt: skip
        if args.cli:
            one = Path(folder) / "sweep-one.yaml"
            one.write_text(WORKFLOW.replace("COUNT", "1"))
            for count in args.tasks:
                path = Path(folder) / f"sweep{count}.yaml"
                for command in ("validate", "plan --offline"):
                    seconds, took = _best_of_pairs(command, one, path, args.runs)
                    commands.append({"command": command, "tasks": count, "seconds": round(took, 3),
                                     "one_task_seconds": round(seconds, 3), "ratio": round(took / seconds, 2)})  # fmt: skip
    if args.output == "json":
        print(json.dumps({"load": rows, "commands": commands}, indent=2))
        return
    print(f"{'tasks':>8} {'load (s)':>10} {'per task (ms)':>14} {'plan (s)':>9}")
    for row in rows:
        print(f"{row['tasks']:>8} {row['load_s']:>10.2f} {row['load_ms_per_task']:>14.3f} {row['describe_s']:>9.3f}")
    if commands:
        print(f"\n{'command':<15} {'tasks':>8} {'seconds':>8} {'1 task (s)':>10} {'ratio':>6}  (goal: ratio <= 5)")
        for c in commands:
            print(
                f"{c['command']:<15} {c['tasks']:>8} {c['seconds']:>8.2f} {c['one_task_seconds']:>10.2f} {c['ratio']:>6.1f}"
            )


if __name__ == "__main__":
    main()
