"""Validate a parsed workflow against the JSON Schema and turn each failure into a diagnostic.

The schema (``schemas/workflow.schema.json``, shipped inside the package as
``model/workflow.schema.json``) is the single definition of the format. This
module rewrites jsonschema's messages into ones a user can act on, points
unknown keys at the key itself with a "did you mean" suggestion, and uses the
schema's ``x-expected`` hints for pattern failures.
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from batchflow.diagnostics import Diagnostic
from batchflow.model.yamlfile import Positions

Path = tuple

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping (key: value)",
    "array": "a list",
    "null": "nothing",
}


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The workflow JSON Schema, read from the installed package."""
    text = resources.files("batchflow.model").joinpath("workflow.schema.json").read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=4)
def _validator(definition: str | None) -> jsonschema.Draft202012Validator:
    schema = load_schema()
    if definition is not None:
        schema = {**schema, "$ref": f"#/$defs/{definition}"}
        for key in ("type", "properties", "required", "additionalProperties"):
            schema.pop(key, None)
    return jsonschema.Draft202012Validator(schema)


def validate(
    data: Any,
    positions: Positions,
    *,
    definition: str | None = None,
    at: Path = (),
) -> list[Diagnostic]:
    """Check ``data`` against the whole schema, or against ``$defs/<definition>``.

    ``at`` is the path of ``data`` inside the document, so that positions and
    pointers are right when a part (one rendered task) is validated alone.
    """
    diagnostics: dict[tuple[Path, str], Diagnostic] = {}
    for error in _validator(definition).iter_errors(data):
        for diagnostic in _diagnose(error, positions, tuple(at)):
            diagnostics.setdefault((diagnostic.path, diagnostic.message), diagnostic)
    return list(diagnostics.values())


def _describe(instance: Any) -> str:
    if instance is None:
        return "nothing"
    if isinstance(instance, bool):
        return "true or false"
    if isinstance(instance, (int, float)):
        return f"the number {instance}"
    if isinstance(instance, str):
        return f"the string {instance!r}" if len(instance) < 40 else "a string"
    if isinstance(instance, list):
        return "a list"
    if isinstance(instance, dict):
        return "a mapping"
    return type(instance).__name__


def _expected_types(schema: dict[str, Any]) -> str:
    types = schema.get("type")
    if isinstance(types, str):
        types = [types]
    return " or ".join(_TYPE_NAMES.get(t, t) for t in types or [])


def _diagnose(error: ValidationError, positions: Positions, at: Path) -> list[Diagnostic]:
    path = at + tuple(error.absolute_path)
    kind = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance

    def at_value(message: str, where: Path = path) -> Diagnostic:
        line, column = positions.of_value(where)
        return Diagnostic("error", message, positions.file, line, column, where)

    if kind == "additionalProperties" and isinstance(instance, dict):
        known = list(schema.get("properties", {}))
        results = []
        for key in instance:
            if key in known:
                continue
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(known)}"
            line, column = positions.of_key(path + (key,))
            results.append(
                Diagnostic("error", f"unknown key {key!r}; {hint}", positions.file, line, column, path + (key,))
            )
        if results:
            return results
        # additionalProperties given as a schema: fall through to the generic message
    if kind == "required":
        missing = [n for n in error.validator_value if isinstance(instance, dict) and n not in instance]
        return [at_value(f"missing required key {name!r}") for name in missing] or [at_value(error.message)]
    if kind == "type":
        return [at_value(f"expected {_expected_types(schema)}, got {_describe(instance)}")]
    if kind == "enum":
        choices = ", ".join(str(c) for c in error.validator_value)
        return [at_value(f"expected one of: {choices}; got {_describe(instance)}")]
    if kind == "pattern":
        expected = schema.get("x-expected") or f"text matching {error.validator_value}"
        return [at_value(f"expected {expected}; got {_describe(instance)}")]
    if kind in ("minimum", "maximum"):
        word = "at least" if kind == "minimum" else "at most"
        return [at_value(f"must be {word} {error.validator_value}, got {instance}")]
    if kind == "minItems":
        return [at_value(f"needs at least {error.validator_value} item(s)")]
    if kind == "propertyNames":
        return [at_value(f"{_describe(instance)} is not a valid name: {_first_cause(error)}")]
    if kind == "oneOf":
        return _one_of(error, positions, at, at_value)
    if kind == "$ref" or kind == "allOf":
        return [at_value(error.message)]
    return [at_value(error.message)]


def _first_cause(error: ValidationError) -> str:
    for cause in error.context or []:
        if cause.validator == "pattern":
            return "names may contain letters, digits and underscores and must not start with a digit"
        return cause.message
    return error.message


def _one_of(error: ValidationError, positions: Positions, at: Path, at_value: Any) -> list[Diagnostic]:
    """Explain a oneOf failure: the closest branch's errors, or the schema's own hint."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    branches = error.validator_value
    only_required = all(isinstance(b, dict) and set(b) == {"required"} for b in branches)
    if only_required:
        hint = schema.get("x-expected") or "exactly one of the alternatives"
        return [at_value(f"expected {hint}")]
    # Branches of different types (string or list, policy or mapping): when the
    # value matches a branch's type, that branch's errors are the useful ones.
    causes = list(error.context or [])
    depth = len(error.absolute_path)
    typed = [c for c in causes if len(c.absolute_path) > depth or c.validator not in ("type", "$ref")]
    if typed:
        by_branch: dict[int, list[ValidationError]] = {}
        for cause in typed:
            by_branch.setdefault(cause.schema_path[0] if cause.schema_path else 0, []).append(cause)
        # The branch that got deepest into the value is the one the user meant.
        best = max(by_branch.values(), key=lambda errs: (max(len(e.absolute_path) for e in errs), -len(errs)))
        results = []
        for cause in best:
            results.extend(_diagnose(cause, positions, at))
        return results
    kinds = []
    for branch in branches:
        if isinstance(branch, dict):
            if "type" in branch:
                kinds.append(_expected_types(branch))
            elif "$ref" in branch:
                target = load_schema()["$defs"].get(branch["$ref"].rsplit("/", 1)[-1], {})
                kinds.append(
                    "one of: " + ", ".join(target.get("enum", [])) if "enum" in target else _expected_types(target)
                )
    return [at_value(f"expected {' or '.join(k for k in kinds if k)}, got {_describe(error.instance)}")]
