"""Commands that read a workflow file: ``validate`` and ``plan``."""

from __future__ import annotations

import argparse
import gc
import sys
from typing import Any

from batchflow.cli import views
from batchflow.longlived import collector_paused
from batchflow.model.load import LoadResult, load_workflow
from batchflow.model.spec import copy_with
from batchflow.plan.build import SHOWN_TASKS, describe


def add_workflow_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every workflow command shares: the file, variables and output format."""
    parser.add_argument("file", metavar="FILE", help="the workflow file (YAML)")
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a template variable (repeatable); the value is read as YAML, so 5 is a number",
    )
    parser.add_argument(
        "--vars-file",
        dest="vars_files",
        action="append",
        default=[],
        metavar="FILE",
        help="read template variables from a YAML or JSON file (repeatable)",
    )
    parser.add_argument(
        "--output", choices=("text", "json"), default="text", help="text for people (default) or json for scripts"
    )


def load(args: argparse.Namespace) -> LoadResult:
    """Load the workflow named on the command line and print its warnings."""
    # The workflow lives as long as the command: out of the garbage collector's sight, a sweep's
    # million objects are not walked again by every later collection and once more at exit. Frozen
    # before the collector resumes, they are not walked at all (resuming it would walk them once).
    with collector_paused():
        result = load_workflow(args.file, assignments=args.assignments, vars_files=args.vars_files)
        gc.freeze()
    if result.warnings and args.output == "text":
        views.print_diagnostics(result.warnings, file=sys.stderr)
    return result


def validate_command(args: argparse.Namespace) -> int:
    result = load(args)
    w = result.workflow
    if args.output == "json":
        views.print_json(
            {
                "valid": True,
                "workflow": w.name,
                "errors": [],
                "warnings": [d.to_json() for d in result.warnings],
                "definition": w.to_dict(),
            }
        )
    else:
        print(
            f"{args.file}: valid workflow {w.name!r}: {len(w.containers)} container(s), "
            f"{len(w.uploads)} file(s) to upload, pool {w.pool.id}, job {w.job.id}, {len(w.tasks)} task(s)"
        )
    return 0


def plan_command(args: argparse.Namespace) -> int:
    from batchflow.runner import naming
    from batchflow.runner.apply import open_run

    workflow = load(args).workflow
    run, run_dir, digests, _ = open_run(workflow, args.state_dir, args.run, args.target)
    # A plan shows its first tasks in full and the others by id, which renaming leaves as declared:
    # only those it shows are renamed (renaming all of a 100,000-task sweep was a fifth of its plan).
    shown = naming.physical(copy_with(workflow, tasks=workflow.tasks[:SHOWN_TASKS]), run)
    physical = copy_with(shown, tasks=shown.tasks + workflow.tasks[SHOWN_TASKS:])
    notes, context, cached = _compare(args, workflow, physical, run, run_dir, digests)
    steps = describe(physical, declared=naming.logical_names(workflow, run), cached=cached)
    views.print_plan(workflow.name, steps, args.output, notes=notes, context=context)
    return 0


def _compare(
    args: argparse.Namespace, workflow: Any, physical: Any, run: str, run_dir: Any, digests: Any
) -> tuple[dict[str, list[str]], list[str], dict[str, str]]:
    """Annotations from the run's state and, when reachable without starting anything, the live
    service; and the tasks the cache would satisfy (task id -> the run it reuses)."""
    from batchflow.errors import BatchflowError
    from batchflow.plan.compare import annotate
    from batchflow.state import StateStore

    context = [f"run {run}: its containers and job are named for it (declared names in parentheses)"]
    if args.offline:
        return {}, context + ["offline: the state, the service and the task cache were not consulted"], {}
    state = StateStore(run_dir).load()
    context.append("has state in " + str(run_dir) if state else "not started")
    observed, target = None, None
    try:
        target = _target_without_starting(args.target)
        if target is None:
            context.append("the local services are not running, so the plan shows the definition only")
        else:
            from batchflow.cloud.observe import observe

            observed = observe(physical, target, digests)
            context.append(f"compared with {target.describe()}")
    except BatchflowError as error:
        context.append(f"could not look at the service: {error.message}")
    cached = _cached(args, workflow, run, digests, target, state)
    return annotate(physical, run, state, observed, set(cached)), context, cached


def _cached(args: argparse.Namespace, workflow: Any, run: str, digests: Any, target: Any, state: Any) -> dict[str, str]:
    """Task id -> the earlier run whose outputs apply would reuse (plan's view of the cache)."""
    if getattr(args, "no_cache", False) or not workflow.cache:
        return {}
    from batchflow.cloud.storage import BlobStore
    from batchflow.local.account import batchflow_home
    from batchflow.runner.cache import BlobListing, CacheIndex, KeyMaker, choose

    done = {r.task_id for r in state.tasks.values() if r.result == "success"} if state else set()
    pending = [t for t in workflow.tasks if t.id not in done]
    keys = KeyMaker(workflow, digests, args.target).keys()
    listing = BlobListing(BlobStore(target).list_blobs) if target is not None else None
    chosen = choose(pending, keys, CacheIndex(batchflow_home()), listing)
    found = {task_id: entry.run for task_id, (entry, _) in chosen.items()}
    if state:
        found.update({r.task_id: r.cached_from for r in state.tasks.values() if r.cached_from})
    return found


def _target_without_starting(name: str) -> Any:
    """The target, or None for local services that are not running (plan never starts them)."""
    from batchflow.cloud.targets import local_target, resolve

    if name != "local":
        return resolve(name)
    from batchflow.local import services

    status = services.status()
    if not (status.batch.running and status.azurite.running) or status.endpoints is None:
        return None
    return local_target(status.endpoints)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``validate`` and ``plan``."""
    validate = subparsers.add_parser(
        "validate",
        help="check a workflow file and report every problem",
        description="Check a workflow file: YAML, schema, templates, files and references. "
        "Exit 0 when valid, 2 with every problem listed when not.",
    )
    add_workflow_arguments(validate)
    validate.set_defaults(func=validate_command)

    plan = subparsers.add_parser(
        "plan",
        help="show what each of the nine steps would do",
        description="Show the nine steps with concrete values: containers, files and sizes, the pool, "
        "the job, the tasks and their commands, the download and the cleanup; compared with the run's "
        "state and with the service (which plan never starts): what exists, what would be created, "
        "reused, uploaded, added and deleted.",
    )
    add_workflow_arguments(plan)
    from batchflow.cli.run import add_target_arguments

    add_target_arguments(plan)
    plan.add_argument("--offline", action="store_true", help="show the definition only; look at no state or service")
    plan.add_argument("--no-cache", action="store_true", help="plan as apply --no-cache would: every task runs")
    plan.set_defaults(func=plan_command)
