"""``batchflow report``: rebuild a run's report page from its state, and print where it is."""

from __future__ import annotations

import argparse
import webbrowser
from pathlib import Path

from batchflow.cli import views
from batchflow.cli.run import add_run_arguments
from batchflow.errors import UsageError


def report_command(args: argparse.Namespace) -> int:
    from batchflow.cli.run import _open_state
    from batchflow.report import build

    workflow, run, run_dir, state = _open_state(args)
    if state is None:
        raise UsageError(f"run {run} has not started (no state in {run_dir}); apply it first")
    summary = build(workflow, state, run_dir, args.target)
    if args.output == "json":
        views.print_json(summary.to_json())
    else:
        print(summary.report)
    if args.open and summary.report:
        webbrowser.open(Path(summary.report).as_uri())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``report``."""
    report = subparsers.add_parser(
        "report",
        help="rebuild a run's HTML report and print its path",
        description="Rebuild report.html in the run's state folder from its state (apply writes it at the end "
        "of every run) and print its path: the run's steps and timings, a task timeline per node, task durations, "
        "a sortable task table, failures with their stderr, inputs and outputs. --output json prints the summary.",
    )
    add_run_arguments(report)
    report.add_argument("--open", action="store_true", help="open the report in the web browser")
    report.set_defaults(func=report_command)
