"""`batchflow local up|status|env|down` as a user runs them: separate processes, a fresh home."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import azurite_for_tests


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # Azurite is found on PATH, as for a user who installed it with npm -g.
    env["PATH"] = f"{azurite_for_tests().parent}{os.pathsep}{env['PATH']}"
    env.pop("BATCHFLOW_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "batchflow", "local", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
    )


def test_up_status_env_down(tmp_path):
    home = tmp_path / "home"
    try:
        up = _run(home, "up", "--batch-port", "0", "--blob-port", "0", "--json")
        assert up.returncode == 0, up.stderr
        endpoints = json.loads(up.stdout)
        again = _run(home, "up", "--json")  # idempotent: same services, same ports
        assert again.returncode == 0 and json.loads(again.stdout) == endpoints

        status = _run(home, "status")
        assert status.returncode == 0 and "batch" in status.stdout and "azurite" in status.stdout

        env = _run(home, "env")
        assert env.returncode == 0
        lines = env.stdout.splitlines()
        assert f"export AZURE_BATCH_ENDPOINT={endpoints['batch_endpoint']}" in lines
        assert any(line.startswith("export AZURE_BATCH_ACCOUNT_KEY=") for line in lines)
        assert any(line.startswith("export AZURE_STORAGE_CONNECTION_STRING=") for line in lines)
        variables = json.loads(_run(home, "env", "--json").stdout)
        assert variables["AZURE_BATCH_ACCOUNT_NAME"] == endpoints["batch_account_name"]
        assert variables["AZURE_STORAGE_CONNECTION_STRING"] == endpoints["storage_connection_string"]
    finally:
        down = _run(home, "down")
    assert down.returncode == 0 and "batch" in down.stdout
    stopped = _run(home, "status", "--json")
    assert stopped.returncode == 1
    assert json.loads(stopped.stdout)["batch"]["running"] is False
    env = _run(home, "env")
    assert env.returncode == 1 and "batchflow local up" in env.stderr


def test_busy_port_is_a_clear_setup_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(tmp_path / "home", "up", "--batch-port", str(port), "--blob-port", "0")
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "--batch-port" in result.stderr
    assert not (tmp_path / "home" / "run" / "azurite.json").exists()
