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

import math
import operator
import re
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Union

import jinja2
import jinja2.meta
import jinja2.sandbox
from jinja2 import nodes
from jinja2.runtime import Context
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


@dataclass(frozen=True)
class _Compiled:
    """One template string, compiled once and run against any :class:`jinja2.runtime.Context`."""

    names: frozenset[str]  # the variables it refers to
    template: jinja2.Template
    single: bool  # a lone ``{{ expression }}``: the value keeps its type
    #: For a string :func:`_column` can render (``point-{{ value }}``, ``{{ file.name | quote }}``),
    #: the function rendering it for many rows at once, straight from the parsed tree.
    by_column: Callable[[_Rows], _Column] | None = None
    #: Whether it calls anything (``{{ items.append(value) }}``): a call may change what the next string
    #: sees, so a tree holding one is rendered a row at a time, its strings in order.
    calls: bool = False

    def column(self, rows: _Rows, new_context: Callable[[], Context]) -> _Column:
        """The string rendered for each of ``rows``: a column at a time where it can be, else by Jinja row by
        row, in a context from ``new_context`` (with the variables the rows share)."""
        if self.by_column is not None:
            return self.by_column(rows)
        return _row_by_row(self.run, new_context(), rows)

    def run(self, context: Context) -> Any:
        """Render against ``context`` with Jinja; what the template set at its top level is cleared afterwards.

        A lone expression is compiled as ``{% set result = expression %}`` (as
        Jinja's own ``compile_expression`` does), so its value is read back
        from the context instead of being turned into text.
        """
        if self.template.blocks:
            # Blocks are looked up in the context, so this template needs one of its own.
            context = self.template.new_context(context.parent, shared=True)
        if not self.single:
            text = "".join(self.template.root_render_func(context))
            if context.vars:
                _forget(context)
            return text
        try:
            for _ in self.template.root_render_func(context):
                pass
            value = context.vars["result"]
        finally:
            _forget(context)
        if isinstance(value, jinja2.Undefined):
            str(value)  # raises UndefinedError with Jinja's own message
        return value


# Rendering a column at a time. A sweep renders each string of its task template once per task,
# 100,000 times, and most are literal text and expressions such as ``value``, ``file.name | quote``
# or ``(file.stem ~ '.mp3') | quote``. For those, the functions below evaluate each part of the
# expression for every row (task) at once, a C loop each (``map``), and a part that only reads
# the variables every row shares is evaluated once. The steps are those the code Jinja generates
# takes: a name is looked up (a task's own variables first, then the shared ones), an attribute
# goes through the sandbox's ``getattr``, ``~`` joins the ``str`` of its parts, a filter is called
# on its argument, and each expression of the text goes through ``str``. They differ from Jinja
# in one way: what fails fails for the whole column, and the caller then renders the rows one by
# one with Jinja, which reports the failure as it always has (see TreeTemplate.render_each).
# Anything else in a string is rendered with Jinja, one row after another.


@dataclass(frozen=True)
class _Rows:
    """The rows a column is rendered for: the variables all share, and each row's own (same names in each)."""

    shared: dict[str, Any]
    own: list[dict[str, Any]]
    own_names: frozenset[str]


@dataclass(frozen=True)
class _Same:
    """A column whose every row holds ``value`` (one object, shared by the rows)."""

    value: Any


#: The values of one expression or string for each row.
_Column = Union[list[Any], _Same]


class _RowByRow(Exception):
    """A column cannot be rendered whole; the rows are rendered one by one, where the failure is reported."""


def _column(body: nodes.Node, env: SandboxedEnvironment, single: bool) -> Callable[[_Rows], _Column] | None:
    """A function rendering ``body`` (the lone expression when ``single``, else the parsed template)
    for many rows at once, or None when it holds anything but what the functions here render."""
    if single:
        expression = _column_expression(body, env)
        if expression is None:
            return None

        def run_single(rows: _Rows) -> _Column:
            column = expression(rows)
            kinds = {type(column.value)} if isinstance(column, _Same) else set(map(type, column))
            if any(issubclass(kind, jinja2.Undefined) for kind in kinds):
                raise _RowByRow("undefined")  # Jinja's message comes from the row that has it
            return column

        return run_single
    if not isinstance(body, nodes.Template) or len(body.body) != 1 or not isinstance(body.body[0], nodes.Output):
        return None
    return _column_joined(body.body[0].nodes, env)


def _column_joined(parts: list[nodes.Node], env: SandboxedEnvironment) -> Callable[[_Rows], _Column] | None:
    """A function joining, row by row, the ``str`` of each of ``parts`` (text, constants, expressions)."""
    pieces: list[Callable[[_Rows], _Column]] = []
    for node in parts:
        if isinstance(node, nodes.TemplateData):
            pieces.append(_constant(node.data))
        elif isinstance(node, nodes.Const) and _plain_constant(node.value):
            pieces.append(_constant(str(node.value)))
        else:
            expression = _column_expression(node, env)
            if expression is None:
                return None
            pieces.append(expression)

    def join(rows: _Rows) -> _Column:
        texts = [_apply(str, piece(rows)) for piece in pieces]
        if all(isinstance(text, _Same) for text in texts):
            return _Same("".join([text.value for text in texts]))  # type: ignore[union-attr]
        if len(texts) == 1:
            return texts[0]
        count = len(rows.own)
        return list(
            map(
                "".join,
                zip(*[[text.value] * count if isinstance(text, _Same) else text for text in texts], strict=True),
            )
        )

    return join


def _constant(value: Any) -> Callable[[_Rows], _Column]:
    same = _Same(value)
    return lambda rows: same


def _apply(function: Callable[[Any], Any], column: _Column) -> _Column:
    """``function`` of each row's value; of the one value when all rows share it."""
    if isinstance(column, _Same):
        return _Same(function(column.value))
    return list(map(function, column))


def _folds_to_a_bad_constant(node: nodes.Expr, env: SandboxedEnvironment) -> bool:
    """Whether Jinja folds ``node`` at compile time (a filter of a constant) into a constant it then fails
    to write (see :func:`_plain_constant`)."""
    try:
        value = node.as_const(nodes.EvalContext(env))
    except nodes.Impossible:
        return False
    return not _plain_constant(value)


def _plain_constant(value: Any) -> bool:
    """Whether Jinja's code for the constant ``value`` is the value: not so for an infinite or NaN float,
    which it writes as a name that does not exist (``inf``), and fails."""
    return not isinstance(value, float) or math.isfinite(value)


def _column_expression(node: nodes.Node, env: SandboxedEnvironment) -> Callable[[_Rows], _Column] | None:
    """A function evaluating the expression ``node`` for many rows at once, or None when it is not one
    of a name, a constant, an attribute, ``~`` or a filter without arguments."""
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name != "self":  # Jinja's own ``self``
        name = node.name
        take = operator.itemgetter(name)

        def load(rows: _Rows) -> _Column:
            if name in rows.own_names:
                return list(map(take, rows.own))
            if name in rows.shared:
                return _Same(rows.shared[name])
            raise _RowByRow(name)  # undefined: Jinja says so, with its message, row by row

        return load
    if isinstance(node, nodes.Const) and _plain_constant(node.value):
        return _constant(node.value)
    if isinstance(node, nodes.Getattr) and node.ctx == "load":
        owner = _column_expression(node.node, env)
        attribute = node.attr
        if owner is None:
            return None

        def get(rows: _Rows) -> _Column:
            column = owner(rows)
            if isinstance(column, _Same):
                return _Same(env.getattr(column.value, attribute))
            return list(map(env.getattr, column, repeat(attribute)))

        return get
    if isinstance(node, nodes.Concat):
        return _column_joined(node.nodes, env)
    if isinstance(node, nodes.Filter):
        function = env.filters.get(node.name)
        plain_call = not (node.args or node.kwargs or node.dyn_args or node.dyn_kwargs)
        if function is None or not plain_call or node.node is None or hasattr(function, "jinja_pass_arg"):
            return None
        if _folds_to_a_bad_constant(node, env):
            return None
        argument = _column_expression(node.node, env)
        if argument is None:
            return None

        def filtered(rows: _Rows) -> _Column:
            column = argument(rows)
            if isinstance(column, _Same):
                value = function(column.value)
                if type(value) in _IMMUTABLE:
                    return _Same(value)
                # a new list, dict or iterator for each row, as Jinja makes one each time
                return [value, *(function(column.value) for _ in rows.own[1:])] if rows.own else []
            return list(map(function, column))

        return filtered
    return None


#: What a filter may return once for all the rows that share its argument.
_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


def _row_by_row(run: Callable[[Context], Any], context: Context, rows: _Rows) -> list[Any]:
    """``run`` once per row, in ``context`` with each row's variables updated in place: making a context
    per row cost as much as rendering a short template."""
    update = context.parent.update
    values = []
    for own in rows.own:
        update(own)
        values.append(run(context))
    return values


def _forget(context: Context) -> None:
    """Drop what a template set at its top level, so that the next template run in ``context`` does not see it."""
    context.vars.clear()
    context.exported_vars.clear()


@dataclass
class Renderer:
    """Renders strings and whole trees with one set of variables, and records which names were used."""

    variables: dict[str, Any]
    env: SandboxedEnvironment = field(default_factory=make_environment)
    used: set[str] = field(default_factory=set)
    #: Compiled templates by source text: a 10,000-task sweep compiles each
    #: template string once, not 10,000 times.
    compiled: dict[str, _Compiled] = field(default_factory=dict)

    def _compile(self, text: str) -> _Compiled:
        entry = self.compiled.get(text)
        if entry is None:
            names = frozenset(self.referenced(text))
            if _SINGLE_EXPRESSION.match(text):
                # The parsed string is one Output node: whitespace around one expression.
                (output,) = self.env.parse(text).body
                (expression,) = [node for node in output.nodes if not isinstance(node, nodes.TemplateData)]
                assign = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expression, lineno=1)], lineno=1)
                assign.set_environment(self.env)
                by_column = _column(expression, self.env, single=True)
                calls = any(True for _ in expression.find_all(nodes.Call))
                entry = _Compiled(names, self.env.from_string(assign), True, by_column, calls)
            else:
                parsed = self.env.parse(text)
                by_column = _column(parsed, self.env, single=False)
                calls = any(True for _ in parsed.find_all(nodes.Call))
                entry = _Compiled(names, self.env.from_string(text), False, by_column, calls)
            self.compiled[text] = entry
        return entry

    def referenced(self, text: str) -> set[str]:
        """Variable names the template ``text`` refers to (empty when it does not parse)."""
        try:
            return set(jinja2.meta.find_undeclared_variables(self.env.parse(text)))
        except jinja2.TemplateSyntaxError:
            return set()

    def context(self, extra: dict[str, Any] | None = None) -> Context:
        """A template context with this renderer's variables and ``extra``, to render many strings with.

        Made once per set of variables, not once per string: making a context
        (a copy of every variable and global) cost more than running a short template.
        """
        # Made as Template.new_context(..., shared=True) makes it, less the copy of the template's
        # globals into a set, which took most of the time; rendering never reads that set.
        parent = {**self.env.globals, **self.variables, **(extra or {})}
        return self.env.context_class(self.env, parent, None, {})

    def problem(self, exc: Exception, context: Context) -> TemplateProblem:
        """What went wrong in a template, in the user's terms."""
        if isinstance(exc, jinja2.TemplateSyntaxError):
            return TemplateProblem(f"template syntax error: {exc.message}")
        if isinstance(exc, jinja2.UndefinedError):
            known = [name for name in context.parent if name not in self.env.globals or name in self.variables]
            return TemplateProblem(f"template error: {_undefined_message(exc, known)}")
        if isinstance(exc, jinja2.exceptions.SecurityError):
            return TemplateProblem(f"template refused by the sandbox: {exc}")
        # any other failure inside user template code
        return TemplateProblem(f"template error: {type(exc).__name__}: {exc}")

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
        the paths in ``skip`` are left as they are.
        """
        tree = TreeTemplate(value, path, skip)
        return tree.render(self, on_error), set(tree.templated)


class TreeTemplate:
    """A tree of values with template strings in it, walked once and then rendered with many sets of variables.

    A sweep renders its task template once per task. Walking the template
    again for each task, and copying what holds no template, cost more than
    rendering: here the walk is done once, into a function that rebuilds only
    the mappings and lists on the way to a template string. Everything else is
    shared with the template and between the rendered trees, which must
    therefore be treated as read-only; so must the rendered values, which rows
    share when they do not depend on what differs between them.
    """

    def __init__(self, value: Any, path: Path, skip: Iterable[Path] = ()) -> None:
        self._skipped = {tuple(p) for p in skip}
        self._value = value
        found: dict[Path, str] = {}
        #: Builds the rendered trees from the strings' columns.
        self._from_values = self._assembler(value, tuple(path), found)
        #: The template strings, in the order ``_from_values`` takes their values.
        self._leaves: tuple[tuple[Path, str], ...] = tuple(found.items())
        #: The paths of the template strings: the only values that differ between rendered trees.
        self.templated: frozenset[Path] = frozenset(found)
        #: The paths of template strings that always render to text (not a lone ``{{ expression }}``).
        self.text_paths: frozenset[Path] = frozenset(
            p for p, text in found.items() if not _SINGLE_EXPRESSION.match(text)
        )

    def _assembler(self, node: Any, here: Path, found: dict[Path, str]) -> _Assemble | None:
        """The function making this node's rendered copies from the strings' columns (see :data:`_Assemble`),
        or None when nothing below it is a template. Each template string is put into ``found`` by its
        path, in the order its column is taken. A mapping or list is copied whole, once per row, and
        then has its templated entries replaced, an entry for all rows at a time."""
        if here in self._skipped:
            return None
        if isinstance(node, str) and is_template(node):
            found[here] = node
            return _next_column
        if not isinstance(node, (dict, list)):
            return None
        changing: list[tuple[Any, _Assemble]] = []  # (key or index, what makes its values)
        for key, child in node.items() if isinstance(node, dict) else enumerate(node):
            entry = self._assembler(child, here + (key,), found)
            if entry is not None:
                changing.append((key, entry))
        if not changing:
            return None
        make_copy = dict.copy if isinstance(node, dict) else list.copy

        def assemble(columns: Iterator[list[Any]], count: int) -> list[Any]:
            copies = list(map(make_copy, repeat(node, count)))
            for key, entry in changing:
                for copy, value in zip(copies, entry(columns, count), strict=True):
                    copy[key] = value
            return copies

        return assemble

    def render(
        self, renderer: Renderer, on_error: Callable[[Path, str], None], extra: dict[str, Any] | None = None
    ) -> Any:
        """The tree rendered with ``renderer``'s variables and ``extra``; a string that fails is reported
        through ``on_error(path, message)`` and kept as it was."""
        return next(self.render_each(renderer, on_error, [extra or {}]))

    def render_each(
        self, renderer: Renderer, on_error: Callable[[Path, str], None], rows: list[dict[str, Any]]
    ) -> Iterator[Any]:
        """The tree rendered once for each of ``rows``: the variables that row adds to the renderer's (a
        sweep's ``value``, ``index`` and ``count``; rows with other names are rendered one by one).

        Each string is rendered for all rows at once (see :func:`_column`). When one fails for any
        row, the rows are rendered one by one instead, each string with Jinja, and every failure is
        reported through ``on_error(path, message)``, the string kept as it was.
        """
        if not rows:
            return
        if self._from_values is None:
            yield from repeat(self._value, len(rows))
            return
        columns = self._columns(renderer, rows)
        if columns is None:
            yield from self._one_by_one(renderer, on_error, rows)
        else:
            yield from self._from_values(iter(columns), len(rows))

    def _columns(self, renderer: Renderer, rows: list[dict[str, Any]]) -> list[list[Any]] | None:
        """Each string's values for ``rows``, in the order of :attr:`_leaves`; None when any string fails,
        calls anything, or the rows do not all have the same names."""
        names = rows[0].keys()
        if not all(map(names.__eq__, map(dict.keys, rows))):
            return None
        try:
            compiled = [renderer._compile(text) for _, text in self._leaves]
        except Exception:  # reported row by row
            return None
        if any(entry.calls for entry in compiled):
            return None
        together = _Rows({**renderer.env.globals, **renderer.variables}, rows, frozenset(names))
        columns = []
        try:
            for entry in compiled:
                renderer.used |= entry.names
                column = entry.column(together, renderer.context)
                columns.append([column.value] * len(rows) if isinstance(column, _Same) else column)
        except Exception:  # found again, and reported, row by row
            return None
        return columns

    def _one_by_one(
        self, renderer: Renderer, on_error: Callable[[Path, str], None], rows: list[dict[str, Any]]
    ) -> Iterator[Any]:
        """The tree rendered for each row in turn, each string with Jinja, each failure reported (the
        string kept as it was). Rows with the same names share one context, its variables updated in place."""
        context: Context | None = None
        names: Any = None
        for row in rows:
            if context is None or row.keys() != names:
                context, names = renderer.context(row), row.keys()
            else:
                context.parent.update(row)
            values = []
            for here, text in self._leaves:
                try:
                    compiled = renderer._compile(text)
                    renderer.used |= compiled.names
                    values.append(compiled.run(context))
                except Exception as exc:
                    on_error(here, renderer.problem(exc, context).message)
                    context = renderer.context(row)  # a template that failed midway may have left state behind
                    values.append(text)
            (tree,) = self._from_values(iter([[value] for value in values]), 1)  # type: ignore[misc]
            yield tree


#: Makes the rendered copies of one node of a tree, one per row, given the columns of the
#: strings below it (taken from the iterator in the order they were found) and the number of rows.
_Assemble = Callable[[Iterator[list[Any]], int], list[Any]]


def _next_column(columns: Iterator[list[Any]], count: int) -> list[Any]:
    return next(columns)


def _undefined_message(exc: jinja2.UndefinedError, variables: Iterable[str]) -> str:
    import difflib

    message = exc.message or "undefined value"
    found = re.match(r"'([A-Za-z_][A-Za-z0-9_]*)' is undefined", message)
    if found:
        name = found.group(1)
        close = difflib.get_close_matches(name, list(variables), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"undefined variable {name!r}{hint}; define it under vars: or pass --set {name}=VALUE"
    return message
