"""Fixtures for workflow-model tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.project import Project


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Project:
    """A temp folder with data/a.txt and data/b.txt, made the current directory, with no BATCHFLOW_VAR_*."""
    (tmp_path / "data").mkdir()
    for name, text in {"a.txt": "one two two\n", "b.txt": "three three three\n"}.items():
        (tmp_path / "data" / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    # Not the user's home: no running local services, and no task cache from their runs.
    monkeypatch.setenv("BATCHFLOW_HOME", str(tmp_path / "batchflow-home"))
    for key in [k for k in os.environ if k.startswith("BATCHFLOW_VAR_")]:
        monkeypatch.delenv(key)
    return Project(tmp_path, capsys)
