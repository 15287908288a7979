"""Variable declarations: each variable's type and constraints, and the check of every value against them.

A declaration has two forms under ``vars:``::

    vars:
      numwords: 3                # short: the type follows from the default (here integer)
      mode:                      # long: a mapping with a ``type`` key
        type: string
        enum: [fast, exact]
        default: fast
        description: How words are counted.

A long form without ``default`` declares a required variable. A short form
whose default is ``null`` accepts any value. Values typed on the command line
or in the environment arrive as text and are read by the declared type, so
``--set tag=007`` is the string ``007`` when ``tag`` is a string, and
``--set 'files=[a, b]'`` is a list when ``files`` is an array. Values from
vars files are YAML already and must have the type as written.

A wrong value is reported where the variable is declared, and the message
names where the value came from, so the user sees both ends at once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from batchflow.diagnostics import Diagnostic
from batchflow.model.variables import Origin, Variables
from batchflow.model.yamlfile import Positions

TYPES = ("string", "integer", "number", "boolean", "array", "object")
_A = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
}
_REQUIRED = object()


@dataclass(frozen=True)
class Declaration:
    """One declared variable. ``type`` is None when any value goes (a ``null`` default)."""

    name: str
    type: str | None
    default: Any = _REQUIRED
    inferred: bool = True
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[Any, ...] | None = None
    pattern: str | None = None
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


def is_long_form(value: Any) -> bool:
    """A mapping with a ``type`` key is a long-form declaration, never a default."""
    return isinstance(value, dict) and "type" in value


def type_of(value: Any) -> str | None:
    """The declared type a short-form default implies."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def declarations(raw: Any) -> dict[str, Declaration]:
    """The declarations under ``vars:``; malformed long forms are left to the schema and skipped here."""
    result: dict[str, Declaration] = {}
    if not isinstance(raw, dict):
        return result
    for name, value in raw.items():
        if not is_long_form(value):
            result[name] = Declaration(name, type_of(value), value)
            continue
        if value.get("type") not in TYPES:
            continue
        enum = value.get("enum")
        pattern = value.get("pattern")
        bounds = [value.get(k) for k in ("minimum", "maximum")]
        if any(b is not None and (isinstance(b, bool) or not isinstance(b, (int, float))) for b in bounds):
            continue
        result[name] = Declaration(
            name,
            value["type"],
            value.get("default", _REQUIRED),
            inferred=False,
            minimum=bounds[0],
            maximum=bounds[1],
            enum=tuple(enum) if isinstance(enum, list) else None,
            pattern=pattern if isinstance(pattern, str) else None,
            description=str(value.get("description") or ""),
        )
    return result


def defaults(raw: Any) -> dict[str, Any]:
    """The default value of each declared variable that has one."""
    return {name: d.default for name, d in declarations(raw).items() if not d.required}


class _Wrong(Exception):
    """A value does not fit its declaration; the message says what was expected."""


def _from_text(text: str, declared: str) -> Any:
    """Read command-line or environment text as the declared type."""
    if declared == "string":
        return text
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise _Wrong(f"expected {_A[declared]}") from None
    if declared == "boolean":
        if text.strip().lower() in ("true", "false"):
            return text.strip().lower() == "true"
        raise _Wrong("expected true or false")
    return _checked_type(value, declared)


def _checked_type(value: Any, declared: str) -> Any:
    if declared == "string":
        # An unquoted 2024 in a vars file is meant as text; 1.50 or true would change on the way.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise _Wrong("expected a string; quote the value")
        return value
    if declared == "integer":
        if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
            return int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif declared == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif declared == "boolean":
        ok = isinstance(value, bool)
    elif declared == "array":
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, dict)
    if not ok:
        raise _Wrong(f"expected {_A[declared]}")
    return value


def _constrained(value: Any, declaration: Declaration) -> None:
    if declaration.enum is not None and value not in declaration.enum:
        choices = ", ".join(str(choice) for choice in declaration.enum)
        raise _Wrong(f"expected one of: {choices}")
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if numeric and declaration.minimum is not None and value < declaration.minimum:
        raise _Wrong(f"must be at least {declaration.minimum}")
    if numeric and declaration.maximum is not None and value > declaration.maximum:
        raise _Wrong(f"must be at most {declaration.maximum}")
    if isinstance(value, str) and declaration.pattern is not None:
        try:
            matched = re.fullmatch(declaration.pattern, value)
        except re.error:
            return  # the schema reports a pattern that is not a regular expression
        if not matched:
            raise _Wrong(f"must match the pattern {declaration.pattern}")


def coerce(declaration: Declaration, value: Any, text: str | None) -> Any:
    """``value`` as the declared type, checked against the constraints; ``text`` is the raw form, if typed."""
    if declaration.type is not None:
        value = _from_text(text, declaration.type) if text is not None else _checked_type(value, declaration.type)
    _constrained(value, declaration)
    return value


def _source(origin: Origin) -> str:
    # The command line is echoed (the user typed it there); an environment value may be a secret.
    if origin.how.startswith("--set"):
        return f"{origin.how}={origin.text!r}"
    if origin.text is not None:
        return origin.how
    return f"the value in {origin.file}:{origin.line}:{origin.column}"


def _why_typed(declaration: Declaration) -> str:
    if declaration.inferred and declaration.type is not None:
        return f" (the type of its default, {declaration.default!r})"
    return ""


def apply(raw: Any, variables: Variables, positions: Positions) -> tuple[list[Diagnostic], bool]:
    """Check and convert every declared variable's final value in place.

    Returns the problems, and whether rendering can go on: a wrong value is
    replaced by its valid default, so the rest of the file is still checked
    without errors that only echo this one; a variable with no usable value
    stops the load here.
    """
    problems: list[Diagnostic] = []
    unusable = False
    file = positions.file
    for name, declaration in declarations(raw).items():
        at_key = positions.of_key(("vars", name))
        if not declaration.required:
            try:
                coerce(declaration, declaration.default, None)
            except _Wrong as wrong:
                where = ("vars", name, "default") if not declaration.inferred else ("vars", name)
                line, column = positions.of_value(where)
                problems.append(Diagnostic("error", f"the default {wrong}", file, line, column, where))
                unusable = True
                continue
        if name not in variables.values:
            unusable = True
            problems.append(
                Diagnostic(
                    "error",
                    f"no value; this variable has no default, so set it with --set {name}=…",
                    file,
                    *at_key,
                    ("vars", name),
                )
            )
            continue
        origin = variables.origins[name]
        if origin.how == "vars":
            variables.values[name] = declaration.default
            continue
        try:
            variables.values[name] = coerce(declaration, variables.values[name], origin.text)
        except _Wrong as wrong:
            problems.append(
                Diagnostic(
                    "error",
                    f"{_source(origin)}: {wrong}{_why_typed(declaration)}",
                    file,
                    *at_key,
                    ("vars", name),
                )
            )
            if declaration.required:
                unusable = True
            else:
                variables.values[name] = declaration.default
    return problems, not unusable
