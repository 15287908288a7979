"""How commands print: the text a person reads and the JSON a script reads.

Only the command line prints. Each view takes plain data (diagnostics,
planned steps) and an output format, ``text`` or ``json``.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from batchflow.diagnostics import Diagnostic
from batchflow.plan.build import PlannedStep
from batchflow.state.redact import redact_secrets


def print_json(data: Any, file: IO[str] | None = None) -> None:
    """Print ``data`` as indented JSON."""
    print(json.dumps(data, indent=2, ensure_ascii=False), file=file or sys.stdout)


def print_diagnostics(
    diagnostics: list[Diagnostic],
    output: str = "text",
    file: IO[str] | None = None,
    *,
    nothing_created: bool = False,
) -> None:
    """Print every diagnostic, one line each (or one JSON document).

    ``nothing_created``: the command would have created something (``apply``), so
    say that it did not.
    """
    out = file or sys.stderr
    if output == "json":
        errors = [d.to_json() for d in diagnostics if d.severity == "error"]
        warnings = [d.to_json() for d in diagnostics if d.severity == "warning"]
        print_json({"valid": not errors, "errors": errors, "warnings": warnings}, file=sys.stdout)
        return
    for diagnostic in diagnostics:
        print(diagnostic.format(), file=out)
    count = sum(1 for d in diagnostics if d.severity == "error")
    if count:
        print(f"batchflow: {count} error(s){'; nothing was created' if nothing_created else ''}", file=out)


def print_plan(
    name: str,
    steps: list[PlannedStep],
    output: str = "text",
    *,
    notes: dict[str, list[str]] | None = None,
    context: list[str] | None = None,
) -> None:
    """Print the nine planned steps, each with what apply would do (``notes``)."""
    notes = notes or {}
    if output == "json":
        print_json(
            {
                "workflow": name,
                "context": context or [],
                "steps": [{**s.to_json(), "apply_would": notes.get(s.key, [])} for s in steps],
            }
        )
        return
    print(f"Plan for workflow {name}:")
    for line in context or []:
        print(f"  {line}")
    for step in steps:
        print(f"[{step.number}/{len(steps)}] {step.title}: {step.summary}")
        for line in step.details:
            print(f"      {line}")
        for line in notes.get(step.key, []):
            print(f"      => {line}")


def print_failure(failure: dict[str, Any], args: Any) -> None:
    """Explain one failed task: exit code, failure info, the tail of stderr, and how to see the rest."""
    import shlex

    out = sys.stderr
    code = failure.get("exit_code")
    print(f"task {failure['task']} failed" + (f" with exit code {code}" if code is not None else ""), file=out)
    info = failure.get("failure")
    if info:
        print(f"  {info.get('category')}: {info.get('code')}: {redact_secrets(info.get('message') or '')}", file=out)
    if failure.get("stderr_tail"):
        print("  last lines of stderr.txt:", file=out)
        for line in redact_secrets(failure["stderr_tail"]).splitlines():
            print(f"    {line}", file=out)
    print(f"  see it all with: batchflow logs {shlex.quote(args.file)} {failure['task']} --stderr", file=out)


def step_summary(key: str, summary: dict[str, Any]) -> str:
    """A step's recorded summary in words: ``3 created, 0 already there``."""
    get = summary.get
    if key == "containers":
        return f"{get('created', 0)} created, {get('existing', 0)} already there"
    if key == "uploads":
        return f"{get('new', 0)} new, {get('changed', 0)} changed, {get('unchanged', 0)} unchanged"
    if key == "pool":
        return f"pool {get('pool')} {get('how')}, {get('ready', 0)} of {get('nodes', 0)} node(s) ready"
    if key == "job":
        return f"job {get('job')} {get('how')}"
    if key == "tasks":
        return f"{get('added', 0)} added, {get('existing', 0)} already in the job, {get('cached', 0)} reused from the cache"
    if key == "monitor":
        text = f"{get('succeeded', 0)} succeeded ({get('cached', 0)} from the cache), {get('failed', 0)} failed"
        return text + (f", {get('missing_outputs')} without their declared outputs" if get("missing_outputs") else "")
    if key == "download":
        where = f", into {get('destination')}" if get("destination") else ""
        return f"{get('downloaded', 0)} downloaded, {get('unchanged', 0)} already there{where}"
    if key == "delete_containers":
        return f"deleted: {', '.join(get('deleted') or []) or 'none'}; kept: {', '.join(get('kept') or []) or 'none'}"
    if key == "delete_job_pool":
        return f"job {get('job', '?')}, pool {get('pool', '?')}"
    return ", ".join(f"{k} {v}" for k, v in summary.items())


def print_status(
    run: str,
    run_dir: Any,
    state: Any,
    live: dict[str, Any],
    failures: list[dict[str, Any]],
    output: str,
    *,
    pool_id: str | None = None,
    file: str = "FILE",
) -> None:
    """A run's steps, live task counts and nodes, and failures."""
    from batchflow.plan.build import STEPS

    if output == "json":
        print_json(
            {
                "run": run,
                "state_dir": str(run_dir),
                "destroyed": state.resources.get("destroyed"),
                "steps": {k: {"status": v.status, **v.summary} for k, v in state.steps.items()},
                "live": live,
                "failures": failures,
            }
        )
        return
    titles = dict(STEPS)
    print(f"run {run} ({run_dir})")
    destroyed = state.resources.get("destroyed")
    if destroyed:
        print(f"destroyed at {destroyed}: its job and containers are gone; apply starts the run again")
    for number, (key, record) in enumerate(state.steps.items(), start=1):
        words = step_summary(key, record.summary) if record.summary and record.status == "done" else ""
        print(
            f"[{number}/{len(state.steps)}] {titles.get(key, key)}: {record.status}" + (f": {words}" if words else "")
        )
    if "note" in live:
        print(live["note"])
    if "error" in live:
        print(f"cannot ask the service: {live['error']}")
    if "tasks" in live:
        print("tasks now: " + ", ".join(f"{v} {k}" for k, v in live["tasks"].items()))
    if "nodes" in live:
        nodes = ", ".join(f"{node} ({node_state})" for node, node_state in live["nodes"].items()) or "none"
        print(f"nodes of pool {pool_id}: {nodes}")
        if live["nodes"]:
            print(f"  a node's start-task output: batchflow logs {file} --start-task {next(iter(live['nodes']))}")
    for failure in failures:
        info = failure.get("failure") or {}
        print(f"failed: {failure['task']} exit code {failure['exit_code']} {info.get('code') or ''}".rstrip())


def print_summary(summary: dict[str, Any] | None, *, file: IO[str] | None = None, report_only: bool = False) -> None:
    """The end-of-run summary (elapsed time per step, tasks, slowest tasks, outputs, report path)."""
    from batchflow.report.summary import Summary, summary_lines

    if not summary:
        return
    lines = summary_lines(Summary(**summary))
    for line in lines[-1:] if report_only else lines:
        print(f"  {line}", file=file or sys.stdout)
