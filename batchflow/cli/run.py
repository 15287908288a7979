"""Commands that act on a run: ``apply``, ``status``, ``logs`` and ``destroy``."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from batchflow.cli import views
from batchflow.cli.progress import TerminalReporter
from batchflow.cli.workflow import add_workflow_arguments, load
from batchflow.errors import BatchflowError, Interrupted, RunFailed, UsageError


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The workflow options, and where a run goes and where its state lives."""
    add_workflow_arguments(parser)
    add_target_arguments(parser)


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a run goes (``--target``) and where its state lives (``--state-dir``, ``--run``)."""
    parser.add_argument(
        "--target",
        default="local",
        help="local (default: Azurite and the local Batch service), azure (from AZURE_* environment "
        "variables), or a name from ~/.config/batchflow/targets.yaml",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=Path(".batchflow"), help="where run state is kept (default .batchflow)"
    )
    parser.add_argument("--run", help="name the run explicitly instead of deriving it from the definition")


def _resolve(args: argparse.Namespace) -> Any:
    from batchflow.cloud.targets import resolve

    return resolve(args.target)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def resume_command(args: argparse.Namespace) -> str:
    return "batchflow " + shlex.join(args.argv)


def apply_command(args: argparse.Namespace) -> int:
    from batchflow.runner.apply import apply

    workflow = load(args).workflow
    signal.signal(signal.SIGTERM, _raise_interrupt)
    report = TerminalReporter()
    try:
        result = apply(
            workflow,
            None,
            state_dir=args.state_dir,
            report=report,
            run=args.run,
            assume_yes=args.yes,
            resolve_target=lambda: _resolve(args),
            target_name=args.target,
            use_cache=not args.no_cache,
        )
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; the state is saved. Resume with: {resume_command(args)}") from None
    except Interrupted as error:
        raise Interrupted(f"{error.message}. Resume with: {resume_command(args)}") from None
    except RunFailed as error:
        raise RunFailed(f"{error.message}\nAfter fixing the cause, resume with: {resume_command(args)}") from None
    for failure in result.failures:
        views.print_failure(failure, args)
    if args.output == "json":
        views.print_json(result.to_json())
    elif result.succeeded and not result.already_finished:
        where = f"; outputs in {result.outputs}" if result.outputs else ""
        print(f"run {result.run} finished{where}")
        views.print_summary(result.summary)
    elif result.already_finished:
        views.print_summary(result.summary, report_only=True)
    else:
        print(
            f"run {result.run} failed: {len(result.failures)} task(s) failed; the job and pool are kept. "
            f"Remove them with: batchflow destroy {shlex.quote(args.file)} --run {result.run}",
            file=sys.stderr,
        )
        views.print_summary(result.summary, file=sys.stderr)
    return 0 if result.succeeded else 1


def _open_state(args: argparse.Namespace) -> tuple[Any, str, Path, Any]:
    """The run's workflow with its physical names (see batchflow.runner.naming), name, folder and state."""
    from batchflow.runner import naming
    from batchflow.runner.apply import open_run
    from batchflow.state import StateStore

    workflow = load(args).workflow
    run, run_dir, _, _ = open_run(workflow, args.state_dir, args.run, args.target)
    state = StateStore(run_dir).load()
    return naming.physical(workflow, run), run, run_dir, state


def status_command(args: argparse.Namespace) -> int:
    from batchflow.cli.workflow import _target_without_starting
    from batchflow.cloud.batch import BatchService, enum_value

    workflow, run, run_dir, state = _open_state(args)
    if state is None:
        message = f"run {run} has not started (no state in {run_dir})"
        views.print_json({"run": run, "started": False}) if args.output == "json" else print(message)
        return 0
    live: dict[str, Any] = {}
    job = state.resources.get("job", {})
    pool = state.resources.get("pool", {})
    if not state.resources.get("destroyed") and (job.get("id") or pool.get("id")):
        try:
            # status only looks: it never starts the local services.
            target = _target_without_starting(args.target)
            if target is None:
                live["note"] = (
                    "the local services are not running (batchflow local up starts them), so only the state is shown"
                )
            else:
                batch = BatchService(target)
                if job.get("created") and not job.get("deleted"):
                    counts = batch.task_counts(job["id"])
                    live["tasks"] = {
                        k: getattr(counts, k) for k in ("active", "running", "completed", "succeeded", "failed")
                    }
                if pool.get("id") and not pool.get("deleted") and batch.get_pool(pool["id"]) is not None:
                    live["nodes"] = {n.id: enum_value(n.state) for n in batch.list_nodes(pool["id"])}
        except BatchflowError as error:
            live["error"] = error.message
    failures = [
        {"task": r.task_id, "exit_code": r.exit_code, "failure": r.failure}
        for r in state.tasks.values()
        if r.state == "completed" and r.result != "success"
    ]
    views.print_status(run, run_dir, state, live, failures, args.output, pool_id=pool.get("id"), file=args.file)
    return 0


def logs_command(args: argparse.Namespace) -> int:
    from batchflow.cloud.batch import BatchService

    workflow, _, _, _ = _open_state(args)
    batch = BatchService(_resolve(args))
    name = "stderr.txt" if args.stderr else "stdout.txt"
    if args.start_task:
        path = f"startup/{name}"
        data = batch.node_file(workflow.pool.id, args.start_task, path)
        if data is None:
            raise RunFailed(batch.why_no_node_file(workflow.pool.id, args.start_task, path))
    else:
        if not args.task:
            raise UsageError("logs needs a TASK id, or --start-task NODE")
        data = batch.task_file(workflow.job.id, args.task, name)
        if data is None:
            raise RunFailed(batch.why_no_task_file(workflow.job.id, args.task, name))
    if not data:
        print(f"({name} is empty)", file=sys.stderr)
        return 0
    sys.stdout.write(data.decode("utf-8", errors="replace"))
    return 0


def destroy_command(args: argparse.Namespace) -> int:
    from batchflow.runner.destroy import destroy, runs_of

    workflow, run, run_dir, _ = _open_state(args)
    if args.all_runs:
        runs = runs_of(args.state_dir, workflow.name)
        if not runs:
            raise UsageError(f"no run of workflow {workflow.name} has state in {args.state_dir}; nothing to destroy")
    else:
        runs = [(run, run_dir)]

    def confirm(doomed: list[tuple[str, str]]) -> bool:
        listing = ", ".join(f"{kind} {name}" for kind, name in doomed)
        if args.yes:
            return True
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise UsageError(f"destroy would delete {listing}; pass --yes to confirm when not on a terminal")
        answer = TerminalReporter().confirm(f"Delete {listing}?")
        return bool(answer)

    target = _resolve(args)
    results = {name: destroy(name, directory, target, confirm=confirm) for name, directory in runs}
    if len(runs) > 1:
        # Runs share a pool: one run keeps it while another run's job still uses it, so
        # once every job is gone, go round once more for the pools that were kept.
        for name, directory in runs:
            if any(kind == "pool" for kind, _, _ in results[name].kept):
                again = destroy(name, directory, target, confirm=lambda doomed: True)
                results[name].deleted += again.deleted
                results[name].kept = again.kept
    if args.output == "json":
        views.print_json(
            {
                "runs": [
                    {
                        "run": name,
                        "deleted": [{"kind": k, "id": n} for k, n in result.deleted],
                        "kept": [{"kind": k, "id": n, "why": why} for k, n, why in result.kept],
                    }
                    for name, result in results.items()
                ]
            }
        )
        return 0
    for name, result in results.items():
        print(f"run {name}: deleted {', '.join(f'{k} {n}' for k, n in result.deleted) or 'nothing'}")
        for kind, ident, why in result.kept:
            print(f"  kept {kind} {ident}: {why}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``apply``, ``status``, ``logs`` and ``destroy``."""
    apply = subparsers.add_parser(
        "apply",
        help="run the nine steps; run again to resume",
        description="Run the workflow's nine steps, recording each in the run's state file. "
        "If the run was interrupted, the same command resumes it; a finished run is a quick no-op.",
    )
    add_run_arguments(apply)
    apply.add_argument("--yes", action="store_true", help="answer yes to cleanup questions (cleanup: ask)")
    apply.add_argument(
        "--no-cache",
        action="store_true",
        help="run every task, even one whose outputs an earlier run with the same inputs produced",
    )
    apply.set_defaults(func=apply_command)

    status = subparsers.add_parser(
        "status",
        help="show a run's steps, task counts and failures",
        description="Show the run's steps and failures from its state file, and live task counts from the service.",
    )
    add_run_arguments(status)
    status.set_defaults(func=status_command)

    logs = subparsers.add_parser(
        "logs",
        help="print a task's stdout or stderr, or a node's start-task output",
        description="Print stdout.txt (or stderr.txt with --stderr) of a task, or of a node's start task.",
    )
    add_run_arguments(logs)
    logs.add_argument("task", nargs="?", metavar="TASK", help="the task id, for example topNtask0")
    logs.add_argument("--stderr", action="store_true", help="print stderr.txt instead of stdout.txt")
    logs.add_argument("--start-task", metavar="NODE", help="print the start task's output on this node instead")
    logs.set_defaults(func=logs_command)

    destroy = subparsers.add_parser(
        "destroy",
        help="delete what this run created",
        description="Delete the job, containers and pool that this run's state says it created, and nothing else. "
        "A pool that another run's job still uses is kept, and the output says so.",
    )
    add_run_arguments(destroy)
    destroy.add_argument("--yes", action="store_true", help="delete without asking")
    destroy.add_argument(
        "--all-runs",
        action="store_true",
        help="destroy every run of this workflow that has state in --state-dir, whatever its variables",
    )
    destroy.set_defaults(func=destroy_command)
