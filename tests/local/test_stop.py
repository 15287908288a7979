"""`batchflow local down` stops both services cleanly and quickly, and keeps what Azurite stored;
a `local up` or `local down` killed at any moment leaves nothing the next command cannot repair."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from batchflow.local import services
from tests.conftest import azurite_for_tests


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _processes_of(home: Path) -> list[int]:
    """Live processes whose command line names ``home``: both services, and a wrapper's children."""
    needle = str(home).encode()
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and needle in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except OSError:
            continue
    return [pid for pid in found if services._start_time(pid) is not None]


def _wait_gone(home: Path, timeout: float = 3.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := _processes_of(home)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _kill_leftovers(home: Path) -> None:
    """After a failed test: end what it left running, so it does not outlive the test."""
    for pid in _processes_of(home):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _cli_environment(home: Path) -> dict[str, str]:
    executable = azurite_for_tests()
    return {
        **os.environ,
        "BATCHFLOW_HOME": str(home),
        "BATCHFLOW_BLOB_PORT": str(_free_port()),
        "BATCHFLOW_BATCH_PORT": str(_free_port()),
        "PATH": f"{executable.parent}{os.pathsep}{os.environ['PATH']}",
    }


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
    assert took < 3, f"local down took {took:.1f}s"  # it took 10.6 s while Azurite lingered after SIGTERM
    assert all(services._start_time(pid) is None for pid in pids if pid), "a service process is still running"

    endpoints = services.ensure_running(home, batch_port=0, blob_port=blob_port, azurite_executable=executable)
    try:
        blobs = BlobServiceClient.from_connection_string(endpoints.storage_connection_string)
        assert blobs.get_blob_client("kept", "a.txt").download_blob().readall() == b"still here"
    finally:
        services.stop(home)


WRAPPER = """#!/usr/bin/env python3
# Runs Azurite as its child, and on SIGINT exits at once without waiting for it.
import os, signal, subprocess, sys
signal.signal(signal.SIGINT, lambda *_: os._exit(0))
sys.exit(subprocess.call([os.environ["REAL_AZURITE_BLOB"], *sys.argv[1:]]))
"""


def test_down_ends_azurite_started_through_a_wrapper_that_exits_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    wrapper = tmp_path / "azurite-blob"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    monkeypatch.setenv("REAL_AZURITE_BLOB", str(azurite_for_tests()))
    try:
        services.ensure_running(home, batch_port=0, blob_port=0, azurite_executable=wrapper)
        assert len(_processes_of(home)) == 3  # the Batch service, the wrapper and Azurite
        started = time.monotonic()
        services.stop(home)
        took = time.monotonic() - started
        assert not _wait_gone(home, timeout=0.5), "Azurite outlived its wrapper"
        assert took < 3, f"local down took {took:.1f}s"
    finally:
        _kill_leftovers(home)


def test_a_local_up_killed_while_azurite_starts_is_repaired_by_the_next(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _cli_environment(home)
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
        _kill_leftovers(home)


def test_a_local_up_killed_before_it_recorded_azurite_is_repaired_by_the_next(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _cli_environment(home)
    # Killed at the narrowest moment: Azurite is started, its record not yet written.
    code = (
        "import os, signal; from batchflow.local import services; "
        "services._write_record = lambda *_: os.kill(os.getpid(), signal.SIGKILL); services.ensure_running()"
    )
    killed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    try:
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        orphan = _processes_of(home)
        assert len(orphan) == 1
        blob_port = int(env["BATCHFLOW_BLOB_PORT"])
        deadline = time.monotonic() + 30
        while not services._answers_http(blob_port) and time.monotonic() < deadline:
            time.sleep(0.05)  # it takes the port, with no record saying whose it is

        again = subprocess.run(
            [sys.executable, "-m", "batchflow", "local", "up"], env=env, capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 0, again.stderr
        status = services.status(home)
        assert status.endpoints is not None and status.endpoints.blob_endpoint.endswith(
            f":{blob_port}/devstoreaccount1"
        )
        assert sorted(_processes_of(home)) == sorted([status.batch.pid, status.azurite.pid])
        assert orphan[0] not in _processes_of(home)
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "batchflow", "local", "down"], env=env, capture_output=True, text=True, timeout=60
        )
        left = _wait_gone(home)
        _kill_leftovers(home)
    assert down.returncode == 0 and not left, (down.stdout, down.stderr, left)


def test_a_local_down_killed_midway_is_repaired_by_the_next_command(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _cli_environment(home)
    subprocess.run([sys.executable, "-m", "batchflow", "local", "up"], env=env, check=True, capture_output=True)
    # Killed right after it asked Azurite to stop: Azurite closes its port, and its process lingers.
    code = (
        "import os, signal\n"
        "from batchflow.local import services\n"
        "real = services._terminate\n"
        "def killed(pid, stop_signal=signal.SIGTERM, *args, **options):\n"
        "    if stop_signal != signal.SIGINT:\n"
        "        return real(pid, stop_signal, *args, **options)\n"
        "    os.killpg(pid, stop_signal)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "services._terminate = killed\n"
        "services.stop()\n"
    )
    killed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    try:
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert len(_processes_of(home)) == 1  # Azurite, closed and not exiting

        started = time.monotonic()
        up = subprocess.run(
            [sys.executable, "-m", "batchflow", "local", "up"], env=env, capture_output=True, text=True, timeout=120
        )
        took = time.monotonic() - started
        assert up.returncode == 0, up.stderr
        assert took < 15, f"local up took {took:.0f}s"  # it waited 60 s for the closed Azurite to answer
        status = services.status(home)
        assert status.endpoints is not None
        assert sorted(_processes_of(home)) == sorted([status.batch.pid, status.azurite.pid])
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "batchflow", "local", "down"], env=env, capture_output=True, text=True, timeout=90
        )
        left = _wait_gone(home)
        _kill_leftovers(home)
    assert down.returncode == 0 and not left, (down.stdout, down.stderr, left)
