"""``python -m batchflow.local.emulator``: run the local Batch service in the foreground.

It serves until SIGINT or SIGTERM, then kills every task process tree and
exits. A port that is already taken ends it with exit status 2 and a
message saying which port and how to choose another.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from batchflow.local import account
from batchflow.local.emulator.config import Config
from batchflow.local.emulator.faults import Faults
from batchflow.local.emulator.scheduler import Service
from batchflow.local.emulator.server import EmulatorServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m batchflow.local.emulator", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--home", type=Path, default=None, help="BATCHFLOW_HOME (default: $BATCHFLOW_HOME or ~/.batchflow)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port on 127.0.0.1 (default {account.DEFAULT_BATCH_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--blob-endpoint", default=None, help="Azurite blob endpoint used as the account's linked storage"
    )
    parser.add_argument(
        "--max-nodes",
        type=int,
        default=None,
        help="nodes per pool at most (default: BATCHFLOW_LOCAL_MAX_NODES or the CPU count)",
    )
    parser.add_argument("--fault-seed", type=int, default=None)
    parser.add_argument("--fault-http-rate", type=float, default=None, help="fraction of requests answered 500/503/429")
    parser.add_argument(
        "--fault-preempt-rate", type=float, default=None, help="chance a task start on a low-priority node preempts it"
    )
    parser.add_argument("--fault-node-start-delay", type=float, default=None, help="seconds each node spends starting")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser.parse_args(argv)


def build_faults(args: argparse.Namespace) -> Faults:
    faults = Faults.from_env()
    overrides = {
        "seed": args.fault_seed,
        "http_rate": args.fault_http_rate,
        "preempt_rate": args.fault_preempt_rate,
        "node_start_delay": args.fault_node_start_delay,
    }
    values = {
        name: getattr(faults, name)
        for name in ("seed", "http_rate", "preempt_rate", "preempt_after", "preempt_downtime", "node_start_delay")
    }
    values.update({name: value for name, value in overrides.items() if value is not None})
    return Faults(**values)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    home = (args.home or account.batchflow_home()).expanduser().resolve()
    port = (
        args.port
        if args.port is not None
        else account.configured_port("BATCHFLOW_BATCH_PORT", account.DEFAULT_BATCH_PORT)
    )
    max_nodes = args.max_nodes or int(os.environ.get("BATCHFLOW_LOCAL_MAX_NODES") or 0) or (os.cpu_count() or 1)
    try:
        faults = build_faults(args)
    except ValueError as error:
        print(f"local batch: {error}", file=sys.stderr)
        return 2
    config = Config(
        home=home,
        endpoint="",  # set once the real port is known
        account_name=account.BATCH_ACCOUNT_NAME,
        account_key=account.BATCH_ACCOUNT_KEY,
        blob_endpoint=args.blob_endpoint,
        storage_account_name=account.STORAGE_ACCOUNT_NAME,
        storage_account_key=account.STORAGE_ACCOUNT_KEY,
        max_nodes=max_nodes,
    )
    server = EmulatorServer(port, verbose=args.verbose)
    try:
        server.bind()
    except OSError as error:
        print(
            f"local batch: cannot listen on 127.0.0.1:{port} ({error.strerror or error}); "
            "another program uses it: choose another port with --port or BATCHFLOW_BATCH_PORT",
            file=sys.stderr,
        )
        return 2
    config = replace(config, endpoint=account.batch_endpoint(server.port))
    server.start(Service(config, faults))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    caps = f", at most {max_nodes} nodes per pool"
    print(
        f"local batch: listening on {config.endpoint} (account {config.account_name}, state {config.state_path}{caps})",
        flush=True,
    )
    if faults.active:
        print(f"local batch: fault simulation on: {faults}", flush=True)
    stop.wait()
    server.stop()
    print("local batch: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
