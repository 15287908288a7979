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
import shutil
import subprocess
import sys
from pathlib import Path

from batchflow.errors import SetupError
from batchflow.local.account import HOST, batchflow_home

#: The Azurite release batchflow installs and is tested with.
AZURITE_VERSION = "3.37.0"
_NODE_HINT = (
    "Azurite (the local Storage emulator) needs Node.js 18 or newer with npm. "
    "Install them (for example `apt-get install nodejs npm`, `brew install node`, or from https://nodejs.org) and run the command again."
)


def install_dir(home: Path) -> Path:
    return home / "azurite"


def find_executable(home: Path) -> Path | None:
    """``azurite-blob`` from PATH, else from the copy installed under ``home``, else None."""
    on_path = shutil.which("azurite-blob")
    if on_path:
        return Path(on_path)
    local = install_dir(home) / "node_modules" / ".bin" / "azurite-blob"
    return local if local.exists() else None


def install(home: Path) -> Path:
    """Install Azurite into ``home/azurite`` with npm and return its ``azurite-blob``."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise SetupError(_NODE_HINT)
    target = install_dir(home)
    target.mkdir(parents=True, exist_ok=True)
    print(
        f"batchflow: installing Azurite {AZURITE_VERSION} (Microsoft's local Storage emulator) with npm into {target}; "
        "this happens once and takes about half a minute",
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
        str(target),
        f"azurite@{AZURITE_VERSION}",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SetupError(f"could not run npm to install Azurite: {error}") from error
    executable = target / "node_modules" / ".bin" / "azurite-blob"
    if result.returncode != 0 or not executable.exists():
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise SetupError(f"npm could not install azurite@{AZURITE_VERSION} into {target}:\n  " + "\n  ".join(detail))
    return executable


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
