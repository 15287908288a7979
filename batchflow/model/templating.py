"""Render the Jinja2 templates inside a workflow's string values, in a sandbox.

Templates are rendered value by value on the parsed tree (not on the file's
text), so every rendered value keeps the position of the string it came from
and errors name the YAML path. The environment is Jinja2's
:class:`~jinja2.sandbox.SandboxedEnvironment`: a workflow from someone else
cannot reach Python internals. Undefined variables are errors.

A string that is exactly one expression, such as ``"{{ numwords }}"``, keeps
the value's type (an integer stays an integer, a list stays a list), so
variables can fill numeric and list fields.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jinja2
import jinja2.meta
import jinja2.sandbox
from jinja2.sandbox import SandboxedEnvironment

Path = tuple

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}|\{%).)*)\}\}\s*$", re.S)


def shell_quote(value: Any) -> str:
    """The ``quote`` filter: make ``value`` one literal word for a POSIX shell."""
    return shlex.quote(str(value))


#: The largest string or list a ``*`` may make, and the largest number (in bits) a ``**`` may make.
MAX_REPEATED_LENGTH = 1_000_000
MAX_POWER_BITS = 4096


class _BoundedSandbox(SandboxedEnvironment):
    """The sandbox, with ``*`` and ``**`` bounded: ``{{ 'x' * 10**12 }}`` would otherwise take all memory.

    Jinja2's sandbox already bounds ``range``; these are the other two ways a
    short template makes a huge value.
    """

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _is_int(left) and _is_int(right) and right > 0:
            if max(left.bit_length(), 1) * right > MAX_POWER_BITS:
                raise jinja2.sandbox.SecurityError(f"{left} ** {right} is too large a number")
        if operator == "*":
            for sized, count in ((left, right), (right, left)):
                if (
                    isinstance(sized, (str, list, tuple))
                    and _is_int(count)
                    and len(sized) * count > MAX_REPEATED_LENGTH
                ):
                    raise jinja2.sandbox.SecurityError(
                        f"repeating a value {count} times makes more than {MAX_REPEATED_LENGTH:,} items"
                    )
        return super().call_binop(context, operator, left, right)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def make_environment() -> SandboxedEnvironment:
    """The sandboxed Jinja2 environment every workflow template is rendered with."""
    env = _BoundedSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["quote"] = shell_quote
    return env


class TemplateProblem(Exception):
    """A template could not be rendered; ``message`` says why in user terms."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def is_template(text: str) -> bool:
    """True when ``text`` contains Jinja2 syntax."""
    return "{{" in text or "{%" in text or "{#" in text


@dataclass
class Renderer:
    """Renders strings and whole trees with one set of variables, and records which names were used."""

    variables: dict[str, Any]
    env: SandboxedEnvironment = field(default_factory=make_environment)
    used: set[str] = field(default_factory=set)
    #: Compiled templates by source text, shared by :meth:`with_variables` copies:
    #: a 10,000-task sweep compiles each template string once, not 10,000 times.
    compiled: dict[str, tuple[set[str], Callable[..., Any]]] = field(default_factory=dict)

    def with_variables(self, extra: dict[str, Any]) -> Renderer:
        """A renderer that also sees ``extra``, sharing this one's cache and used-name record."""
        return Renderer({**self.variables, **extra}, self.env, self.used, self.compiled)

    def _compile(self, text: str) -> tuple[set[str], Callable[..., Any]]:
        entry = self.compiled.get(text)
        if entry is None:
            names = self.referenced(text)
            single = _SINGLE_EXPRESSION.match(text)
            if single:
                expression = self.env.compile_expression(single.group("expr"), undefined_to_none=False)

                def run(**variables: Any) -> Any:
                    value = expression(**variables)
                    if isinstance(value, jinja2.Undefined):
                        str(value)  # raises UndefinedError with Jinja's own message
                    return value

                entry = (names, run)
            else:
                entry = (names, self.env.from_string(text).render)
            self.compiled[text] = entry
        return entry

    def referenced(self, text: str) -> set[str]:
        """Variable names the template ``text`` refers to (empty when it does not parse)."""
        try:
            return set(jinja2.meta.find_undeclared_variables(self.env.parse(text)))
        except jinja2.TemplateSyntaxError:
            return set()

    def render_string(self, text: str) -> Any:
        """Render one string; a lone ``{{ expression }}`` keeps its value's type."""
        if not is_template(text):
            return text
        try:
            names, run = self._compile(text)
            self.used |= names
            return run(**self.variables)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateProblem(f"template syntax error: {exc.message}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateProblem(f"template error: {_undefined_message(exc, self.variables)}") from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateProblem(f"template refused by the sandbox: {exc}") from None
        except Exception as exc:  # any other failure inside user template code
            raise TemplateProblem(f"template error: {type(exc).__name__}: {exc}") from None

    def render_tree(
        self,
        value: Any,
        path: Path,
        on_error: Callable[[Path, str], None],
        skip: Iterable[Path] = (),
    ) -> tuple[Any, set[Path]]:
        """Render every string below ``value``; return the new tree and the paths that were templates.

        Errors are passed to ``on_error(path, message)`` and the string is kept
        unrendered, so one bad template does not hide the others. Subtrees at
        the paths in ``skip`` are copied untouched.
        """
        skipped = {tuple(p) for p in skip}
        templated: set[Path] = set()

        def walk(node: Any, here: Path) -> Any:
            if here in skipped:
                return node
            if isinstance(node, dict):
                return {k: walk(v, here + (k,)) for k, v in node.items()}
            if isinstance(node, list):
                return [walk(v, here + (i,)) for i, v in enumerate(node)]
            if isinstance(node, str) and is_template(node):
                templated.add(here)
                try:
                    return self.render_string(node)
                except TemplateProblem as problem:
                    on_error(here, problem.message)
                    return node
            return node

        return walk(value, tuple(path)), templated


def _undefined_message(exc: jinja2.UndefinedError, variables: dict[str, Any]) -> str:
    import difflib

    message = exc.message or "undefined value"
    found = re.match(r"'([A-Za-z_][A-Za-z0-9_]*)' is undefined", message)
    if found:
        name = found.group(1)
        close = difflib.get_close_matches(name, list(variables), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"undefined variable {name!r}{hint}; define it under vars: or pass --set {name}=VALUE"
    return message
