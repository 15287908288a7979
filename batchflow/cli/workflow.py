"""Commands that read a workflow file: ``validate`` and ``plan``."""

from __future__ import annotations

import argparse
import sys

from batchflow.cli import views
from batchflow.model.load import LoadResult, load_workflow
from batchflow.plan.build import describe


def add_workflow_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every workflow command shares: the file, variables and output format."""
    parser.add_argument("file", metavar="FILE", help="the workflow file (YAML)")
    parser.add_argument(
        "--set", dest="assignments", action="append", default=[], metavar="NAME=VALUE",
        help="set a template variable (repeatable); the value is read as YAML, so 5 is a number",
    )
    parser.add_argument(
        "--vars-file", dest="vars_files", action="append", default=[], metavar="FILE",
        help="read template variables from a YAML or JSON file (repeatable)",
    )
    parser.add_argument(
        "--output", choices=("text", "json"), default="text", help="text for people (default) or json for scripts"
    )


def load(args: argparse.Namespace) -> LoadResult:
    """Load the workflow named on the command line and print its warnings."""
    result = load_workflow(args.file, assignments=args.assignments, vars_files=args.vars_files)
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
    result = load(args)
    views.print_plan(result.workflow.name, describe(result.workflow), args.output)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``validate`` and ``plan``."""
    validate = subparsers.add_parser(
        "validate", help="check a workflow file and report every problem",
        description="Check a workflow file: YAML, schema, templates, files and references. "
        "Exit 0 when valid, 2 with every problem listed when not.",
    )
    add_workflow_arguments(validate)
    validate.set_defaults(func=validate_command)

    plan = subparsers.add_parser(
        "plan", help="show what each of the nine steps would do",
        description="Show the nine steps with concrete values: containers, files and sizes, the pool, "
        "the job, the tasks and their commands, the download and the cleanup.",
    )
    add_workflow_arguments(plan)
    plan.set_defaults(func=plan_command)
