"""The ``batchflow`` command line: parse arguments, run one command, map errors to exit codes.

Each command group lives in its own module with a ``register(subparsers)``
function that adds its sub-commands; each sub-command stores its handler as
``func`` in the parsed namespace. Handlers return an exit status. This module
is the single place where exceptions become messages and exit statuses
(documented in ``batchflow --help``).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from batchflow import __version__
from batchflow.errors import BatchflowError, Interrupted, WorkflowError

EXIT_STATUS_HELP = """\
exit status:
  0    success
  1    the run failed (a task failed, a timeout passed, the pool could not start,
       the service refused, another process holds the run)
  2    invalid workflow, invalid usage, or a missing prerequisite
  130  interrupted (Ctrl-C)
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the full parser, with every command group registered."""
    from batchflow.cli import local, report, run, workflow

    parser = argparse.ArgumentParser(
        prog="batchflow",
        description="Declarative YAML workflows for Azure Batch, run on Azure or on this machine.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"batchflow {__version__}")
    parser.add_argument("--debug", action="store_true", help="show a Python traceback when a command fails")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (workflow, run, report, local):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except WorkflowError as error:
        from batchflow.cli.views import print_diagnostics

        print_diagnostics(error.diagnostics, getattr(args, "output", "text"), file=sys.stderr)
        if args.debug:
            traceback.print_exc()
        return error.exit_code
    except KeyboardInterrupt:
        print("batchflow: interrupted", file=sys.stderr)
        return Interrupted.exit_code
    except BatchflowError as error:
        if args.debug:
            traceback.print_exc()
        print(f"batchflow: error: {error.message}", file=sys.stderr)
        return error.exit_code
