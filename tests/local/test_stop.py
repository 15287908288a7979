"""`batchflow local down` stops both services cleanly and quickly, and keeps what Azurite stored."""

from __future__ import annotations

import time
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from batchflow.local import services
from tests.conftest import azurite_for_tests


def test_down_is_quick_leaves_no_process_and_keeps_the_blobs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    executable = azurite_for_tests()
    endpoints = services.ensure_running(home, batch_port=0, blob_port=0, azurite_executable=executable)
    blob_port = int(endpoints.blob_endpoint.split(":")[2].split("/")[0])
    pids = [services.status(home).batch.pid, services.status(home).azurite.pid]
    blobs = BlobServiceClient.from_connection_string(endpoints.storage_connection_string)
    blobs.create_container("kept").upload_blob("a.txt", b"still here")

    started = time.monotonic()
    assert services.stop(home) == ["batch", "azurite"]
    took = time.monotonic() - started
    assert took < 3, f"local down took {took:.1f}s"  # it took 10.6 s while Azurite waited out SIGTERM
    assert all(services._start_time(pid) is None for pid in pids if pid), "a service process is still running"

    endpoints = services.ensure_running(home, batch_port=0, blob_port=blob_port, azurite_executable=executable)
    try:
        blobs = BlobServiceClient.from_connection_string(endpoints.storage_connection_string)
        assert blobs.get_blob_client("kept", "a.txt").download_blob().readall() == b"still here"
    finally:
        services.stop(home)
