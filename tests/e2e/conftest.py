"""Fixtures for end-to-end tests: the real command line against the session's local services."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import Batchflow


@pytest.fixture
def batchflow(local_services, tmp_path: Path) -> Batchflow:  # noqa: ANN001 - fixture from tests/conftest.py
    blob_port = int(local_services.blob_endpoint.split(":")[2].split("/")[0])
    return Batchflow(tmp_path, local_services.home, local_services.batch_port, blob_port)
