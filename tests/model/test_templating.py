"""Strings of text, names, attributes, ``~`` and plain filters are rendered a column at a time: the same result.

``point-{{ value }}`` and ``{{ file.name | quote }}`` are most of what a sweep
renders, 100,000 times; they are rendered for all tasks at once, straight from
the tree Jinja's own parser made, taking the steps the code Jinja generates
takes. These tests hold that path to Jinja itself: the same text and the same
value, and where Jinja fails for any row, a failure (the rows are then rendered
one by one by Jinja, which reports it).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from batchflow.model import templating
from batchflow.model.templating import Renderer, TreeTemplate, make_environment

TEXTS = [
    "point-{{ value }}",
    "{{value}}",
    "  {{ value }}  ",
    "out-{{ value }}.txt",
    "{{ value }}{{ other }}",
    "a {{ value }} b {{ other }} c",
    "crlf\r\nline {{ value }}\r\n",
    "trim  {{- value -}}  both",
    "é ü 中 {{ value }} }} } {",
    "keep trailing newline {{ value }}\n",
    "{{ value | quote }}",
    "--in {{ value | quote }} --out {{ ('out-' ~ value ~ '.txt') | quote }}",
    "{{ value ~ other ~ 3 }}",
    "{{ value.name }}/{{ value.stem }}",
    "{{ value.name | upper }}",
    "{{ value.missing_attribute }}",
    "{{ value.__class__ }}",
    "{{ 'x' }}-{{ 4 }}-{{ none }}-{{ true }}",
    "{{ missing_name }}",
    "{{ missing_name ~ 'x' }}",
    "{{ missing_name | quote }}",
    "{{ missing_name.attribute }}",
    "{{ missing_name ~ missing_other.attribute }}",  # ~ evaluates every part before str() of any
    "p-{{ (missing_name ~ value.nope.deeper) | quote }}",
]
#: Lone expressions keep their value's type.
SINGLE_TEXTS = ["{{ value }}", " {{ value.name }} ", "{{ value | quote }}", "{{ missing_name }}", "{{ value.nope }}"]
VALUES = [
    0, 7, -3, 2**80, 1.5, 1e-7, True, False, None, "text", "", "naïve", "it's a file.txt", [1, "a"], (1, 2),
    {"k": 1}, {"name": "in put.txt", "stem": "in put"}, SimpleNamespace(name="n.txt", stem="n"),
]  # fmt: skip


def jinja_result(text: str, variables: dict) -> tuple[str, object]:
    """What Jinja renders, or the error it raises, as (kind, value or message)."""
    renderer = Renderer(variables)
    compiled = renderer._compile(text)
    try:
        return "value", compiled.run(renderer.context())
    except Exception as exc:
        return type(exc).__name__, str(exc)


def column_result(text: str, shared: dict, rows: list[dict]) -> list[object] | None:
    """The string rendered for ``rows`` at once (each row adds its variables to ``shared``), or None when it fails."""
    renderer = Renderer(shared)
    compiled = renderer._compile(text)
    assert compiled.by_column is not None, f"{text!r} is rendered a column at a time"
    together = templating._Rows({**renderer.env.globals, **shared}, rows, frozenset(rows[0]))
    try:
        column = compiled.by_column(together)
    except Exception:
        return None
    return [column.value] * len(rows) if isinstance(column, templating._Same) else column


def expected(text: str, shared: dict, rows: list[dict]) -> list[object] | None:
    """Jinja's value for each row, or None when it fails for any."""
    results = [jinja_result(text, {**shared, **row}) for row in rows]
    return [value for _, value in results] if all(kind == "value" for kind, _ in results) else None


@pytest.mark.parametrize("text", TEXTS + SINGLE_TEXTS)
def test_strings_render_a_column_at_a_time_as_jinja_renders_them_row_by_row(text: str) -> None:
    for value in VALUES:  # one row: the exact value, or a failure where Jinja fails
        rows = [{"value": value}]
        assert column_result(text, {"other": "x"}, rows) == expected(text, {"other": "x"}, rows), (text, value)
        shared = {"value": value, "other": "x"}  # the value shared by all rows, evaluated once
        assert column_result(text, shared, [{}, {}]) == expected(text, shared, [{}, {}]), (text, value)
        shadowed = {"value": "shared", "other": "x"}  # a row's own variable comes first
        assert column_result(text, shadowed, rows) == expected(text, shadowed, rows), (text, value)
    rows = [{"value": value} for value in VALUES]  # all rows at once: fails if any row does
    assert column_result(text, {"other": "x"}, rows) == expected(text, {"other": "x"}, rows), text
    fine = [row for row in rows if expected(text, {"other": "x"}, [row]) is not None]
    if fine:
        assert column_result(text, {"other": "x"}, fine) == expected(text, {"other": "x"}, fine), text


def test_the_reference_is_jinja_rendering_the_text() -> None:
    """The reference above is itself Jinja's ordinary rendering of the string."""
    for value in [7, "a b", {"name": "n"}]:
        for text in ["point-{{ value }}", "a {{ value }} b {{ other }} c", "-i {{ value | quote }}", "{{ value ~ 1 }}"]:
            rendered = make_environment().from_string(text).render(value=value, other="x")
            assert column_result(text, {"other": "x"}, [{"value": value}]) == [rendered]


def test_a_sweep_renders_without_jinja_when_every_string_can(monkeypatch: pytest.MonkeyPatch) -> None:
    tree = TreeTemplate({"id": "p-{{ value }}", "files": [{"pattern": "{{ value ~ '.txt' }}", "c": "out"}]}, ("t",))
    monkeypatch.setattr(templating._Compiled, "run", lambda *_: pytest.fail("rendered by Jinja"))
    rows = [{"value": value, "index": index} for index, value in enumerate(["a", 2, None])]
    rendered = list(tree.render_each(Renderer({}), lambda *_: pytest.fail("no failure"), rows))
    assert rendered == [
        {"id": "p-a", "files": [{"pattern": "a.txt", "c": "out"}]},
        {"id": "p-2", "files": [{"pattern": "2.txt", "c": "out"}]},
        {"id": "p-None", "files": [{"pattern": "None.txt", "c": "out"}]},
    ]
    assert (
        rendered[0]["files"] is not rendered[1]["files"]
        and rendered[0]["files"][0]["c"] is rendered[1]["files"][0]["c"]
    )


def test_strings_only_jinja_renders_go_row_by_row_beside_the_columns() -> None:
    tree = TreeTemplate({"a": "{{ value + 1 }}", "b": "x-{{ value }}", "c": "{% if value %}y{% endif %}"}, ("t",))
    rows = [{"value": value} for value in (0, 1, 2)]
    rendered = list(tree.render_each(Renderer({}), lambda *_: pytest.fail("no failure"), rows))
    assert rendered == [{"a": 1, "b": "x-0", "c": ""}, {"a": 2, "b": "x-1", "c": "y"}, {"a": 3, "b": "x-2", "c": "y"}]


def test_one_row_that_fails_is_reported_and_the_others_render() -> None:
    messages: list[tuple[tuple, str]] = []
    tree = TreeTemplate({"id": "p-{{ value.name }}", "n": "{{ value.name | quote }}"}, ("t",))
    rows = [{"value": {"name": "a"}}, {"value": {}}, {"value": {"name": "c d"}}]
    rendered = list(tree.render_each(Renderer({}), lambda path, message: messages.append((path, message)), rows))
    assert rendered[0] == {"id": "p-a", "n": "a"} and rendered[2] == {"id": "p-c d", "n": "'c d'"}
    assert rendered[1] == {"id": "p-{{ value.name }}", "n": "{{ value.name | quote }}"}
    assert [path for path, _ in messages] == [("t", "id"), ("t", "n")]
    assert all("has no attribute 'name'" in message for _, message in messages), messages


def test_a_lone_name_keeps_its_type_as_before() -> None:
    renderer = Renderer({"nodes": 2, "flags": ["a", "b"]})
    tree = TreeTemplate({"n": "{{ nodes }}", "f": " {{ flags }} ", "v": "{{ value }}"}, ("t",))
    rendered = tree.render(renderer, lambda *_: None, {"value": None})
    assert rendered == {"n": 2, "f": ["a", "b"], "v": None}


def test_other_templates_still_go_through_jinja() -> None:
    renderer = Renderer({})
    for text in [
        "{{ value + 1 }}",
        "{{ value * 2 }}",
        "{% if value %}y{% endif %}",
        "{{ value['k'] }}",
        "{{ value.upper() }}",
        "{{ value | default('x') }}",
        "{{ value | join }}",  # a filter given the environment
        "{% set x = 1 %}{{ x }}",
        "{{ self }}",  # Jinja's reference to the template, whatever the variables say
        "{{ 1e400 }}",  # Jinja writes the folded constant as the name inf, and fails: so must we
        "{{ 'nan' | float }}",
        "x{{ 'a' ~ 1e400 }}",
    ]:
        assert renderer._compile(text).by_column is None, text


def test_a_missing_name_is_the_same_error_either_way() -> None:
    messages: list[str] = []
    tree = TreeTemplate({"column": "x-{{ missing_name }}", "jinja": "x-{{ missing_name | default(1) + 1 }}"}, ("t",))
    renderer = Renderer({"missing_nam": 1})
    rendered = tree.render(renderer, lambda path, message: messages.append(message), {})
    assert rendered["column"] == "x-{{ missing_name }}"
    assert len(messages) == 1
    assert "undefined variable 'missing_name'" in messages[0] and "missing_nam" in messages[0]
    tree = TreeTemplate({"column": "x-{{ missing_name | quote }}", "jinja": "x-{{ missing_name + 1 }}"}, ("t",))
    messages.clear()
    tree.render(renderer, lambda path, message: messages.append(message), {})
    assert len(messages) == 2 and messages[0] == messages[1]


def test_an_unsafe_attribute_is_refused_by_the_columns_too() -> None:
    messages: list[str] = []
    tree = TreeTemplate({"s": "{{ value.__class__.__mro__ }}"}, ("t",))
    tree.render(Renderer({}), lambda path, message: messages.append(message), {"value": "x"})
    assert len(messages) == 1 and "template" in messages[0]


def test_rows_with_other_names_do_not_see_the_names_of_the_row_before() -> None:
    messages: list[str] = []
    tree = TreeTemplate({"a": "{{ a }}"}, ("t",))
    rendered = list(
        tree.render_each(Renderer({}), lambda path, message: messages.append(message), [{"a": 1}, {"b": 2}])
    )
    assert rendered == [{"a": 1}, {"a": "{{ a }}"}]
    assert len(messages) == 1 and "undefined variable 'a'" in messages[0]


def test_a_filter_of_shared_values_makes_each_row_its_own_list_or_iterator() -> None:
    renderer = Renderer({"xs": [1, 2], "d": {"b": 1, "a": 2}})
    tree = TreeTemplate({"r": "{{ xs | reverse }}", "s": "{{ d | dictsort }}", "n": "{{ xs | length }}"}, ("t",))
    first, second = tree.render_each(renderer, lambda *_: pytest.fail("no failure"), [{"value": 1}, {"value": 2}])
    assert list(first["r"]) == list(second["r"]) == [2, 1], "an iterator is not shared (and used up) by the rows"
    assert first["s"] == second["s"] == [("a", 2), ("b", 1)] and first["s"] is not second["s"]
    assert first["n"] == second["n"] == 2


def test_strings_that_call_anything_are_rendered_task_by_task_in_order() -> None:
    """The sandbox lets a template call safe methods (``list.append``): what one string does, the next sees."""
    tree = TreeTemplate({"a": "{{ acc.append(value) or acc | length }}", "b": "{{ acc | length }}"}, ("t",))
    rows = [{"value": 1}, {"value": 2}]
    rendered = list(tree.render_each(Renderer({"acc": []}), lambda *_: pytest.fail("no failure"), rows))
    assert rendered == [{"a": 1, "b": 1}, {"a": 2, "b": 2}]


def test_no_rows_render_nothing_and_use_no_variable() -> None:
    renderer = Renderer({"only_in_task": 1})
    tree = TreeTemplate({"id": "p{{ only_in_task }}-{{ value }}"}, ("t",))
    assert list(tree.render_each(renderer, lambda *_: pytest.fail("no failure"), [])) == []
    assert renderer.used == set()
