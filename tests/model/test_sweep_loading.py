"""Loading a sweep checks each rendered task by what its template strings filled in; the errors stay the same.

After one rendered task is valid as a whole, the others are checked only at
the values their template strings produced (see ``schema.RenderedLeaves``),
and a task that fails that check is validated whole, for the messages. These
tests hold the loader to the promise that makes this safe: for any workflow,
loading gives the same tasks and the same diagnostics (file, line, column and
text) as validating every task whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest

from batchflow.errors import WorkflowError
from batchflow.model import load as loader
from batchflow.model import schema, spec
from batchflow.model.load import load_workflow
from batchflow.model.spec import Workflow, format_duration
from batchflow.runner import naming
from batchflow.runner.identity import IGNORED, fingerprint
from tests.support.project import sweep

#: Task templates, each a few lines below ``template:``; BAD marks where one task goes wrong.
TEMPLATES = {
    "valid": """\
    id: point-{{ value }}
    display_name: "{{ value }}"
    command: python3 -c 'print({{ value }} * {{ scale }})' > {{ ('out-' ~ value ~ '.txt') | quote }}
    environment: {SEED: "{{ value * 7 }}", HALF: "{{ value / 2 }}", ODD: "{{ value is odd }}"}
    output_files:
      - pattern: out-{{ value }}.txt
        container: output
    outputs:
      - {container: results, name: "r/{{ value }}.txt"}
    constraints: {max_wall_clock: "{{ '10m' if value % 2 else '1h' }}"}
    retries: "{{ value % 3 }}"
""",
    "a bad duration in one task": """\
    id: point-{{ value }}
    command: "true"
    constraints: {max_wall_clock: "{{ 'ten minutes' if value == BAD else '10m' }}"}
""",
    "a text where a number goes": """\
    id: point-{{ value }}
    command: "true"
    retries: "{{ 'twice' if value == BAD else 2 }}"
""",
    "an empty name under a oneOf": """\
    id: point-{{ value }}
    command: "true"
    outputs:
      - {container: results, name: "{{ '' if value == BAD else 'r' ~ value }}"}
""",
    "a list where a text goes": """\
    id: point-{{ value }}
    command: "{{ [value] if value == BAD else 'true' }}"
""",
    "a template error in one task": """\
    id: point-{{ value }}
    command: echo {{ 10 // (value - BAD) }}
""",
    "a bad and duplicate id": """\
    id: "{{ 'no spaces allowed' if value == BAD else 'p' ~ (value % (BAD + 50)) }}"
    command: "true"
""",
    "a set in one string is not seen by the next": """\
    id: point-{{ value }}
    command: "{% set secret = value %}echo {{ secret }}"
    display_name: "{{ secret if value == BAD else 'x' }}"
""",
    "a mapping where a list goes": """\
    id: point-{{ value }}
    command: "true"
    output_files: "{{ {'pattern': 'x'} if value == BAD else [] }}"
""",
}


def write(folder: Path, template: str, count: int, bad: int) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(sweep(template.replace("BAD", str(bad)), count))
    return path


def load(path: Path) -> tuple[dict | None, list[str]]:
    """The loaded workflow as plain data, or the diagnostics as the command line prints them."""
    try:
        result = load_workflow(path, environ={}, cwd=path.parent)
    except WorkflowError as error:
        return None, [str(d) for d in error.diagnostics]
    return result.workflow.to_dict(), [str(d) for d in result.warnings]


@pytest.mark.parametrize("case", list(TEMPLATES))
def test_a_sweep_loads_as_if_every_task_were_validated_whole(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, TEMPLATES[case], count=3000, bad=2113)
    checked = load(path)
    monkeypatch.setattr(schema, "leaf_validator", lambda *args, **kwargs: None)  # validate every task whole
    assert checked == load(path)
    if case != "valid":
        assert checked[0] is None and checked[1], checked


def test_an_error_in_one_task_of_many_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, TEMPLATES["a bad duration in one task"], count=100_000, bad=73_412)
    with pytest.raises(WorkflowError) as raised:
        load_workflow(path, environ={})
    (only,) = raised.value.diagnostics
    line = (
        path.read_text()
        .splitlines()
        .index("    constraints: {max_wall_clock: \"{{ 'ten minutes' if value == 73412 else '10m' }}\"}")
    )
    assert (only.file, only.line) == (str(path), line + 1)
    assert "expected a duration such as 90s" in only.message and "'ten minutes'" in only.message


def test_a_templated_number_is_text_where_the_schema_wants_text(tmp_path: Path) -> None:
    workflow = load_workflow(write(tmp_path, TEMPLATES["valid"], count=40, bad=0), environ={}).workflow
    assert [t.display_name for t in workflow.tasks[:3]] == ["0", "1", "2"]
    assert workflow.tasks[7].environment == {"SEED": "49", "HALF": "3.5", "ODD": "true"}
    assert [t.retries for t in workflow.tasks[:4]] == [0, 1, 2, 0]
    assert [format_duration(t.max_wall_clock) for t in workflow.tasks[:2]] == ["1h", "10m"]


SHARED_PARTS = """\
    id: "{{ value }}"
    command: echo {{ value }} > out-{{ value }}.txt
    resource_files:
      - {container: results, blob: table.csv}
    output_files:
      - {pattern: "out-{{ value }}.txt", container: output}
      - {pattern: "*.log", container: results, upload_on: failure}
    container_urls: {RESULTS: {container: results, access: read}}
    environment: {MODE: fast, DEBUG: false}
    constraints: {max_wall_clock: 10m, retention: 1h}
    required_slots: 1
    depends_on: {ranges: [{from: 100, to: 110}]}
    outputs: [summary.txt, {container: results, name: r.txt}]
"""


def test_keys_no_template_string_varies_are_converted_once_and_mean_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep converts the keys its template never varies once and shares the values between tasks;
    the tasks are those converting every task whole gives, and what they share is the same object."""
    path = write(tmp_path, SHARED_PARTS, count=200, bad=0)
    shared = load_workflow(path, environ={}).workflow
    original = loader._tasks
    monkeypatch.setattr(loader, "_tasks", lambda data, varying, container: original(data, None, container))
    whole = load_workflow(path, environ={}).workflow
    assert shared.tasks == whole.tasks
    first, last = shared.tasks[0], shared.tasks[-1]
    assert (first.id, last.id, last.command) == ("0", "199", "echo 199 > out-199.txt")
    assert first.environment == {"MODE": "fast", "DEBUG": "false"} and first.depends_on_ranges == ((100, 110),)
    assert first.output_files[0].pattern == "out-0.txt" and last.output_files[0].pattern == "out-199.txt"
    assert first.outputs == (spec.DeclaredOutput("output", "summary.txt"), spec.DeclaredOutput("results", "r.txt"))
    for name in ("resource_files", "container_urls", "environment", "max_wall_clock", "outputs"):
        assert getattr(first, name) is getattr(last, name), name
        if name != "max_wall_clock":  # converted task by task, each has its own
            assert getattr(whole.tasks[0], name) is not getattr(whole.tasks[-1], name), name
    assert fingerprint(shared, {}, "local") == canonical_before(shared, "local") == fingerprint(whole, {}, "local")


def canonical_before(workflow: Workflow, target: str) -> str:
    """The fingerprint as batchflow computed it before it was made faster: asdict, then plain data."""

    def plain(value: object) -> object:
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        if hasattr(value, "total_seconds"):
            return format_duration(value)  # type: ignore[arg-type]
        return value

    definition = {k: v for k, v in plain(dataclasses.asdict(workflow)).items() if k not in IGNORED}  # type: ignore[union-attr]
    definition["target"] = target
    definition["uploads"] = []
    return hashlib.sha256(json.dumps(definition, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_the_fingerprint_and_physical_names_are_what_they_were(tmp_path: Path) -> None:
    """The fingerprint names the run, so a resumed run is found by it: it must not change between versions."""
    workflow = load_workflow(write(tmp_path, TEMPLATES["valid"], count=50, bad=0), environ={}).workflow
    assert fingerprint(workflow, {}, "local") == canonical_before(workflow, "local")
    physical = naming.physical(workflow, "sweep-0123456789")
    task = physical.tasks[9]
    assert task.output_files[0].container == physical.download.container == "output-sweep-0123456789"
    assert task.outputs[0].container == "results-sweep-0123456789"
    renamed = dataclasses.replace(
        workflow.tasks[9],
        output_files=tuple(dataclasses.replace(o, container=naming.container_name(o.container, "sweep-0123456789"))
                           for o in workflow.tasks[9].output_files),
        outputs=tuple(dataclasses.replace(o, container=naming.container_name(o.container, "sweep-0123456789"))
                      for o in workflow.tasks[9].outputs),
    )  # fmt: skip
    assert task == renamed
    assert fingerprint(physical, {}, "local") == canonical_before(physical, "local")


def test_the_fingerprint_of_tasks_of_many_shapes_is_what_it_was(tmp_path: Path) -> None:
    """The fingerprint encodes the tasks a field at a time across all of them; tasks that differ in
    shape (lengths, types, None or not, equal but distinct values, text with % and quotes) give the
    text they gave when each was encoded whole."""
    workflow = load_workflow(write(tmp_path, TEMPLATES["valid"], count=3, bad=0), environ={}).workflow
    out = spec.OutputFile("out.txt", "output")
    tasks = [
        spec.Task(id="a", command='echo 100% "done" \u00e9', output_files=(out,), retries=None),
        spec.Task(
            id="b",
            command="true",
            output_files=(out, spec.OutputFile("b%s.txt", "output", "x/", "failure")),
            retries=2,
            depends_on_ranges=((1, 2), (3, 4)),
        ),
        spec.Task(
            id="c",
            command="true",
            output_files=(),
            retries=True,
            depends_on_ranges=((5, 6),),
            max_wall_clock=timedelta(minutes=90),
            environment={"A": "1"},
        ),
        spec.Task(
            id="d",
            command="true",
            output_files=(spec.OutputFile("out.txt", "output"),),
            retries=1.5,
            display_name="%(name)s",
            outputs=(spec.DeclaredOutput("output", "r.txt"),),
            resource_files=(spec.ResourceFile(container="output", blob="in.txt"),),
        ),
        spec.Task(
            id="e",
            command="true",
            output_files=(out,),
            retries=0,
            environment={"A": "1", "B": "%"},
            depends_on_ids=("a", "b"),
        ),
    ]
    equal_not_alike = [dataclasses.replace(tasks[0], retries=value) for value in (1, True, 1.0)]
    for chosen in (tasks, tasks[:1], tasks[2:4], [tasks[1]] * 3, [tasks[0], dataclasses.replace(tasks[0])],
                   equal_not_alike, [tasks[1], dataclasses.replace(tasks[1], depends_on_ranges=((5, 6), (7, 9)))]):  # fmt: skip
        varied = dataclasses.replace(workflow, tasks=tuple(chosen))
        assert fingerprint(varied, {}, "local") == canonical_before(varied, "local"), [t.id for t in chosen]
    assert fingerprint(dataclasses.replace(workflow, tasks=()), {}, "local") == canonical_before(
        dataclasses.replace(workflow, tasks=()), "local"
    )


def test_every_spec_class_may_be_made_and_copied_without_its_init() -> None:
    """``spec.maker``, ``spec.copier`` and ``spec.copy_with`` skip ``__init__``, which is only right while no class has
    a ``__post_init__``, slots or a field the constructor would compute: this fails when one gets them."""
    import inspect

    from batchflow.model import spec

    classes = [c for _, c in inspect.getmembers(spec, inspect.isclass) if dataclasses.is_dataclass(c)]
    assert spec.Task in classes and spec.OutputFile in classes
    for kind in classes:
        if kind.__module__ != spec.__name__:
            continue
        assert not hasattr(kind, "__post_init__"), kind
        assert "__slots__" not in vars(kind), kind
        assert all(f.init for f in dataclasses.fields(kind)), kind
    task = spec.Task(id="t1", command="true", output_files=(spec.OutputFile("out.txt", "output"),), retries=2)
    values = {f.name: getattr(task, f.name) for f in dataclasses.fields(task)}
    assert spec.maker(spec.Task, values)(values) == task
    assert spec.copy_with(task, id="t2") == dataclasses.replace(task, id="t2")
    assert spec.copier(spec.Task, ["id", "retries"])(task, {"id": "t2"}) == dataclasses.replace(task, id="t2")
    with pytest.raises(TypeError, match="has no field"):
        spec.copier(spec.Task, ["identifier"])
    with pytest.raises(TypeError, match="missing fields"):
        spec.maker(spec.Task, ["id", "command"])
