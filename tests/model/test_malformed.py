"""Malformed workflows: each gives exit status 2, the exact file:line:column, a useful message, no traceback."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.support.project import BASE, Project, edit


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    where: str  # "line:column" expected in the message
    says: str  # a fragment of the message


CASES = [
    # --- YAML itself
    Case("yaml unclosed flow sequence", edit(BASE, {9: "  id: [pool1"}), "10:10", "YAML syntax error"),
    Case("yaml tab indentation", edit(BASE, {10: "\tvm_size: standard_d2s_v3"}), "10:1", "YAML"),
    Case("yaml duplicate key", edit(BASE, {10: "  id: pool2"}), "10:3", "duplicate key 'id'"),
    Case("yaml top level is a list", "- name: demo\n- pool: x\n", "1:1", "must be a mapping"),
    Case("yaml empty file", "# nothing here\n", "1:1", "the file is empty"),
    Case(
        "yaml python tag",
        edit(BASE, {19: "  id: !!python/object/apply:os.system [echo]"}),
        "19:7",
        "cannot read this value",
    ),
    Case("yaml bad indentation", edit(BASE, {10: "   vm_size: x"}), "10:11", "YAML syntax error"),
    # --- types
    Case(
        "wrong type vm_size",
        edit(BASE, {10: "  vm_size: 3"}),
        "10:12",
        "pool.vm_size: expected a string, got the number 3 (at /pool/vm_size)",
    ),
    Case(
        "wrong type dedicated",
        edit(BASE, {17: "    dedicated: two"}),
        "17:16",
        "pool.nodes.dedicated: expected an integer",
    ),
    Case("wrong type files", edit(BASE, {7: "    files: 3"}), "7:12", "uploads[0].files: expected a string or a list"),
    Case(
        "wrong type containers",
        edit(BASE, {2: "containers: input", 3: "#", 4: "#"}),
        "2:13",
        "containers: expected a list",
    ),
    Case("negative nodes", edit(BASE, {17: "    dedicated: -1"}), "17:16", "must be at least 0"),
    Case(
        "enum on_all_tasks_complete",
        edit(BASE, {19: "  id: job1\n  on_all_tasks_complete: terminate"}),
        "20:26",
        "expected one of: noaction, terminatejob",
    ),
    # --- unknown and missing keys
    Case(
        "unknown top-level key near miss",
        edit(BASE, {29: "monitr:"}),
        "29:1",
        "unknown key 'monitr'; did you mean 'monitor'?",
    ),
    Case(
        "unknown pool key near miss", edit(BASE, {10: "  vm_sise: standard_d2s_v3"}), "10:3", "did you mean 'vm_size'?"
    ),
    Case(
        "unknown template key near miss",
        edit(BASE, {25: "    comand: echo hi"}),
        "25:5",
        "unknown key 'comand'; did you mean 'command'?",
    ),
    Case("missing job id", edit(BASE, {19: "  priority: 1"}), "19:3", "job: missing required key 'id'"),
    Case("missing template command", edit(BASE, {25: "    display_name: x"}), "24:5", "missing required key 'command'"),
    Case("missing image sku", edit(BASE, {14: "    version: latest"}), "12:5", "missing required key 'sku'"),
    # --- durations
    Case(
        "bad duration words",
        edit(BASE, {30: "  timeout: 20 minutes"}),
        "30:12",
        "monitor.timeout: expected a duration such as",
    ),
    Case("bad duration empty ISO", edit(BASE, {30: "  timeout: PT"}), "30:12", "expected a duration"),
    Case(
        "bad task duration",
        edit(BASE, {28: "        container: output\n    constraints:\n      max_wall_clock: 1 hour"}),
        "30:23",
        "tasks.template.constraints.max_wall_clock: expected a duration",
    ),
    # --- files and globs
    Case(
        "glob matches nothing", edit(BASE, {7: "    files: nothing/*.csv"}), "7:12", "'nothing/*.csv' matches no file"
    ),
    Case("file missing", edit(BASE, {7: "    files: data/missing.txt"}), "7:12", "no such file"),
    Case("upload a folder", edit(BASE, {7: "    files: data"}), "7:12", "is a folder"),
    # --- templates
    Case(
        "undefined variable in task",
        edit(BASE, {25: "    command: wc -w {{ numwords }}"}),
        "25:14",
        "undefined variable 'numwords'",
    ),
    Case(
        "undefined variable in pool id",
        edit(BASE, {9: "  id: '{{ pool_name }}'"}),
        "9:7",
        "pool.id: template error: undefined variable 'pool_name'",
    ),
    Case(
        "template near-miss variable",
        "vars:\n  numwords: 3\n" + edit(BASE, {25: "    command: wc -w {{ numword }}"}),
        "27:14",
        "did you mean 'numwords'?",
    ),
    Case("template syntax error", edit(BASE, {25: "    command: echo {{ file.name"}), "25:14", "template syntax error"),
    Case(
        "sandbox escape via class",
        edit(BASE, {25: "    command: \"{{ ''.__class__.__mro__[1].__subclasses__() }}\""}),
        "25:14",
        "refused by the sandbox",
    ),
    Case(
        "sandbox escape via globals",
        edit(BASE, {25: "    command: \"{{ cycler.__init__.__globals__.os.system('id') }}\""}),
        "25:14",
        "refused by the sandbox",
    ),
    Case(
        "rendered task id invalid",
        edit(BASE, {24: "    id: 'task {{ index }}'"}),
        "24:9",
        "tasks.template.id: expected an id of 1 to 64",
    ),
    # --- checks beyond the schema
    Case(
        "duplicate task ids",
        edit(BASE, {24: "    id: task"}),
        "24:9",
        "task ids must be unique; duplicated: 'task' (tasks 0 and 1)",
    ),
    Case(
        "undeclared upload container",
        edit(BASE, {6: "  - container: inptu"}),
        "6:16",
        "container 'inptu' is not declared; did you mean 'input'?",
    ),
    Case(
        "undeclared output container",
        edit(BASE, {28: "        container: results"}),
        "28:20",
        "container 'results' is not declared",
    ),
    Case(
        "start task from unknown container",
        edit(
            BASE,
            {
                17: "    dedicated: 1\n  start_task:\n    commands: [cp -p x $AZ_BATCH_NODE_SHARED_DIR]\n    resource_files:\n      - {container: apps, blob: x}"
            },
        ),
        "21:21",
        "pool.start_task.resource_files[0].container: container 'apps' is not declared",
    ),
    Case(
        "cleanup deletes undownloaded outputs",
        edit(BASE, append="cleanup:\n  containers: delete\n"),
        "32:15",
        "receives the task outputs but is deleted without being downloaded",
    ),
    Case(
        "cleanup names undeclared container",
        edit(BASE, append="cleanup:\n  containers: {inputs: delete}\n"),
        "32:16",
        "container 'inputs' is not declared; did you mean 'input'?",
    ),
    Case("pool without nodes", edit(BASE, {17: "    dedicated: 0"}), "17:5", "the pool has no nodes"),
    Case(
        "depends on unknown task",
        edit(BASE, {28: "        container: output\n    depends_on: [setup]"}),
        "29:18",
        "depends on 'setup', which no task has",
    ),
    Case(
        "two factories",
        edit(BASE, {22: "    files_in: input\n    values: [1, 2]"}),
        "22:5",
        "expected exactly one of files_in, values, range or items",
    ),
    Case(
        "resource file without blob",
        edit(BASE, {28: "        container: output\n    resource_files:\n      - container: input"}),
        "30:9",
        "expected a resource file with either",
    ),
    Case("bad container name", edit(BASE, {3: "  - name: Input_Files"}), "3:11", "expected a container name"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_workflow_is_reported_with_position(project: Project, case: Case) -> None:
    path = project.write(case.text)
    result = project.run("validate", str(path))
    assert result.code == 2, result.err
    assert "Traceback" not in result.err + result.out
    expected = f"{path}:{case.where}: "
    matching = [line for line in result.err.splitlines() if line.startswith(expected)]
    assert matching, f"no line starts with {expected!r}:\n{result.err}"
    assert any(case.says in line for line in matching), f"{case.says!r} not in:\n{result.err}"


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


def test_every_problem_is_reported_at_once_in_file_order(project: Project) -> None:
    text = edit(BASE, {7: "    files: nothing/*.csv", 10: "  vm_size: 3", 30: "  timeout: soon"})
    path = project.write(text)
    result = project.run("validate", str(path))
    assert result.code == 2
    lines = [line for line in result.err.splitlines() if line.startswith(str(path))]
    assert [line.split(":")[1] for line in lines] == ["7", "10", "30"]
    # validate never creates anything, so it does not say so
    assert result.err.endswith("batchflow: 3 error(s)\n")


def test_json_output_lists_errors_for_scripts(project: Project) -> None:
    import json

    path = project.write(edit(BASE, {10: "  vm_size: 3"}))
    result = project.run("validate", str(path), "--output", "json")
    assert result.code == 2
    report = json.loads(result.out)
    assert report["valid"] is False
    assert report["errors"][0]["line"] == 10 and report["errors"][0]["pointer"] == "/pool/vm_size"


def test_missing_workflow_file(project: Project) -> None:
    result = project.run("validate", "nowhere.yaml")
    assert result.code == 2
    assert result.err == "batchflow: error: no such file: nowhere.yaml\n"


def test_not_utf8_file_names_its_line(project: Project) -> None:
    path = project.root / "latin1.yaml"
    path.write_bytes(b"name: demo\ndescription: caf\xe9\n")
    result = project.run("validate", str(path))
    assert result.code == 2
    assert f"{path}:2:1: the file is not UTF-8" in result.err


def test_malformed_set_is_a_usage_error(project: Project) -> None:
    path = project.write(BASE)
    result = project.run("validate", str(path), "--set", "no-equals-sign")
    assert result.code == 2
    assert "--set expects NAME=VALUE" in result.err and "Traceback" not in result.err


def test_broken_vars_file_names_its_own_line(project: Project) -> None:
    path = project.write(BASE)
    (project.root / "vars.yaml").write_text("numwords: 3\nfiles: [a, b\n")
    result = project.run("validate", str(path), "--vars-file", "vars.yaml")
    assert result.code == 2
    assert "vars.yaml:3:1: YAML syntax error" in result.err


def test_debug_shows_a_traceback(project: Project) -> None:
    path = project.write(edit(BASE, {10: "  vm_size: 3"}))
    result = project.run("--debug", "validate", str(path))
    assert result.code == 2
    assert "Traceback" in result.err


def test_alias_bomb_is_refused_at_once_naming_its_line(project: Project) -> None:
    # Nine levels of nine-fold aliases: 387 million strings if expanded.
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{n}: &a{n} [{','.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    path = project.write("\n".join(lines) + "\n")
    result = project.run("validate", str(path))
    assert result.code == 2
    assert f"{path}:6:" in result.err and "expand to more than 100,000 values" in result.err
    assert "Traceback" not in result.err


def test_small_aliases_still_work(project: Project) -> None:
    text = BASE.replace("dedicated: 1", "dedicated: &one 1")
    path = project.write(text.replace("  id: job1", "  id: job1\n  constraints:\n    max_task_retries: *one"))
    result = project.run("validate", str(path))
    assert result.code == 0, result.err


def test_deep_nesting_is_refused_naming_its_line(project: Project) -> None:
    path = project.write("name: demo\ndescription: " + "[" * 10_000 + "]" * 10_000 + "\n")
    result = project.run("validate", str(path))
    assert result.code == 2
    assert f"{path}:2:" in result.err and "nest deeper than 64 levels" in result.err
    assert "Traceback" not in result.err


def test_huge_file_is_refused_without_parsing(project: Project) -> None:
    path = project.write("name: demo\ndescription: '" + "x" * (17 * 2**20) + "'\n")
    result = project.run("validate", str(path))
    assert result.code == 2
    assert f"{path}: the file is larger than 16 MB" in result.err


# --- one problem, one message


def test_a_misspelt_containers_key_is_the_only_error(project: Project) -> None:
    path = project.write(BASE.replace("containers:", "contaners:"))
    result = project.run("validate", str(path))
    assert result.code == 2
    errors = [line for line in result.err.splitlines() if line.startswith(str(path))]
    assert errors == [f"{path}:2:1: contaners: unknown key 'contaners'; did you mean 'containers'? (at /contaners)"]


def test_a_container_really_not_declared_is_still_reported(project: Project) -> None:
    path = project.write(edit(BASE, {6: "  - container: inbox"}))
    result = project.run("validate", str(path))
    assert result.code == 2
    assert f"{path}:6:16: uploads[0].container: container 'inbox' is not declared" in result.err


def test_no_unused_variable_warning_when_an_error_stopped_rendering(project: Project) -> None:
    # A broken for_each stops the task template from being rendered, and so from using numwords.
    text = edit(BASE, {22: "    files_in: [input]", 25: "    command: echo {{ numwords }}"})
    path = project.write("vars:\n  numwords: 3\n" + text)
    result = project.run("validate", str(path))
    assert result.code == 2
    assert f"{path}:24:15: tasks.for_each.files_in: expected a string" in result.err
    assert "no template uses it" not in result.err


def test_environment_variable_typo_gets_a_suggestion(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    path = project.write("vars:\n  numwords: 3\n" + edit(BASE, {25: "    command: echo {{ numwords }}"}))
    monkeypatch.setenv("BATCHFLOW_VAR_NUMWORD", "4")
    result = project.run("validate", str(path))
    assert result.code == 0
    assert "BATCHFLOW_VAR_NUMWORD but no template uses it (did you mean 'numwords'?)" in result.err


def test_debug_works_after_the_command(project: Project) -> None:
    path = project.write(edit(BASE, {10: "  vm_size: 3"}))
    result = project.run("validate", str(path), "--debug")
    assert result.code == 2 and "Traceback" in result.err


def test_a_misspelt_option_gets_a_suggestion_and_the_command_usage(project: Project) -> None:
    path = project.write(BASE)
    with pytest.raises(SystemExit) as exit:
        project.run("apply", str(path), "--yse")
    assert exit.value.code == 2
    err = project.capsys.readouterr().err
    assert "usage: batchflow apply" in err
    assert "batchflow apply: error: unrecognized argument: --yse; did you mean --yes?" in err


def test_notes_before_the_first_step_are_not_indented() -> None:
    import io

    from batchflow.cli.progress import TerminalReporter

    stream = io.StringIO()
    reporter = TerminalReporter(stream=stream)
    reporter.note("run demo-1 on local")
    reporter.step(1, "create containers")
    reporter.note("created input")
    assert stream.getvalue().splitlines() == ["run demo-1 on local", "[1/9] create containers", "      created input"]


@pytest.mark.parametrize(
    "expression, says",
    [("'x' * 10**12", "repeating a value 1000000000000 times"), ("2**10000000", "2 ** 10000000 is too large")],
)
def test_a_template_that_would_make_a_huge_value_is_refused(project: Project, expression: str, says: str) -> None:
    path = project.write(edit(BASE, {25: f"    command: echo {{{{ {expression} }}}}"}))
    result = project.run("validate", str(path))
    assert result.code == 2
    assert f"{path}:25:14: tasks.template.command: template refused by the sandbox: {says}" in result.err


def test_small_repetition_and_powers_still_render(project: Project) -> None:
    from batchflow.model.load import load_workflow

    path = project.write(edit(BASE, {25: "    command: echo {{ 'ab' * 3 }} {{ 2**10 }} {{ [0] * 2 }}"}))
    assert load_workflow(path, environ={}).workflow.tasks[0].command == "echo ababab 1024 [0, 0]"
