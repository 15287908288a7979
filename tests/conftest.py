"""Session fixtures: Azurite plus the local Batch service on free ports in a temporary BATCHFLOW_HOME.

The services start once per session (about a second each once Azurite is
installed; a first run installs Azurite into ~/.batchflow) and are stopped
afterwards. An autouse check fails any test that leaves a task process of
those services behind: every test must end what it started.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from batchflow.errors import SetupError
from batchflow.local import azurite, services

#: Homes of local services started in this session, for the leak check.
_HOMES: list[Path] = []


@dataclass
class LocalServices:
    """The running local services as tests see them.

    >>> def test_pool(local_services):                          # doctest: +SKIP
    ...     client = local_services.batch_client()
    ...     client.create_pool(...)
    """

    home: Path
    endpoints: services.LocalEndpoints
    batch_port: int
    _azurite: Path = field(repr=False)
    #: Every JSON answer of the Batch service, one line each (see tests/local/wire_models.py).
    wire_record: Path | None = None

    @property
    def batch_endpoint(self) -> str:
        return self.endpoints.batch_endpoint

    @property
    def account_name(self) -> str:
        return self.endpoints.batch_account_name

    @property
    def account_key(self) -> str:
        return self.endpoints.batch_account_key

    @property
    def blob_endpoint(self) -> str:
        return self.endpoints.blob_endpoint

    @property
    def connection_string(self) -> str:
        return self.endpoints.storage_connection_string

    def batch_client(self, key: str | None = None, **kwargs: object):  # noqa: ANN201 - SDK type
        """An azure-batch client with retries off, so faults surface in the test."""
        from azure.batch import BatchClient
        from azure.core.credentials import AzureNamedKeyCredential

        kwargs.setdefault("retry_total", 0)
        credential = AzureNamedKeyCredential(self.account_name, key or self.account_key)
        return BatchClient(self.batch_endpoint, credential, **kwargs)

    def blob_service(self):  # noqa: ANN201 - SDK type
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string, retry_total=0)

    def batch_pid(self) -> int:
        status = services.status(self.home)
        assert status.batch.pid is not None, "the local Batch service is not running"
        return status.batch.pid

    def kill_batch(self) -> None:
        """SIGKILL the Batch service, as a crash would (its task processes survive it)."""
        pid = self.batch_pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while services.status(self.home).batch.pid is not None and time.monotonic() < deadline:
            time.sleep(0.05)

    def start_batch(self) -> None:
        """Start the Batch service again on its old port (after kill_batch)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                with pytest.MonkeyPatch.context() as patch:
                    if self.wire_record is not None:
                        patch.setenv("BATCHFLOW_WIRE_RECORD", str(self.wire_record))
                    services.ensure_running(
                        self.home, batch_port=self.batch_port, azurite_executable=self._azurite, max_nodes=4
                    )
                return
            except SetupError:
                # The old process's port can take a moment to be released after SIGKILL.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def unique(prefix: str) -> str:
    """A fresh resource id, so tests never see each other's pools and jobs."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def azurite_for_tests() -> Path:
    """Azurite from PATH or ~/.batchflow (installed there on first use, as `batchflow local up` would)."""
    return azurite.ensure_executable(Path.home() / ".batchflow")


@pytest.fixture(scope="session")
def local_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    """Azurite + the local Batch service on free loopback ports, in a temporary BATCHFLOW_HOME."""
    home = tmp_path_factory.mktemp("batchflow-home")
    executable = azurite_for_tests()
    recording = home / "wire-record.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        # The Batch service records every JSON answer; the session ends by checking them all.
        patch.setenv("BATCHFLOW_WIRE_RECORD", str(recording))
        endpoints = services.ensure_running(home, batch_port=0, blob_port=0, azurite_executable=executable, max_nodes=4)
    _HOMES.append(home)
    batch_port = int(endpoints.batch_endpoint.rsplit(":", 1)[1])
    try:
        yield LocalServices(home, endpoints, batch_port, executable, recording)
    finally:
        services.stop(home)
    from tests.local.wire_models import check_recording

    problems = check_recording(recording)
    assert not problems, "the local Batch service answered with fields or values Azure does not:\n" + "\n".join(
        problems[:40]
    )


def task_processes(home: Path) -> list[int]:
    """Pids of live processes started as tasks by local services under ``home``."""
    marker = f"AZ_BATCH_NODE_ROOT_DIR={home.resolve()}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read()
            with open(f"/proc/{entry}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and any(item.startswith(marker) for item in environ.split(b"\0")):
            found.append(int(entry))
    return found


@pytest.fixture(autouse=True)
def no_leaked_task_processes() -> Iterator[None]:
    """Fail a test that leaves a task process running (after a short grace period)."""
    yield
    for home in _HOMES:
        deadline = time.monotonic() + 10
        left = task_processes(home)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = task_processes(home)
        assert not left, f"task processes left behind: {left}"
