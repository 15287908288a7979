"""The service's settings, fixed at start: where it lives, who it is, what it may use."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Config:
    """Settings of one running local Batch service.

    ``home`` is ``BATCHFLOW_HOME``; the service keeps ``home/batch/state.sqlite``
    and the node folders under ``home/batch/nodes``. ``blob_endpoint`` is the
    Azurite blob endpoint that plays the account's linked ("auto") storage.
    """

    home: Path
    endpoint: str
    account_name: str
    account_key: str
    blob_endpoint: str | None
    storage_account_name: str
    storage_account_key: str
    max_nodes: int

    @property
    def state_path(self) -> Path:
        return self.home / "batch" / "state.sqlite"

    @property
    def nodes_dir(self) -> Path:
        return self.home / "batch" / "nodes"

    @property
    def trash_dir(self) -> Path:
        """Where deleted folders go at once, to be removed in the background (see Service._discard)."""
        return self.home / "batch" / "trash"

    @functools.cached_property
    def nodes_text(self) -> str:
        """:attr:`nodes_dir` as text, for the paths built once or twice per task (pathlib's joins cost more
        than the rest of starting a no-op task)."""
        return str(self.nodes_dir)
