"""Installing Azurite survives kills and concurrent installs, and repairs a half-written install.

npm itself is replaced by a stand-in on PATH that installs slowly (so a test can
kill the install midway) and logs each run; a real install takes half a minute
and needs the registry. The real install is what scripts/bootstrap runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchflow.local import azurite

FAKE_NPM = r"""#!/usr/bin/env python3
import os, sys, time
from pathlib import Path
if "--prefix" in sys.argv:
    # Like npm, drop the folder from the command line (npm rewrites its process title).
    os.environ["FAKE_NPM_PREFIX"] = sys.argv[sys.argv.index("--prefix") + 1]
    os.execv(sys.executable, [sys.executable, __file__, "install", "azurite@x"])
prefix = Path(os.environ["FAKE_NPM_PREFIX"])
with open(os.environ["FAKE_NPM_LOG"], "a") as log:
    log.write(f"{os.getpid()} {prefix}\n")
package = prefix / "node_modules" / "azurite"
package.mkdir(parents=True, exist_ok=True)
(package / "package.json").write_text('{"version": "x"}')
time.sleep(float(os.environ.get("FAKE_NPM_SECONDS", "0")))
bin_dir = prefix / "node_modules" / ".bin"
bin_dir.mkdir(parents=True, exist_ok=True)
(bin_dir / "azurite-blob").write_text("#!/bin/sh\n")
(bin_dir / "azurite-blob").chmod(0o755)
"""


@pytest.fixture
def fake_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(FAKE_NPM)
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    log = tmp_path / "npm.log"
    log.touch()
    monkeypatch.setenv("FAKE_NPM_LOG", str(log))
    # azurite-blob on the real PATH would be used instead of an install
    monkeypatch.setattr(azurite.shutil, "which", _which_without_azurite)
    return log


_which = shutil.which


def _which_without_azurite(name: str) -> str | None:
    return None if name == "azurite-blob" else _which(name)


def install_in_subprocess(home: Path, seconds: float) -> subprocess.Popen[str]:
    code = (
        "import shutil, sys; from pathlib import Path; from batchflow.local import azurite; "
        "real = shutil.which; azurite.shutil.which = lambda n: None if n == 'azurite-blob' else real(n); "
        f"print(azurite.ensure_executable(Path({str(home)!r})))"
    )
    env = {**os.environ, "FAKE_NPM_SECONDS": str(seconds)}
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_an_install_killed_midway_is_finished_by_the_next_command(fake_npm: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = install_in_subprocess(home, seconds=30)
    deadline = time.monotonic() + 20
    while not fake_npm.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    orphan = int(fake_npm.read_text().split()[0])
    assert alive(orphan)  # npm outlives the process that started it, as in the report
    assert azurite.find_executable(home) is None  # a half-done install is never taken for a finished one

    executable = azurite.ensure_executable(home)
    assert executable == home / "azurite" / "node_modules" / ".bin" / "azurite-blob" and executable.exists()
    assert (home / "azurite" / azurite.MARKER).read_text().strip() == azurite.AZURITE_VERSION
    assert not list(home.glob("azurite.staging-*"))
    time.sleep(0.2)
    assert not alive(orphan), "the orphaned npm is still running"


def test_two_installs_at_once_run_npm_once(fake_npm: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    processes = [install_in_subprocess(home, seconds=1.5) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    assert {out.strip() for out, _ in outputs} == {str(home / "azurite" / "node_modules" / ".bin" / "azurite-blob")}
    assert len(fake_npm.read_text().splitlines()) == 1
    assert any("waiting for another batchflow process" in err for _, err in outputs)


def test_a_half_written_install_folder_is_replaced(fake_npm: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    broken = home / "azurite" / "node_modules" / "azurite"
    broken.mkdir(parents=True)
    (broken / "package.json").write_text("{}")  # npm stopped here, as in the reported ENOENT
    executable = azurite.ensure_executable(home)
    assert executable.exists() and (home / "azurite" / azurite.MARKER).exists()
    assert len(fake_npm.read_text().splitlines()) == 1


# A real npm against a registry on loopback that serves a tiny package named
# azurite: npm's own behaviour (its process title, its child processes, the
# .bin link) is what the install relies on, and a first request for the
# tarball can be held back to keep npm busy while its installer is killed.


def _fake_azurite_tarball() -> bytes:
    import io
    import json
    import tarfile

    files = {
        "package/package.json": json.dumps(
            {"name": "azurite", "version": azurite.AZURITE_VERSION, "bin": {"azurite-blob": "bin/azurite-blob"}}
        ).encode(),
        "package/bin/azurite-blob": b"#!/bin/sh\necho fake azurite\n",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o755
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture
def local_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """npm pointed at a loopback registry; yields (held, requests): ``held`` keeps the first tarball
    request waiting until it is set; ``requests`` lists the tarball requests received."""
    import base64
    import hashlib
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    if not shutil.which("npm") or not shutil.which("node"):
        pytest.skip("npm is not installed")
    tarball = _fake_azurite_tarball()
    held, requests = threading.Event(), []

    class Registry(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path.endswith(".tgz"):
                requests.append(self.path)
                if len(requests) == 1:
                    held.wait(60)
                body, kind = tarball, "application/octet-stream"
            elif self.path.strip("/") == "azurite":
                version = {
                    "name": "azurite",
                    "version": azurite.AZURITE_VERSION,
                    "bin": {"azurite-blob": "bin/azurite-blob"},
                    "dist": {
                        "tarball": f"{base}/azurite/-/azurite-{azurite.AZURITE_VERSION}.tgz",
                        "shasum": hashlib.sha1(tarball).hexdigest(),
                        "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode(),
                    },
                }
                body = json.dumps(
                    {
                        "name": "azurite",
                        "dist-tags": {"latest": azurite.AZURITE_VERSION},
                        "versions": {azurite.AZURITE_VERSION: version},
                    }
                ).encode()
                kind = "application/json"
            else:
                self.send_error(404)
                return
            try:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the npm that asked was killed

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{server.server_address[1]}/")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))  # not the user's cache
    monkeypatch.setenv("npm_config_update_notifier", "false")
    monkeypatch.setattr(azurite.shutil, "which", _which_without_azurite)
    try:
        yield held, requests
    finally:
        for pid in _processes_with_environment(f"npm_config_cache={tmp_path / 'npm-cache'}"):
            os.kill(pid, signal.SIGKILL)  # an npm a failed test left
        held.set()
        server.shutdown()
        server.server_close()


def _processes_with_environment(entry: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and entry.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(int(pid))
        except OSError:
            continue
    return [pid for pid in found if alive(pid)]


def test_a_real_npm_install_killed_midway_is_finished_by_the_next_command(local_registry, tmp_path: Path) -> None:
    held, requests = local_registry
    home = tmp_path / "home"
    first = install_in_subprocess(home, seconds=0)
    deadline = time.monotonic() + 30
    while not requests and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert requests, first.communicate()  # npm is downloading, and waits for the tarball
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    npm_cache = f"npm_config_cache={os.environ['npm_config_cache']}"
    orphans = _processes_with_environment(npm_cache)
    assert orphans, "npm did not outlive the process that started it"
    assert azurite.find_executable(home) is None

    executable = azurite.ensure_executable(home)  # the first tarball request is still held: npm asks again
    assert subprocess.run([executable], capture_output=True, text=True).stdout == "fake azurite\n"
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in orphans) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in orphans if alive(pid)], "the orphaned npm is still running"
    assert (home / "azurite" / azurite.MARKER).read_text().strip() == azurite.AZURITE_VERSION
    assert not list(home.glob("azurite.staging-*"))
