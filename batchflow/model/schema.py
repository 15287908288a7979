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
import re
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


#: Keywords whose verdict on a mapping or list does not depend on the values inside it, only on its keys
#: and length: a value under them can be checked alone against its own subschema.
_LOCAL_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "additionalProperties",
        "required",
        "items",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "propertyNames",
    }
)
#: Keywords that only annotate: descriptions, defaults, and this schema's own ``x-`` hints.
_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "$comment"})
_STRING_CHECKS = frozenset({"type", "pattern", "minLength", "maxLength"})


class RenderedLeaves:
    """Validates trees rendered from one template by looking only at what rendering filled in.

    A sweep renders its task template once per task, and the rendered tasks
    differ only at the template strings' paths. Once one rendered task is valid
    as a whole, another is valid when each of its rendered values is valid
    against the subschema at its path, provided no keyword above those paths
    judges a mapping or list by the values inside it (``oneOf`` between
    branches of one type, ``uniqueItems``, ``if``...). :func:`leaf_validator`
    returns None for such a template, and the caller validates every tree
    whole. :meth:`valid` says only yes or no: on a no, the caller validates
    the tree whole, which also gives the diagnostics.
    """

    def __init__(self, checks: list[tuple[Path, Any]]) -> None:
        self._checks = checks

    def valid(self, data: Any) -> bool:
        """Whether ``data`` is valid, on the premise above; coerces a templated number where a string is
        wanted (as :func:`batchflow.model.load` does after a full validation)."""
        for path, check in self._checks:
            parent = data
            for part in path[:-1]:
                parent = parent[part]
            value = parent[path[-1]]
            ok, coerced = check(value)
            if not ok:
                return False
            if coerced is not value:
                parent[path[-1]] = coerced
        return True


def leaf_validator(
    definition: str, paths: frozenset[Path], at: Path, text_paths: frozenset[Path] = frozenset()
) -> RenderedLeaves | None:
    """A :class:`RenderedLeaves` for the values at ``paths`` (absolute; ``at`` is the tree's own path)
    of trees checked against ``$defs/<definition>``, or None when the schema above them forbids it.

    The values at ``text_paths`` are known to be strings (text around a template always
    renders to text), so where the schema asks for nothing but a string they are not looked at.
    """
    validator = _validator(definition)
    root = load_schema()
    checks = []
    for path in sorted(paths, key=repr):
        relative = path[len(at) :]
        schema: Any = root["$defs"][definition]
        for part in relative:
            schema = _child_schema(root, schema, part)
            if schema is None:
                return None
        resolved = _resolved(root, schema)
        if path in text_paths and resolved is not None and _only_a_string(resolved):
            continue
        checks.append((relative, _value_check(root, schema, validator)))
    return RenderedLeaves(checks)


def _only_a_string(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" and all(key == "type" or _annotation(key) for key in schema)


def _resolved(root: dict[str, Any], schema: Any) -> Any:
    """``schema`` with each ``$ref`` followed, when what sits beside the ``$ref`` only annotates; else None."""
    while isinstance(schema, dict) and "$ref" in schema:
        if any(not _annotation(key) for key in schema if key != "$ref"):
            return None
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
            return None
        schema = root["$defs"].get(ref.removeprefix("#/$defs/"))
    return schema if isinstance(schema, dict) else None


def _annotation(keyword: str) -> bool:
    return keyword in _ANNOTATIONS or keyword.startswith("x-")


def _child_schema(root: dict[str, Any], schema: Any, part: Any) -> Any:
    """The subschema for the value under key or index ``part`` of a value ``schema`` describes, or None
    when that value cannot be judged alone."""
    schema = _resolved(root, schema)
    if schema is None:
        return None
    container = "object" if isinstance(part, str) else "array"
    if "oneOf" in schema or "anyOf" in schema:
        # Branches told apart by type: only the one of the container's type can match,
        # since the container itself is not a template and so is the same in every tree.
        branches = schema.get("oneOf", schema.get("anyOf"))
        if set(schema) - {"oneOf", "anyOf"} - {k for k in schema if _annotation(k)}:
            return None
        resolved = [_resolved(root, branch) for branch in branches]
        if any(branch is None or "type" not in branch for branch in resolved):
            return None
        matching = [b for b in resolved if container in ([b["type"]] if isinstance(b["type"], str) else b["type"])]
        if len(matching) != 1:
            return None
        schema = matching[0]
    if any(key not in _LOCAL_KEYWORDS and not _annotation(key) for key in schema):
        return None
    if container == "object":
        if part in (schema.get("properties") or {}):
            return schema["properties"][part]
        extra = schema.get("additionalProperties")
        return extra if isinstance(extra, dict) else None
    items = schema.get("items")
    return items if isinstance(items, dict) else None


def _value_check(root: dict[str, Any], schema: Any, validator: jsonschema.Draft202012Validator) -> Any:
    """A function of one value returning (valid, the value as coerced) against ``schema``."""
    resolved = _resolved(root, schema)
    types = (resolved or {}).get("type")
    types = [types] if isinstance(types, str) else types or []
    wants_text = "string" in types

    def coerce(value: Any) -> Any:
        if wants_text and isinstance(value, (int, float, bool)):
            return str(value).lower() if isinstance(value, bool) else str(value)
        return value

    if resolved is not None and types == ["string"] and all(k in _STRING_CHECKS or _annotation(k) for k in resolved):
        pattern = re.compile(resolved["pattern"]) if "pattern" in resolved else None
        shortest, longest = resolved.get("minLength", 0), resolved.get("maxLength")

        def check_text(value: Any) -> tuple[bool, Any]:
            if type(value) is not str:
                value = coerce(value)
                if not isinstance(value, str):
                    return False, value
            size = len(value)
            return (
                shortest <= size
                and (longest is None or size <= longest)
                and (pattern is None or pattern.search(value) is not None),
                value,
            )

        return check_text
    alone = validator.evolve(schema=schema)

    def check(value: Any) -> tuple[bool, Any]:
        if alone.is_valid(value):
            return True, value
        value = coerce(value)
        return alone.is_valid(value), value

    return check
