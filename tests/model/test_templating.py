"""Strings made only of text and plain ``{{ name }}`` are put together without Jinja's machinery: the same result.

``point-{{ value }}`` is most of what a sweep renders, 100,000 times; it is
rendered from the parts Jinja's own parser found, each value through ``str``,
as the code Jinja generates for it does. These tests hold that to Jinja itself.
"""

from __future__ import annotations

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
]
VALUES = [0, 7, -3, 2**80, 1.5, 1e-7, True, False, None, "text", "", "naïve", [1, "a"], {"k": 1}, (1, 2)]


def jinja_text(text: str, variables: dict) -> str:
    return make_environment().from_string(text).render(**variables)


@pytest.mark.parametrize("text", TEXTS)
def test_plain_strings_render_as_jinja_renders_them(text: str) -> None:
    renderer = Renderer({"other": "x"})
    tree = TreeTemplate({"s": text}, ("t",))
    compiled = renderer._compile(text)
    assert compiled.parts is not None, "this string takes the plain path"
    problems: list[tuple] = []
    for value in VALUES:
        rendered = tree.render(renderer, lambda path, message: problems.append((path, message)), {"value": value})
        expected = jinja_text(text, {"value": value, "other": "x"}) if not compiled.single else value
        assert rendered["s"] == expected, (text, value)
    assert problems == []


def test_a_lone_name_keeps_its_type_as_before() -> None:
    renderer = Renderer({"nodes": 2, "flags": ["a", "b"]})
    tree = TreeTemplate({"n": "{{ nodes }}", "f": " {{ flags }} ", "v": "{{ value }}"}, ("t",))
    rendered = tree.render(renderer, lambda *_: None, {"value": None})
    assert rendered == {"n": 2, "f": ["a", "b"], "v": None}


def test_other_templates_still_go_through_jinja() -> None:
    renderer = Renderer({})
    for text in [
        "{{ value | quote }}",
        "{{ value.stem }}",
        "{{ value + 1 }}",
        "{% if value %}y{% endif %}",
        "{{ 'a' }}",
    ]:
        assert renderer._compile(text).parts is None, text


def test_a_missing_name_is_the_same_error_on_both_paths() -> None:
    messages: list[str] = []
    tree = TreeTemplate({"plain": "x-{{ missing_name }}", "jinja": "x-{{ missing_name | string }}"}, ("t",))
    renderer = Renderer({"missing_nam": 1})
    rendered = tree.render(renderer, lambda path, message: messages.append(message), {})
    assert rendered == {"plain": "x-{{ missing_name }}", "jinja": "x-{{ missing_name | string }}"}
    assert len(messages) == 2 and messages[0] == messages[1]
    assert "undefined variable 'missing_name'" in messages[0] and "missing_nam" in messages[0]
