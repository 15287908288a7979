"""Cache keys: what changes a result changes the key, and nothing else does."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from batchflow.model.load import load_workflow
from batchflow.runner.cache import KeyMaker
from batchflow.runner.identity import upload_digests
from tests.support.project import REPO


@pytest.fixture
def copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """workflows/topwords.yaml and its files, copied into a temp folder that is the current one."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO / "workflows" / "topwords", tmp_path / "topwords")
    shutil.copy(REPO / "workflows" / "topwords.yaml", tmp_path / "topwords.yaml")
    return tmp_path / "topwords.yaml"


def keys(path: Path, *assignments: str, target: str = "local") -> dict[str, str]:
    workflow = load_workflow(path, assignments=assignments).workflow
    return KeyMaker(workflow, upload_digests(workflow), target).keys()


def test_every_topwords_task_is_cacheable_and_keys_are_stable(copy: Path) -> None:
    first = keys(copy)
    assert sorted(first) == ["topNtask0", "topNtask1", "topNtask2"]
    assert len(set(first.values())) == 3
    assert keys(copy) == first
    # what cannot change a result does not change the key: the download folder, the cleanup
    assert keys(copy, "output_dir=elsewhere") == first
    copy.write_text(copy.read_text().replace("  job: ask\n", "  job: delete\n"))
    assert keys(copy) == first


def test_an_input_changes_only_its_own_task(copy: Path) -> None:
    before = keys(copy)
    (copy.parent / "topwords" / "data" / "tides.txt").write_text("another tide\n")
    after = keys(copy)
    assert [t for t in before if before[t] != after[t]] == ["topNtask2"]


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.write_text(c.read_text().replace("numwords: 3", "numwords: 4")),  # the command
        lambda c: (c.parent / "topwords" / "topwords.py").write_text("print('changed')\n"),  # the start task's file
        lambda c: c.write_text(c.read_text().replace("version: latest", "version: 24.04.1")),  # the image
        lambda c: c.write_text(c.read_text().replace('"{{ file.stem }}_OUTPUT.txt"', '"{{ file.stem }}.out"')),
        lambda c: c.write_text(c.read_text().replace("cp -p topwords.py", "cp topwords.py")),  # the start task
    ],
)
def test_what_can_change_a_result_changes_every_key(copy: Path, change) -> None:  # noqa: ANN001
    before = keys(copy)
    change(copy)
    after = keys(copy)
    assert all(before[t] != after[t] for t in before)


def test_another_target_has_other_keys(copy: Path) -> None:
    assert set(keys(copy).values()).isdisjoint(keys(copy, target="azure").values())


def test_tasks_without_declared_outputs_or_with_dependencies_always_run(copy: Path) -> None:
    text = copy.read_text()
    copy.write_text(text.replace('    outputs:\n      - "{{ file.stem }}_OUTPUT.txt"\n', ""))
    assert keys(copy) == {}
    copy.write_text(text)
    workflow = load_workflow(copy).workflow
    depending = dataclasses.replace(workflow, job=dataclasses.replace(workflow.job, uses_task_dependencies=True))
    assert KeyMaker(depending, upload_digests(workflow), "local").keys() == {}


def test_a_task_reading_what_tasks_write_always_runs(copy: Path) -> None:
    """Its input is another task's output, unknown before the run, so no key can stand for it."""
    text = copy.read_text()
    copy.write_text(text.replace("      - container: input\n        blob:", "      - container: output\n        blob:"))
    assert keys(copy) == {}
