#!/usr/bin/env python3
"""How long loading (and planning) a workflow takes as the number of tasks grows.

Prints figures; asserts nothing. Each task of a sweep is rendered from the
template and validated against the schema's task definition, so loading is
linear in the number of tasks; this shows the constant.

    .venv/bin/python benchmarks/load_workflow.py [--tasks 100 1000 10000] [--cli]

With ``--cli``, also ``validate`` and ``plan --offline`` as commands, each as a
ratio to the same command on a 1-task workflow (issue 9's goal: at most 5x at
100,000 tasks).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument(
        "--cli", action="store_true", help="also time `validate` and `plan --offline` as commands, as ratios to 1 task"
    )
    args = parser.parse_args()
    print(f"{'tasks':>8} {'load (s)':>10} {'per task (ms)':>14} {'plan (s)':>9}")
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
            print(f"{count:>8} {loaded:>10.2f} {loaded / count * 1000:>14.3f} {planned:>9.3f}")
        if not args.cli:
            return
        one = Path(folder) / "sweep-one.yaml"
        one.write_text(WORKFLOW.replace("COUNT", "1"))
        base = {command: _cli_seconds(*command.split(), str(one)) for command in ("validate", "plan --offline")}
        print(f"\n{'command':<15} {'tasks':>8} {'seconds':>8} {'1 task (s)':>10} {'ratio':>6}")
        for count in args.tasks:
            path = Path(folder) / f"sweep{count}.yaml"
            for command, seconds in base.items():
                took = _cli_seconds(*command.split(), str(path))
                print(f"{command:<15} {count:>8} {took:>8.2f} {seconds:>10.2f} {took / seconds:>6.1f}")


if __name__ == "__main__":
    main()
