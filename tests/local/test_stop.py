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


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_local_up_killed_while_azurite_starts_is_repaired_by_the_next(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    home = tmp_path / "home"
    executable = azurite_for_tests()
    env = {
        **os.environ,
        "BATCHFLOW_HOME": str(home),
        "BATCHFLOW_BLOB_PORT": str(_free_port()),
        "BATCHFLOW_BATCH_PORT": str(_free_port()),
        "PATH": f"{executable.parent}{os.pathsep}{os.environ['PATH']}",
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "batchflow", "local", "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    data = str(home / "azurite-data").encode()
    deadline = time.monotonic() + 30
    started = None
    while started is None and time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and data in (entry / "cmdline").read_bytes():
                    started = int(entry.name)
            except OSError:
                continue
        time.sleep(0.01)
    assert started, "Azurite never started"
    up.send_signal(signal.SIGKILL)  # Azurite runs on, not answering yet, and nobody waits for it
    up.wait()
    try:
        again = subprocess.run(
            [sys.executable, "-m", "batchflow", "local", "up"], env=env, capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 0, again.stderr
        assert services.status(home).azurite.pid == started  # the orphan was adopted, not fought over its port
        assert services.status(home).endpoints is not None
    finally:
        services.stop(home)
