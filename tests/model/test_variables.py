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
    # tag is a string variable (its default is text), so 007 stays the text it was
    assert workflow.pool.id == "pool-007"


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


# --- types and constraints

TYPED = """\
vars:
  count:
    type: integer
    default: 2
    minimum: 1
    maximum: 8
    description: How many nodes.
  mode:
    type: string
    enum: [fast, exact]
  label:
    type: string
    pattern: "[a-z][a-z0-9-]*"
    default: run
""" + edit(
    BASE,
    {
        9: "  id: pool-{{ label }}-{{ mode }}",
        17: "    dedicated: '{{ count }}'",
    },
)


def test_a_list_for_an_integer_is_refused_at_validate_naming_the_source_and_declaration(project: Project) -> None:
    path = project.write(WITH_VARS)
    result = project.run("validate", str(path), "--set", "nodes=[1, 2]")
    assert result.code == 2
    assert (
        f"{path}:3:3: vars.nodes: --set nodes='[1, 2]': expected an integer (the type of its default, 1)" in result.err
    ), result.err


def test_plan_checks_types_too(project: Project) -> None:
    path = project.write(WITH_VARS)
    result = project.run("plan", str(path), "--offline", "--set", "reuse=maybe")
    assert result.code == 2
    assert f"{path}:4:3: vars.reuse: --set reuse='maybe': expected true or false" in result.err


def test_typed_text_from_the_command_line_is_read_by_its_type(project: Project) -> None:
    workflow = load(project, assignments=["extra=[-l, -c]", "tag=true"])
    assert workflow.tasks[0].command.startswith("echo -l -c ")
    assert workflow.pool.id == "pool-true"


def test_long_form_constraints_each_name_the_declaration(project: Project) -> None:
    path = project.write(TYPED)
    cases = {
        ("count=0", "mode=fast"): "2:3: vars.count: --set count='0': must be at least 1",
        ("count=9", "mode=fast"): "2:3: vars.count: --set count='9': must be at most 8",
        ("count=2.5", "mode=fast"): "2:3: vars.count: --set count='2.5': expected an integer",
        ("mode=slow",): "8:3: vars.mode: --set mode='slow': expected one of: fast, exact",
        ("mode=fast", "label=Run_1"): "11:3: vars.label: --set label='Run_1': must match the pattern [a-z][a-z0-9-]*",
    }
    for assignments, expected in cases.items():
        args = [a for assignment in assignments for a in ("--set", assignment)]
        result = project.run("validate", str(path), *args)
        assert result.code == 2, (assignments, result.err)
        assert f"{path}:{expected}" in result.err, (assignments, result.err)


def test_a_variable_without_default_is_required(project: Project) -> None:
    path = project.write(TYPED)
    result = project.run("validate", str(path))
    assert result.code == 2
    assert f"{path}:8:3: vars.mode: no value; this variable has no default, so set it with --set mode=…" in result.err
    workflow = load_workflow(path, assignments=["mode=exact", "count=3"], environ={}).workflow
    assert workflow.pool.id == "pool-run-exact" and workflow.pool.dedicated_nodes == 3


def test_environment_and_vars_file_values_are_checked_and_named(project: Project) -> None:
    path = project.write(TYPED)
    result = project.run("validate", str(path), "--set", "mode=fast")
    assert result.code == 0, result.err
    (project.root / "vars.yaml").write_text("mode: fast\ncount: many\n")
    result = project.run("validate", str(path), "--vars-file", "vars.yaml")
    assert result.code == 2
    assert f"{path}:2:3: vars.count: the value in vars.yaml:2:1: expected an integer" in result.err, result.err
    assert "1 error(s)" in result.err  # the wrong value is not rendered into more errors
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BATCHFLOW_VAR_COUNT", "lots")
        result = project.run("validate", str(path), "--set", "mode=fast")
    assert result.code == 2
    assert f"{path}:2:3: vars.count: environment variable BATCHFLOW_VAR_COUNT: expected an integer" in result.err
    assert "lots" not in result.err  # an environment value may be a secret; it is named, never echoed


def test_a_default_of_the_wrong_type_is_an_error_at_the_default(project: Project) -> None:
    path = project.write(TYPED.replace("    default: 2\n", "    default: two\n"))
    result = project.run("validate", str(path), "--set", "mode=fast")
    assert result.code == 2
    assert f"{path}:4:14: vars.count.default: the default expected an integer" in result.err, result.err


def test_long_form_keys_are_checked_by_the_schema(project: Project) -> None:
    path = project.write(TYPED.replace("    minimum: 1\n", "    minimun: 1\n"))
    result = project.run("validate", str(path), "--set", "mode=fast")
    assert result.code == 2
    assert f"{path}:5:5:" in result.err and "did you mean 'minimum'" in result.err, result.err
    path = project.write(TYPED.replace("type: integer", "type: int"))
    result = project.run("validate", str(path), "--set", "mode=fast")
    assert result.code == 2
    assert f"{path}:3:11:" in result.err and "string, integer, number" in result.err, result.err
