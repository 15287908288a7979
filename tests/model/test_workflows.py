"""The shipped workflows: they validate, plan the tutorial's steps, and their task script counts words right."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batchflow.model.load import load_workflow
from tests.support.project import REPO, Project, sweep
from tests.support.wordcount import expected_output, expected_top_words

WORKFLOWS = REPO / "workflows"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workflows folder as a fresh clone has it: only the files git tracks, nothing made locally."""
    listed = subprocess.run(["git", "ls-files", "-z", "workflows"], cwd=REPO, capture_output=True, check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    root = tmp_path_factory.mktemp("clone")
    for name in filter(None, listed.stdout.decode().split("\0")):
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    return root / "workflows"


@pytest.mark.parametrize("name", ["topwords.yaml", "ffmpeg.yaml"])
def test_shipped_workflows_validate_and_plan_on_a_fresh_clone(project: Project, shipped: Path, name: str) -> None:
    for command in (["validate"], ["plan", "--offline"]):
        result = project.run(*command, str(shipped / name))
        assert result.code == 0, (command, result.err)
        assert "warning" not in result.err


def test_a_glob_that_matches_nothing_says_what_to_do(project: Project, shipped: Path) -> None:
    result = project.run("validate", str(shipped / "ffmpeg.yaml"), "--set", "input_files=nothing/*.mp4")
    assert result.code == 2
    assert "'nothing/*.mp4' matches no file" in result.err
    assert "create the files, or point at others with --set input_files='/path/to/*.mp4'" in result.err


def test_topwords_validates_and_follows_the_tutorial() -> None:
    workflow = load_workflow(WORKFLOWS / "topwords.yaml", environ={}).workflow
    assert [c.name for c in workflow.containers] == ["application", "input", "output"]
    assert [t.id for t in workflow.tasks] == ["topNtask0", "topNtask1", "topNtask2"]
    assert {u.container for u in workflow.uploads} == {"application", "input"}
    assert workflow.pool.id == "PythonTutorialPool" and workflow.job.id == "PythonTutorialJob"
    assert (
        workflow.pool.image.offer == "ubuntu-24_04-lts"
        and workflow.pool.image.node_agent_sku == "batch.node.ubuntu 24.04"
    )
    assert workflow.pool.start_task and "AZ_BATCH_NODE_SHARED_DIR" in workflow.pool.start_task.command_line
    assert workflow.tasks[0].container_urls[0].access == "write"
    assert workflow.download and workflow.download.destination == Path.cwd() / "output" / "topwords"
    assert set(workflow.cleanup.containers.values()) == {"delete"}
    assert (workflow.cleanup.job, workflow.cleanup.pool) == ("ask", "ask")
    assert workflow.variables == {"input_files": "topwords/data/*.txt", "numwords": 3, "output_dir": "output/topwords"}


def test_ffmpeg_validates_and_follows_the_tutorial(shipped: Path) -> None:
    workflow = load_workflow(shipped / "ffmpeg.yaml", environ={}).workflow
    assert [t.id for t in workflow.tasks] == ["Task0", "Task1", "Task2"]
    assert workflow.pool.low_priority_nodes > 0 and workflow.pool.dedicated_nodes == 0
    assert workflow.pool.start_task and workflow.pool.start_task.elevation == "admin"
    assert workflow.cleanup.containers == {"input": "delete", "output": "keep"}
    spaced = next(t for t in workflow.tasks if " " in t.resource_files[0].path)
    assert spaced.output_files[0].pattern.endswith(".mp3") and spaced.output_files[0].upload_on == "success"
    assert f"'{spaced.resource_files[0].path}'" in spaced.command


def test_plan_json_has_the_nine_steps_with_concrete_values(project: Project) -> None:
    result = project.run("plan", str(WORKFLOWS / "topwords.yaml"), "--set", "numwords=7", "--output", "json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert [s["step"] for s in plan["steps"]] == list(range(1, 10))
    uploads = plan["steps"][1]["files"]
    # The plan shows the run's physical container names; step 1 maps them to the declared ones.
    declared = plan["steps"][0]["declared_as"]
    assert sorted(declared.values()) == ["application", "input", "output"]
    assert all(physical.startswith(logical + "-topwords-") for physical, logical in declared.items())
    shown = {(declared[f["container"]], f["blob"]) for f in uploads}
    assert shown >= {("application", "topwords.py"), ("input", "tides.txt")}
    assert all(f["size"] == os.path.getsize(f["path"]) for f in uploads)
    tasks = plan["steps"][4]
    assert tasks["count"] == 3 and "--numwords 7" in tasks["first"][0]["command_line"]
    assert "sig=" not in result.out


def test_plan_text_shows_each_step(project: Project) -> None:
    result = project.run("plan", str(WORKFLOWS / "topwords.yaml"))
    assert result.code == 0
    for number in range(1, 10):
        assert f"[{number}/9]" in result.out
    assert "topNtask0 [run]: /bin/bash -c" in result.out


#: The task template of the plan test's 40-task sweep.
PLANNED = """\
    id: point-{{ value }}
    command: echo {{ value }} > out.txt
    output_files:
      - pattern: out.txt
        path: point-{{ value }}.txt
        container: results
"""


def test_plan_of_a_sweep_shows_its_first_tasks_with_the_runs_containers_and_counts_the_rest(
    project: Project,
) -> None:
    path = project.write(sweep(PLANNED, 40))
    text = project.run("plan", "--offline", str(path))
    assert text.code == 0, text.err
    plan = json.loads(project.run("plan", "--offline", "--output", "json", str(path)).out)
    (container,) = [name for name, logical in plan["steps"][0]["declared_as"].items() if logical == "results"]
    assert container.startswith("results-sweep-")
    shown = [line.strip() for line in text.out.splitlines() if line.strip().startswith("output out.txt")]
    assert shown == [f"output out.txt -> {container}/point-{n}.txt (on success, write SAS)" for n in (0, 1, 2)]
    assert "point-22 [run]" in text.out and "point-23" not in text.out and "... and 17 more" in text.out
    tasks = plan["steps"][4]
    assert (tasks["count"], tasks["run"]) == (40, 40)
    assert [t["id"] for t in tasks["first"]] == ["point-0", "point-1", "point-2"]


def test_templated_rerun_with_new_inputs(project: Project) -> None:
    (project.root / "more").mkdir()
    for name in ("x.txt", "y.txt"):
        (project.root / "more" / name).write_text("alpha beta beta\n")
    workflow = load_workflow(
        WORKFLOWS / "topwords.yaml", assignments=[f"input_files={project.root}/more/*.txt", "numwords=5"], environ={}
    ).workflow
    assert [u.blob_name for u in workflow.uploads if u.container == "input"] == ["x.txt", "y.txt"]
    assert "--numwords 5" in workflow.tasks[0].command


def _topwords_module():
    spec = importlib.util.spec_from_file_location("topwords_task", WORKFLOWS / "topwords" / "topwords.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("sample", sorted((WORKFLOWS / "topwords" / "data").glob("*.txt")), ids=lambda p: p.name)
def test_task_script_agrees_with_an_independent_count(sample: Path) -> None:
    module = _topwords_module()
    text = sample.read_text(encoding="utf-8-sig")
    for count in (1, 3, 10):
        assert module.top_words(text, count) == expected_top_words(sample.read_bytes(), count)


def test_task_script_word_rule_edge_cases() -> None:
    module = _topwords_module()
    data = "\ufeffBatch batch, (Batch) -- it's it’s “quoted” ... end. end"
    # BOM removed, ASCII punctuation stripped at both ends only, case kept, ties by first occurrence
    assert module.top_words(data.lstrip("\ufeff"), 5) == expected_top_words(data.encode(), 5)
    assert module.top_words(data.lstrip("\ufeff"), 2) == [("Batch", 2), ("end", 2)]


def test_task_script_writes_the_tutorial_format(tmp_path: Path) -> None:
    sample = WORKFLOWS / "topwords" / "data" / "tides.txt"
    env = {
        **os.environ,
        "AZ_BATCH_NODE_ID": "node-1",
        "AZ_BATCH_TASK_ID": "topNtask2",
        "AZ_BATCH_JOB_ID": "job",
        "AZ_BATCH_POOL_ID": "pool",
    }
    module = _topwords_module()
    words = module.top_words(sample.read_text(encoding="utf-8-sig"), 3)
    assert module.report(words, env) == expected_output(sample.read_bytes(), 3, "node-1", "topNtask2", "job", "pool")


def test_every_command_has_help() -> None:
    commands = ["validate", "plan", "apply", "status", "logs", "destroy", "local"]
    locals_ = [["local", sub] for sub in ("up", "down", "status", "env")]
    for args in [["--help"]] + [[c, "--help"] for c in commands] + [[*c, "--help"] for c in locals_]:
        run = subprocess.run([sys.executable, "-m", "batchflow", *args], capture_output=True, text=True, cwd=REPO)
        assert run.returncode == 0, run.stderr
        assert "usage: batchflow" in run.stdout
    top = subprocess.run([sys.executable, "-m", "batchflow", "--help"], capture_output=True, text=True, cwd=REPO).stdout
    assert "exit status:" in top and "130" in top


def test_version() -> None:
    run = subprocess.run([sys.executable, "-m", "batchflow", "--version"], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0 and run.stdout.startswith("batchflow ")


def test_validate_summary_line_from_a_real_process() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "batchflow", "validate", "workflows/topwords.yaml"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (
        "workflows/topwords.yaml: valid workflow 'topwords': 3 container(s), 4 file(s) to upload, "
        "pool PythonTutorialPool, job PythonTutorialJob, 3 task(s)"
    )
