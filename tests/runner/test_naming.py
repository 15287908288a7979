"""Physical names: valid for Azure, unique per run, traceable to it, and applied everywhere a container is named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batchflow.model.load import load_workflow
from batchflow.runner.naming import container_name, job_id, physical
from tests.support.project import REPO

CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@pytest.mark.parametrize(
    "logical, run",
    [
        ("output", "topwords-d1082aabd7"),
        ("abc", "My.Workflow_v2-0123456789"),
        ("a" * 63, "topwords-d1082aabd7"),
        ("input", "x" * 60 + "-0123456789"),
        ("in-put", "--weird--Run..name--"),
    ],
)
def test_container_names_are_valid_for_azure_and_unique(logical: str, run: str) -> None:
    name = container_name(logical, run)
    assert CONTAINER.match(name), name
    assert name.startswith(logical[:20])
    assert container_name(logical, run + "x") != name
    assert container_name(logical + "x", run) != name


def test_a_short_name_holds_both_parts_in_full() -> None:
    assert container_name("output", "topwords-d1082aabd7") == "output-topwords-d1082aabd7"
    assert job_id("PythonTutorialJob", "topwords-d1082aabd7") == "PythonTutorialJob-topwords-d1082aabd7"


@pytest.mark.parametrize("declared", ["PythonTutorialJob", "j" * 64])
def test_job_ids_are_valid_batch_ids(declared: str) -> None:
    for run in ("topwords-d1082aabd7", "my.run", "r" * 70):
        assert BATCH_ID.match(job_id(declared, run))
    assert job_id(declared, "a" * 70) != job_id(declared, "a" * 69 + "b")


def test_every_container_reference_is_renamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    workflow = load_workflow(REPO / "workflows" / "topwords.yaml").workflow
    run = "topwords-0123456789"
    renamed = physical(workflow, run)
    names = {c.name for c in renamed.containers}
    assert names == {container_name(c.name, run) for c in workflow.containers}
    referenced = {u.container for u in renamed.uploads}
    referenced |= {r.container for r in renamed.pool.start_task.resource_files}
    for task in renamed.tasks:
        referenced |= {r.container for r in task.resource_files}
        referenced |= {u.container for u in task.container_urls}
        referenced |= {o.container for o in task.outputs}
    referenced |= {renamed.download.container, *renamed.cleanup.containers}
    assert referenced <= names
    assert renamed.job.id == job_id(workflow.job.id, run) and renamed.pool.id == workflow.pool.id
    assert [t.command for t in renamed.tasks] == [t.command for t in workflow.tasks]
