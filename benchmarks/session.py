"""The local services a benchmark runs ``batchflow apply`` against: started on free ports in a scratch home.

Imported by the benchmark scripts next to it (``python benchmarks/<name>.py`` puts
this folder on the path).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from batchflow.local import azurite, services


def start_local_services(scratch: Path, max_nodes: int) -> tuple[Path, Any, dict[str, str]]:
    """Start Azurite and the local Batch service in ``scratch/home``; return the home, the endpoints and
    the environment in which ``batchflow`` uses them (nothing from the caller's BATCHFLOW_ or AZURE_
    variables). Stop them with ``services.stop(home)``."""
    home = scratch / "home"
    endpoints = services.ensure_running(
        home,
        batch_port=0,
        blob_port=0,
        azurite_executable=azurite.ensure_executable(Path.home() / ".batchflow"),
        max_nodes=max_nodes,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHFLOW_", "AZURE_"))}
    env.update(
        BATCHFLOW_HOME=str(home),
        BATCHFLOW_BATCH_PORT=endpoints.batch_endpoint.rsplit(":", 1)[1],
        BATCHFLOW_BLOB_PORT=endpoints.blob_endpoint.split(":")[2].split("/")[0],
    )
    return home, endpoints, env


def noop_sweep(name: str, count: int, nodes: int, *, cleanup: str, timeout: str) -> str:
    """A workflow of ``count`` no-op tasks (``true``) on a pool of ``nodes`` dedicated local nodes; the job and
    pool are deleted or kept at the end as ``cleanup`` says (``delete`` or ``keep``)."""
    return f"""\
name: {name}
pool:
  id: {name}-pool
  vm_size: standard_d2s_v3
  image: {{publisher: canonical, offer: ubuntu-24_04-lts, sku: server, node_agent_sku: batch.node.ubuntu 24.04}}
  nodes: {{dedicated: {nodes}}}
job:
  id: {name}-job
tasks:
  for_each:
    range: {{from: 1, to: {count}}}
  template:
    id: t{{{{ value }}}}
    command: "true"
cleanup: {{job: {cleanup}, pool: {cleanup}}}
monitor: {{timeout: {timeout}}}
"""
