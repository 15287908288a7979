"""Headless Chromium (Debian's ``chromium`` package) for looking at the run report as a person would."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

#: Flags for a sandboxed machine with no network: no first-run work, no background connections.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, (
        "Debian's chromium is needed for the report tests: scripts/bootstrap installs it (apt-get install chromium)"
    )
    return found


def _run(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )


def dom(page: Path) -> str:
    """The page's DOM after its scripts ran."""
    return _run(page, "--virtual-time-budget=5000", "--dump-dom").stdout


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 1600) -> Path:
    _run(page, f"--window-size={width},{height}", "--virtual-time-budget=5000", f"--screenshot={png}")
    assert png.is_file() and png.stat().st_size > 10_000, "the screenshot is empty"
    return png
