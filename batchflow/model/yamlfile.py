"""Parse YAML safely into plain Python values while remembering where every value came from.

PyYAML's constructors drop positions, so this module composes the node graph
with the safe loader and builds the values itself, recording the 1-based
line and column of every value and of every mapping key in a
:class:`Positions` table keyed by path. Templating and validation work on the
plain values; diagnostics look their positions up by path. Duplicate keys,
which PyYAML silently resolves to the last one, are reported as errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from batchflow.diagnostics import Diagnostic

Path = tuple


@dataclass
class Positions:
    """Where each value (and each mapping key) starts in the source file."""

    file: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def of_value(self, path: Path) -> tuple[int, int]:
        """Position of the value at ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def of_key(self, path: Path) -> tuple[int, int]:
        """Position of the mapping key naming ``path``; falls back to the value's position."""
        return self.keys.get(tuple(path)) or self.of_value(path)


@dataclass
class ParsedFile:
    """A parsed YAML document: its values, their positions, and parse problems."""

    data: Any
    positions: Positions
    diagnostics: list[Diagnostic]


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.positions = Positions(file)
        self.diagnostics: list[Diagnostic] = []
        self.loader = loader
        self.file = file

    def error(self, node: yaml.Node, path: Path, message: str) -> None:
        line, column = _mark(node)
        self.diagnostics.append(Diagnostic("error", message, self.file, line, column, path))

    def build(self, node: yaml.Node, path: Path, active: tuple[int, ...] = ()) -> Any:
        self.positions.values[path] = _mark(node)
        if id(node) in active:
            self.error(node, path, "a YAML alias refers to itself; recursive structures are not allowed")
            return None
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
            self.error(node, path, f"cannot read this value: the tag {node.tag!r} is not allowed in a workflow")
            return None
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # applies YAML merge keys (<<)
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalar(key_node, path)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    self.error(key_node, path, "mapping keys must be plain strings")
                    continue
                key = str(key) if not isinstance(key, str) else key
                if key in result:
                    self.error(key_node, path + (key,), f"duplicate key {key!r}; remove one of them")
                    continue
                self.positions.keys[path + (key,)] = _mark(key_node)
                result[key] = self.build(value_node, path + (key,), active + (id(node),))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (index,), active + (id(node),)) for index, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: Path) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, path, "mapping keys must be plain strings")
            return None
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.error(node, path, f"cannot read this value: {_problem(exc)}")
            return None
        # Dates and times become strings: the workflow format has no date type,
        # and a quoted and an unquoted date should mean the same thing.
        if hasattr(value, "isoformat"):
            return node.value
        return value


def _problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc)
    return str(problem).strip()


def parse_text(text: str, file: str) -> ParsedFile:
    """Parse one YAML document from ``text``; ``file`` is the name used in diagnostics."""
    loader = yaml.SafeLoader(text)
    builder = _Builder(file, loader)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = _problem(exc)
        if exc.context and exc.context not in message:
            message = f"{exc.context}: {message}"
        return ParsedFile(
            None, builder.positions, [Diagnostic("error", f"YAML syntax error: {message}", file, line, column)]
        )
    except yaml.YAMLError as exc:
        return ParsedFile(None, builder.positions, [Diagnostic("error", f"YAML error: {_problem(exc)}", file)])
    finally:
        loader.dispose()
    if node is None:
        return ParsedFile(
            None,
            builder.positions,
            [Diagnostic("error", "the file is empty; a workflow needs name, pool, job and tasks", file)],
        )
    data = builder.build(node, ())
    return ParsedFile(data, builder.positions, builder.diagnostics)
