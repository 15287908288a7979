"""Which run a workflow invocation belongs to, and where that run's state lives.

A run is identified by the workflow's name and a fingerprint of its rendered
definition: what it uploads (by content), the pool, the job, the tasks and
the download, and of the target it runs on (a run on ``local`` and one on
``azure`` are different runs, with different state). Fields that cannot change the result (the description, the
monitor's timing, the cleanup policy, the variables themselves) are left
out, so editing them resumes the same run. ``--run NAME`` overrides this.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

from batchflow.cloud.storage import file_md5
from batchflow.model import spec
from batchflow.model.spec import Workflow

#: Top-level fields of Workflow.to_dict() that do not change what a run produces.
IGNORED = ("description", "path", "variables", "monitor", "cleanup", "uploads", "cache")


def _canonical(value: Any) -> Any:
    """A dataclass, path or duration of the workflow as plain data, one level deep, for ``json.dumps``.

    A dataclass is its attribute dict: it holds exactly its fields (none of the classes in
    ``spec`` has slots or caches anything on its instances), and the keys are sorted anyway.
    """
    if is_dataclass(value):
        return value.__dict__
    return spec.plain_part(value)


def upload_digests(workflow: Workflow) -> dict[Path, bytes]:
    """The MD5 of every file to upload, computed once per apply."""
    return {u.local_path: file_md5(u.local_path) for u in workflow.uploads}


def fingerprint(workflow: Workflow, digests: dict[Path, bytes], target: str) -> str:
    """A hex digest of what defines the run's results, and where it runs.

    The digest is of the canonical JSON (sorted keys, no spaces) of
    ``workflow.to_dict()`` without the :data:`IGNORED` fields, plus the target
    and the uploads' contents. It names the run, so it must never change for
    the same definition: a resumed run is found by it.
    """
    definition: dict[str, Any] = {
        name: getattr(workflow, name) for name in spec.field_names(Workflow) if name not in IGNORED
    }
    definition["target"] = target
    definition["uploads"] = sorted([u.container, u.blob_name, digests[u.local_path].hex()] for u in workflow.uploads)
    # The encoder turns each dataclass, path and duration into plain data as it meets it, which
    # gives the text to_dict() would and costs a fraction of making it: 100,000 tasks are encoded here.
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=_canonical, check_circular=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def run_name(workflow: Workflow, digest: str, explicit: str | None = None) -> str:
    """``<workflow>-<first 10 hex digits>``, or the name given with ``--run``."""
    return explicit or f"{workflow.name}-{digest[:10]}"


def run_directory(state_dir: Path, run: str) -> Path:
    return state_dir / run
