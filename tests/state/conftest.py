"""Helpers for the state tests: real child processes running batchflow code.

The crash and lock tests need a second process that can be killed with
SIGKILL, because only a real process death shows what the kernel releases
and what a half-done write leaves on disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``python -c CODE ARGS...`` with batchflow importable; kill leftovers afterwards.

    With ``wait_for="line"`` the call returns only once the child has printed
    that line, so a test acts when the child has reached a known point. The
    child's stdin is a pipe too, for telling it to go on.
    """
    children: list[subprocess.Popen] = []

    def start(code: str, *args: str, wait_for: str | None = None) -> subprocess.Popen:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        children.append(child)
        if wait_for is not None:
            wait_for_line(child, wait_for)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=10)


def wait_for_line(child: subprocess.Popen, expected: str) -> None:
    """Read the child's stdout until it prints *expected*; fail with its stderr if it exits first."""
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != expected:
        child.kill()
        _, err = child.communicate(timeout=10)
        raise AssertionError(f"child printed {line!r} instead of {expected!r}; stderr:\n{err}")
