"""``batchflow local up|down|status|env``: run the local services (Azurite + the local Batch service)."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from batchflow.errors import BatchflowError
from batchflow.local import account, services


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``local`` command group."""
    group = subparsers.add_parser(
        "local",
        help="run Azure Batch and Blob Storage look-alikes on this machine",
        description=(
            "Start, stop and inspect the local services: Azurite (blob storage) and batchflow's "
            "Batch-REST-compatible service. Both listen on 127.0.0.1 only and keep their data under "
            "BATCHFLOW_HOME (default ~/.batchflow)."
        ),
    )
    group.add_argument(
        "--home", type=Path, default=None, help="BATCHFLOW_HOME to use (default: $BATCHFLOW_HOME or ~/.batchflow)"
    )
    commands = group.add_subparsers(dest="local_command", metavar="COMMAND", required=True)

    up = commands.add_parser("up", help="start both services in the background (idempotent) and print the endpoints")
    up.add_argument(
        "--batch-port",
        type=int,
        default=None,
        help=f"port of the Batch service (default $BATCHFLOW_BATCH_PORT or {account.DEFAULT_BATCH_PORT}; 0 = any free port)",
    )
    up.add_argument(
        "--blob-port",
        type=int,
        default=None,
        help=f"port of Azurite's blob service (default $BATCHFLOW_BLOB_PORT or {account.DEFAULT_BLOB_PORT}; 0 = any free port)",
    )
    up.add_argument(
        "--max-nodes",
        type=int,
        default=None,
        help="nodes per pool at most (default $BATCHFLOW_LOCAL_MAX_NODES or the number of CPUs)",
    )
    up.add_argument("--json", action="store_true", help="print the endpoints as JSON")
    up.set_defaults(func=up_command)

    down = commands.add_parser(
        "down", help="stop both services (running tasks are ended and requeued at the next start)"
    )
    down.set_defaults(func=down_command)

    status = commands.add_parser("status", help="show whether the services run; exit status 0 only if both do")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=status_command)

    env = commands.add_parser("env", help="print export lines that point the Azure SDKs at the local services")
    env.add_argument("--json", action="store_true", help="print the variables as a JSON object")
    env.set_defaults(func=env_command)


def _print_endpoints(endpoints: services.LocalEndpoints) -> None:
    print(f"Batch:  {endpoints.batch_endpoint}  (account {endpoints.batch_account_name})")
    print(f"Blob:   {endpoints.blob_endpoint}  (account {endpoints.storage_account_name})")
    print('Run `eval "$(batchflow local env)"` to point programs that use the Azure SDKs at them.')


def up_command(args: argparse.Namespace) -> int:
    endpoints = services.ensure_running(
        args.home, batch_port=args.batch_port, blob_port=args.blob_port, max_nodes=args.max_nodes
    )
    if args.json:
        print(json.dumps(endpoints.__dict__, indent=2))
    else:
        _print_endpoints(endpoints)
    return 0


def down_command(args: argparse.Namespace) -> int:
    stopped = services.stop(args.home)
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def status_command(args: argparse.Namespace) -> int:
    current = services.status(args.home)
    if args.json:
        print(json.dumps(current.to_dict(), indent=2))
    else:
        print(f"home: {current.home}")
        for state in (current.batch, current.azurite):
            where = f"127.0.0.1:{state.port}, pid {state.pid}" if state.running else "stopped"
            print(f"{state.name:8} {where}  (log {state.log})")
    return 0 if current.endpoints is not None else 1


def env_command(args: argparse.Namespace) -> int:
    current = services.status(args.home)
    if current.endpoints is None:
        raise BatchflowError("the local services are not running; start them with `batchflow local up`")
    variables = current.endpoints.environment()
    if args.json:
        print(json.dumps(variables, indent=2))
    else:
        for name, value in variables.items():
            print(f"export {name}={shlex.quote(value)}")
    return 0
