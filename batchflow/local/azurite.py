"""Find or install Azurite (npm ``azurite``, pinned) and launch its blob service on loopback.

Azurite is found on ``PATH`` (``azurite-blob``) or in ``BATCHFLOW_HOME/azurite``;
otherwise it is installed there with npm on first use, telling the user
what is happening. It is started with ``--skipApiVersionCheck`` on purpose:
current azure-storage-blob releases send a storage API version newer than
Azurite knows, and the point of the local services is that programs written
with the Azure SDKs run unchanged, whatever SDK version they use.

This module and ``services.py`` are the only places that run Node.js tools;
their failures become :class:`~batchflow.errors.SetupError` (exit status 2).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import filelock

from batchflow.errors import SetupError
from batchflow.local.account import HOST, batchflow_home

#: The Azurite release batchflow installs and is tested with.
AZURITE_VERSION = "3.37.0"
_NODE_HINT = (
    "Azurite (the local Storage emulator) needs Node.js 18 or newer with npm. "
    "Install them (for example `apt-get install nodejs npm`, `brew install node`, or from https://nodejs.org) and run the command again."
)


#: Written into an install folder as its last step; without it the folder is not a finished install.
MARKER = ".batchflow-installed"
#: How long a second process waits for another one's install before giving up.
INSTALL_WAIT_SECONDS = 900


def install_dir(home: Path) -> Path:
    return home / "azurite"


def _is_installed(folder: Path) -> bool:
    """A finished install of the pinned version: the marker says so and the executable is there."""
    try:
        marker = (folder / MARKER).read_text().strip()
    except OSError:
        return False
    return marker == AZURITE_VERSION and (folder / "node_modules" / ".bin" / "azurite-blob").exists()


def find_executable(home: Path) -> Path | None:
    """``azurite-blob`` from PATH, else from a finished install under ``home``, else None."""
    on_path = shutil.which("azurite-blob")
    if on_path:
        return Path(on_path)
    target = install_dir(home)
    return target / "node_modules" / ".bin" / "azurite-blob" if _is_installed(target) else None


def install(home: Path) -> Path:
    """Install Azurite into ``home/azurite`` with npm, safely against kills and other installs.

    npm writes into a fresh staging folder, which is renamed to ``azurite``
    only when npm has finished and the marker is written, so ``azurite`` is
    either absent or complete. A file lock (released by the kernel however
    its holder dies) keeps a second process from installing at the same
    time; it waits, then finds the install done. Staging folders and npm
    processes left by a killed install are removed before a new one starts,
    and a folder without the marker (half-written by an older batchflow, or
    not ours) is replaced.
    """
    if not shutil.which("node") or not shutil.which("npm"):
        raise SetupError(_NODE_HINT)
    home.mkdir(parents=True, exist_ok=True)
    target = install_dir(home)
    lock = filelock.FileLock(str(home / "azurite.lock"))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        print(
            "batchflow: waiting for another batchflow process that is installing Azurite", file=sys.stderr, flush=True
        )
        try:
            lock.acquire(timeout=INSTALL_WAIT_SECONDS)
        except filelock.Timeout:
            raise SetupError(
                f"another process has been installing Azurite into {target} for {INSTALL_WAIT_SECONDS // 60} minutes; "
                "stop it, or remove the folder, and run the command again"
            ) from None
    try:
        if _is_installed(target):
            return target / "node_modules" / ".bin" / "azurite-blob"
        _remove_leftovers(home)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=home))
        _npm_install(staging)
        (staging / MARKER).write_text(AZURITE_VERSION + "\n")
        if target.exists():
            # Half-written or foreign: set it aside first, so the rename below is atomic.
            aside = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=home))
            target.rename(aside / "old")
        staging.rename(target)
        _remove_leftovers(home)
        return target / "node_modules" / ".bin" / "azurite-blob"
    finally:
        lock.release()


_STAGING_PREFIX = "azurite.staging-"


def _remove_leftovers(home: Path) -> None:
    """Remove the staging folders of killed installs, and end any npm still writing into one."""
    for folder in home.glob(_STAGING_PREFIX + "*"):
        _kill_processes_using(folder)
        shutil.rmtree(folder, ignore_errors=True)


#: Set in npm's environment to its staging folder. npm rewrites its command line
#: (to ``npm install azurite@…``, without the folder), but not its environment,
#: which its own child processes inherit too.
_STAGING_ENV = "BATCHFLOW_AZURITE_STAGING"


def _kill_processes_using(folder: Path) -> None:
    """SIGKILL every process that an install into ``folder`` started (an npm orphaned by a kill)."""
    entry_wanted = f"{_STAGING_ENV}={folder}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry_wanted in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue


def _npm_install(staging: Path) -> None:
    print(
        f"batchflow: installing Azurite {AZURITE_VERSION} (Microsoft's local Storage emulator) with npm into "
        f"{staging.parent / 'azurite'}; this happens once and takes about half a minute",
        file=sys.stderr,
        flush=True,
    )
    command = [
        "npm",
        "install",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        "--prefix",
        str(staging),
        f"azurite@{AZURITE_VERSION}",
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=600, env={**os.environ, _STAGING_ENV: str(staging)}
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SetupError(f"could not run npm to install Azurite: {error}") from error
    executable = staging / "node_modules" / ".bin" / "azurite-blob"
    if result.returncode != 0 or not executable.exists():
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise SetupError(
            f"npm could not install azurite@{AZURITE_VERSION} into {staging.parent / 'azurite'}:\n  "
            + "\n  ".join(detail)
        )


def ensure_executable(home: Path) -> Path:
    """Azurite's blob service executable, installing Azurite first if needed."""
    return find_executable(home) or install(home)


def command(executable: Path, home: Path, port: int) -> list[str]:
    """The command line that serves blobs on 127.0.0.1:``port`` with data in ``home/azurite-data``."""
    data = home / "azurite-data"
    data.mkdir(parents=True, exist_ok=True)
    return [
        str(executable),
        "--silent",
        "--skipApiVersionCheck",
        "--location",
        str(data),
        "--blobHost",
        HOST,
        "--blobPort",
        str(port),
    ]


def main(argv: list[str] | None = None) -> int:
    """``python -m batchflow.local.azurite --install``: pre-install Azurite (used by CI bootstrap)."""
    parser = argparse.ArgumentParser(prog="python -m batchflow.local.azurite")
    parser.add_argument(
        "--install", action="store_true", help="install Azurite under BATCHFLOW_HOME unless it is on PATH"
    )
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args(argv)
    home = args.home or batchflow_home()
    try:
        executable = ensure_executable(home) if args.install else find_executable(home)
    except SetupError as error:
        print(f"batchflow: error: {error.message}", file=sys.stderr)
        return error.exit_code
    print(executable or "Azurite is not installed")
    return 0 if executable else 1


if __name__ == "__main__":
    sys.exit(main())
