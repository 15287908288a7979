"""Template variables: four sources in a documented order, types kept, unused ones warned about."""

from __future__ import annotations

import json

import pytest

from batchflow.model.load import load_workflow
from tests.support.project import BASE, Project, edit

# A workflow whose values show which source won: pool id, node count, a boolean and a list.
WITH_VARS = """\
vars:
  tag: default
  nodes: 1
  reuse: false
  extra: []
""" + edit(
    BASE,
    {
        9: "  id: pool-{{ tag }}",
        17: "    dedicated: '{{ nodes }}'",
        18: "  reuse: '{{ reuse }}'\njob:",
        25: "    command: echo {{ extra | join(' ') }} {{ file.name | quote }}",
    },
)


def load(project: Project, *, assignments=(), vars_files=(), environ=None):
    path = project.write(WITH_VARS)
    return load_workflow(path, assignments=assignments, vars_files=vars_files, environ=environ or {}).workflow


def test_defaults_apply(project: Project) -> None:
    workflow = load(project)
    assert workflow.pool.id == "pool-default"
    assert workflow.pool.dedicated_nodes == 1 and workflow.pool.reuse is False


def test_sources_override_in_documented_order(project: Project) -> None:
    (project.root / "vars.json").write_text(json.dumps({"tag": "file", "nodes": 2}))
    (project.root / "more.yaml").write_text("tag: file2\n")
    environ = {"BATCHFLOW_VAR_TAG": "env", "BATCHFLOW_VAR_NODES": "3"}

    assert load(project, vars_files=["vars.json"]).pool.id == "pool-file"
    assert load(project, vars_files=["vars.json", "more.yaml"]).pool.id == "pool-file2"
    assert load(project, vars_files=["vars.json"], environ=environ).pool.id == "pool-env"
    workflow = load(project, vars_files=["vars.json"], environ=environ, assignments=["tag=cli", "tag=cli2"])
    assert workflow.pool.id == "pool-cli2"
    # the node count came from the environment (3), the highest source that set it
    assert workflow.pool.dedicated_nodes == 3


def test_values_keep_their_types(project: Project) -> None:
    workflow = load(project, assignments=["nodes=4", "reuse=true", "tag=007"])
    assert workflow.pool.dedicated_nodes == 4 and isinstance(workflow.pool.dedicated_nodes, int)
    assert workflow.pool.reuse is True
    # 007 is read as YAML: the integer 7, rendered into the id as text
    assert workflow.pool.id == "pool-7"


def test_yes_and_no_stay_strings(project: Project) -> None:
    workflow = load(project, assignments=["tag=no"])
    assert workflow.pool.id == "pool-no"


def test_vars_file_can_give_lists(project: Project) -> None:
    (project.root / "vars.yaml").write_text("extra: [-l, -c]\n")
    workflow = load(project, vars_files=["vars.yaml"])
    assert workflow.tasks[0].command.startswith("echo -l -c ")


def test_environment_sets_variables(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHFLOW_VAR_tag", "from-env")
    path = project.write(WITH_VARS)
    assert load_workflow(path).workflow.pool.id == "pool-from-env"


def test_unused_variable_is_a_warning_with_a_suggestion(project: Project) -> None:
    path = project.write(WITH_VARS)
    result = project.run("validate", str(path), "--set", "tga=x")
    assert result.code == 0
    assert (
        "command line: warning: variable 'tga' is set by --set tga but no template uses it (did you mean 'tag'?)"
        in result.err
    )


def test_unused_default_points_at_its_line(project: Project) -> None:
    path = project.write("vars:\n  unused: 1\n" + BASE)
    result = project.run("validate", str(path))
    assert result.code == 0
    assert f"{path}:2:3: warning: vars.unused: variable 'unused' is set but no template uses it" in result.err


def test_set_changes_the_rendered_plan(project: Project) -> None:
    path = project.write(WITH_VARS)
    result = project.run("plan", str(path), "--set", "tag=blue", "--output", "json")
    assert result.code == 0
    plan = json.loads(result.out)
    pool = next(step for step in plan["steps"] if step["key"] == "pool")
    assert pool["pool"]["id"] == "pool-blue"
