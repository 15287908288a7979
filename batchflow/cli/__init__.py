"""The ``batchflow`` command line: parse arguments, run one command, map errors to exit codes.

Each command group lives in its own module with a ``register(subparsers)``
function that adds its sub-commands; each sub-command stores its handler as
``func`` in the parsed namespace. Handlers return an exit status. This module
is the single place where exceptions become messages and exit statuses
(documented in ``batchflow --help``).
"""

from __future__ import annotations

import argparse
import difflib
import logging
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
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (workflow, run, report, local):
        module.register(subparsers)
    _everywhere(subparsers)
    return parser


_DEBUG_HELP = "show a Python traceback when a command fails, and the Azure SDKs' log"


def _everywhere(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Accept the global ``--debug`` after any command too, and remember each command's parser.

    The parser is kept so that an unknown option is reported with the usage of
    the command it was given to, not the top-level one.
    """
    for command in subparsers.choices.values():
        # SUPPRESS: a sub-command without --debug must not reset one given before it.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
        command.set_defaults(command_parser=command)
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _everywhere(action)


def _reject_unknown(parser: argparse.ArgumentParser, args: argparse.Namespace, extras: list[str]) -> None:
    """Exit 2 naming the first unknown argument, with a suggestion from the command's own options."""
    command: argparse.ArgumentParser = getattr(args, "command_parser", parser)
    unknown = extras[0]
    message = f"unrecognized argument: {unknown}"
    if unknown.startswith("-"):
        options = [o for action in command._actions for o in action.option_strings if o.startswith("--")]
        close = difflib.get_close_matches(unknown.split("=", 1)[0], options, n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {close[0]}?"
    command.error(message)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        _reject_unknown(parser, args, extras)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    _configure_logging(args.debug)
    try:
        return int(args.func(args) or 0)
    except WorkflowError as error:
        from batchflow.cli.views import print_diagnostics

        print_diagnostics(
            error.diagnostics,
            getattr(args, "output", "text"),
            file=sys.stderr,
            nothing_created=args.command == "apply",
        )
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


def _configure_logging(debug: bool) -> None:
    """The Azure SDKs log recoverable trouble (a failsafe deserialization, a retry) with tracebacks.

    batchflow reports what went wrong in its own words, so that log is shown
    only with ``--debug``.
    """
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    # Warnings only even then: the SDKs redact secrets from request logs, but their
    # debug level is more than a user needs to see why a command failed.
    logging.getLogger("azure").setLevel(logging.WARNING if debug else logging.CRITICAL + 1)
