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
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

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
    #: For a string :func:`_direct` can render (``point-{{ value }}``, ``{{ file.name | quote }}``),
    #: the function that does, faster than the code Jinja generates (see :func:`_direct`).
    direct: Callable[[Context], Any] | None = None

    @property
    def run(self) -> Callable[[Context], Any]:
        """The function rendering this template against a context."""
        return self._run_jinja if self.direct is None else self.direct

    def _run_jinja(self, context: Context) -> Any:
        """Render against ``context``; what the template set at its top level is cleared afterwards.

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


# Rendering straight from the parsed tree. Most template strings of a workflow are literal text
# and expressions such as ``value``, ``file.name | quote`` or ``(file.stem ~ '.mp3') | quote``, and a
# sweep renders each 100,000 times. For those, the functions below take the steps the code Jinja
# generates takes, in the same order: a name is looked up in the context (a missing one is the
# environment's undefined value, which fails when used), an attribute goes through the sandbox's
# ``getattr``, ``~`` joins the ``str`` of its parts, a filter is called on its argument, and each
# expression of the text goes through ``str``. Anything else is left to Jinja.


def _direct(body: nodes.Node, env: SandboxedEnvironment, single: bool) -> Callable[[Context], Any] | None:
    """A function rendering ``body`` (the lone expression when ``single``, else the parsed template)
    against a context, or None when it holds anything but what the functions here render."""
    if single:
        expression = _expression(body, env)
        if expression is None:
            return None

        def run_single(context: Context) -> Any:
            value = expression(context)
            if isinstance(value, jinja2.Undefined):
                str(value)  # raises UndefinedError with Jinja's own message
            return value

        return run_single
    if not isinstance(body, nodes.Template) or len(body.body) != 1 or not isinstance(body.body[0], nodes.Output):
        return None
    return _joined(body.body[0].nodes, env)


def _joined(
    parts: list[nodes.Node], env: SandboxedEnvironment, *, evaluate_first: bool = False
) -> Callable[[Context], str] | None:
    """A function joining the ``str`` of each of ``parts`` (text, constants, expressions), or None.

    Text turns each expression into ``str`` as it comes to it; ``~`` (``evaluate_first``)
    evaluates all its parts before turning any into ``str``, as Jinja's ``str_join`` does,
    so that the same missing name is the one reported.
    """
    pieces: list[str] = []
    slots: list[tuple[int, Callable[[Context], Any]]] = []
    for node in parts:
        if isinstance(node, nodes.TemplateData):
            pieces.append(node.data)
        elif isinstance(node, nodes.Const) and _plain_constant(node.value):
            pieces.append(str(node.value))
        else:
            expression = _expression(node, env)
            if expression is None:
                return None
            slots.append((len(pieces), expression))
            pieces.append("")

    if evaluate_first:

        def join_evaluated(context: Context) -> str:
            values = [(index, expression(context)) for index, expression in slots]
            text = pieces.copy()
            for index, value in values:
                text[index] = str(value)
            return "".join(text)

        return join_evaluated

    def join(context: Context) -> str:
        text = pieces.copy()
        for index, expression in slots:
            text[index] = str(expression(context))
        return "".join(text)

    return join


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


def _expression(node: nodes.Node, env: SandboxedEnvironment) -> Callable[[Context], Any] | None:
    """A function evaluating the expression ``node`` against a context, or None when it is not one of
    a name, a constant, an attribute, ``~`` or a filter without arguments."""
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name != "self":  # Jinja's own ``self``
        name = node.name
        undefined = env.undefined

        def load(context: Context) -> Any:
            # Context.resolve_or_missing, inline: what a template set, else the variables.
            found = context.vars
            if name not in found:
                found = context.parent
                if name not in found:
                    return undefined(name=name)
            return found[name]

        return load
    if isinstance(node, nodes.Const) and _plain_constant(node.value):
        constant = node.value
        return lambda context: constant
    if isinstance(node, nodes.Getattr) and node.ctx == "load":
        owner = _expression(node.node, env)
        attribute = node.attr
        if owner is None:
            return None
        return lambda context: env.getattr(owner(context), attribute)
    if isinstance(node, nodes.Concat):
        return _joined(node.nodes, env, evaluate_first=True)
    if isinstance(node, nodes.Filter):
        function = env.filters.get(node.name)
        plain_call = not (node.args or node.kwargs or node.dyn_args or node.dyn_kwargs)
        if function is None or not plain_call or node.node is None or hasattr(function, "jinja_pass_arg"):
            return None
        if _folds_to_a_bad_constant(node, env):
            return None
        argument = _expression(node.node, env)
        if argument is None:
            return None
        return lambda context: function(argument(context))
    return None


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
                direct = _direct(expression, self.env, single=True)
                entry = _Compiled(names, self.env.from_string(assign), single=True, direct=direct)
            else:
                direct = _direct(self.env.parse(text), self.env, single=False)
                entry = _Compiled(names, self.env.from_string(text), single=False, direct=direct)
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

    def render_string(self, text: str, context: Context | None = None) -> Any:
        """Render one string; a lone ``{{ expression }}`` keeps its value's type.

        ``context`` (from :meth:`context`) holds the variables; default this renderer's.
        """
        if not is_template(text):
            return text
        if context is None:
            context = self.context()
        try:
            compiled = self._compile(text)
            self.used |= compiled.names
            return compiled.run(context)
        except Exception as exc:
            raise self.problem(exc, context) from None

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
    therefore be treated as read-only except at the :attr:`templated` paths.
    """

    def __init__(self, value: Any, path: Path, skip: Iterable[Path] = ()) -> None:
        self._skipped = {tuple(p) for p in skip}
        self._value = value
        self._path = tuple(path)
        found: dict[Path, str] = {}

        def take_next(here: Path, text: str) -> Callable[[Callable[[], Any]], Any]:
            found[here] = text
            return _take

        #: Builds a rendered tree from the strings' values, given the function returning each in turn.
        self._from_values = self._assembler(value, self._path, take_next)
        #: The template strings, in the order ``_from_values`` takes their values.
        self._leaves: tuple[tuple[Path, str], ...] = tuple(found.items())
        # Once every string has compiled for a renderer: that renderer, and the function that builds
        # a rendered tree straight from a context, each string's compiled run in its place.
        self._direct: tuple[Renderer, Callable[[Context], Any]] | None = None
        # The context of the last render and the names it was made for (see render).
        self._last: tuple[Renderer, frozenset[str], Context] | None = None
        #: The paths of the template strings: the only values that differ between rendered trees.
        self.templated: frozenset[Path] = frozenset(found)
        #: The paths of template strings that always render to text (not a lone ``{{ expression }}``).
        self.text_paths: frozenset[Path] = frozenset(
            p for p, text in found.items() if not _SINGLE_EXPRESSION.match(text)
        )

    def _assembler(
        self, node: Any, here: Path, leaf: Callable[[Path, str], Callable[[Any], Any]]
    ) -> Callable[[Any], Any] | None:
        """A function of one argument that makes this node's rendered copy, or None when nothing below
        it is a template. Each template string is rendered by ``leaf(path, text)``, called here once,
        which returns the function giving the string's value from that argument. A mapping or list is
        copied whole and then has its templated entries replaced, in the order they are walked here."""
        if here in self._skipped:
            return None
        if isinstance(node, str) and is_template(node):
            return leaf(here, node)
        if not isinstance(node, (dict, list)):
            return None
        changing: list[tuple[Any, Callable[[Any], Any]]] = []  # (key or index, what makes its value)
        for key, child in node.items() if isinstance(node, dict) else enumerate(node):
            entry = self._assembler(child, here + (key,), leaf)
            if entry is not None:
                changing.append((key, entry))
        if not changing:
            return None
        make_copy = dict.copy if isinstance(node, dict) else list.copy

        def assemble(argument: Any) -> Any:
            copy = make_copy(node)
            for key, entry in changing:
                copy[key] = entry(argument)
            return copy

        return assemble

    def render(
        self, renderer: Renderer, on_error: Callable[[Path, str], None], extra: dict[str, Any] | None = None
    ) -> Any:
        """The tree rendered with ``renderer``'s variables and ``extra``; a string that fails is reported
        through ``on_error(path, message)`` and kept as it was.

        Renders one after another with ``extra`` of the same names (a sweep's ``index``, ``value``...)
        share one context, its variables updated in place: making a context per task cost as
        much as rendering a short template.
        """
        if self._from_values is None:
            return self._value
        extra = extra or {}
        last = self._last
        if last is not None and last[0] is renderer and last[1] == extra.keys():
            context = last[2]
            context.parent.update(extra)
        else:
            context = renderer.context(extra)
            self._last = (renderer, frozenset(extra), context)
        direct = self._direct
        if direct is not None and direct[0] is renderer:
            try:
                return direct[1](context)
            except Exception:  # what failed is found again, and reported, below, from a clean context
                context = renderer.context(extra)
        values, context = self._render_each(renderer, context, on_error, extra)
        self._last = (renderer, frozenset(extra), context)
        return self._from_values(iter(values).__next__)

    def _render_each(
        self, renderer: Renderer, context: Context, on_error: Callable[[Path, str], None], extra: dict[str, Any]
    ) -> tuple[list[Any], Context]:
        """Render the strings one by one, reporting each that fails (and keeping its text); the values and
        the context to go on with. Once every string has compiled, later renders go the direct way."""
        values = []
        runs: dict[Path, Callable[[Context], Any]] = {}
        for here, text in self._leaves:
            try:
                compiled = renderer._compile(text)
                renderer.used |= compiled.names
                runs[here] = compiled.run
                values.append(compiled.run(context))
            except Exception as exc:
                on_error(here, renderer.problem(exc, context).message)
                context = renderer.context(extra)  # a template that failed midway may have left state behind
                values.append(text)
        if len(runs) == len(self._leaves) and (self._direct is None or self._direct[0] is not renderer):
            direct = self._assembler(self._value, self._path, lambda here, text: runs[here])
            self._direct = (renderer, direct)  # type: ignore[assignment]
        return values, context


def _take(take: Callable[[], Any]) -> Any:
    return take()


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
