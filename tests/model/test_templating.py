"""Strings of text, names, attributes, ``~`` and plain filters are rendered without Jinja's machinery: the same result.

``point-{{ value }}`` and ``{{ file.name | quote }}`` are most of what a sweep
renders, 100,000 times; they are rendered straight from the tree Jinja's own
parser made, taking the steps the code Jinja generates takes. These tests hold
that path to Jinja itself: the same text, the same value, the same error.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

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
        return "value", compiled._run_jinja(renderer.context())
    except Exception as exc:
        return type(exc).__name__, str(exc)


def direct_result(text: str, variables: dict) -> tuple[str, object]:
    renderer = Renderer(variables)
    compiled = renderer._compile(text)
    assert compiled.direct is not None, f"{text!r} takes the direct path"
    try:
        return "value", compiled.direct(renderer.context())
    except Exception as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("text", TEXTS + SINGLE_TEXTS)
def test_strings_render_on_the_direct_path_as_jinja_renders_them(text: str) -> None:
    for value in VALUES:
        variables = {"value": value, "other": "x"}
        assert direct_result(text, variables) == jinja_result(text, variables), (text, value)


def test_the_direct_path_is_jinja_rendering_the_text() -> None:
    """The reference above is itself Jinja's ordinary rendering of the string."""
    for value in [7, "a b", {"name": "n"}]:
        for text in ["point-{{ value }}", "a {{ value }} b {{ other }} c", "-i {{ value | quote }}", "{{ value ~ 1 }}"]:
            expected = make_environment().from_string(text).render(value=value, other="x")
            assert direct_result(text, {"value": value, "other": "x"}) == ("value", expected)


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
        assert renderer._compile(text).direct is None, text


def test_a_missing_name_is_the_same_error_on_both_paths() -> None:
    messages: list[str] = []
    tree = TreeTemplate({"direct": "x-{{ missing_name }}", "jinja": "x-{{ missing_name | default(1) + 1 }}"}, ("t",))
    renderer = Renderer({"missing_nam": 1})
    rendered = tree.render(renderer, lambda path, message: messages.append(message), {})
    assert rendered["direct"] == "x-{{ missing_name }}"
    assert len(messages) == 1
    assert "undefined variable 'missing_name'" in messages[0] and "missing_nam" in messages[0]
    tree = TreeTemplate({"direct": "x-{{ missing_name | quote }}", "jinja": "x-{{ missing_name + 1 }}"}, ("t",))
    messages.clear()
    tree.render(renderer, lambda path, message: messages.append(message), {})
    assert len(messages) == 2 and messages[0] == messages[1]


def test_an_unsafe_attribute_is_refused_on_the_direct_path() -> None:
    messages: list[str] = []
    tree = TreeTemplate({"s": "{{ value.__class__.__mro__ }}"}, ("t",))
    tree.render(Renderer({}), lambda path, message: messages.append(message), {"value": "x"})
    assert len(messages) == 1 and "template" in messages[0]
