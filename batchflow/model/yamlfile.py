"""Parse YAML safely into plain Python values while remembering where every value came from.

PyYAML's constructors drop positions, so this module composes the node graph
with the safe loader and builds the values itself, recording the 1-based
line and column of every value and of every mapping key in a
:class:`Positions` table keyed by path. Templating and validation work on the
plain values; diagnostics look their positions up by path. Duplicate keys,
which PyYAML silently resolves to the last one, are reported as errors.

A workflow file may come from anyone, so reading one is bounded: the file's
size, the nesting depth, and how many values aliases may add (nine levels of
nine-fold aliases, a few hundred bytes, would otherwise expand to 387 million
values). Only the plain YAML types are built; a tag such as ``!!python/object``
is an error, never a constructor call.
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

#: Larger files are refused before parsing; an explicit list of 100,000 inputs takes about 4 MB.
MAX_BYTES = 16 * 1024 * 1024
#: Deeper nesting is refused; a workflow needs about six levels.
MAX_DEPTH = 64
#: How many values aliases may add beyond the ones written out in the file.
MAX_ALIASED_VALUES = 100_000


class _TooManyAliasedValues(Exception):
    def __init__(self, alias: yaml.Mark | None) -> None:
        self.alias = alias


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """The safe loader, recording where each alias is used and refusing deep nesting."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.alias_marks: dict[int, yaml.Mark] = {}
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            self.alias_marks.setdefault(id(node), mark)
            return node
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self, file: str, loader: _Loader) -> None:
        self.positions = Positions(file)
        self.diagnostics: list[Diagnostic] = []
        self.loader = loader
        self.file = file
        self.built: set[int] = set()
        self.aliased_values = 0
        self.expanding: yaml.Mark | None = None  # the alias being expanded, outermost

    def error(self, node: yaml.Node, path: Path, message: str) -> None:
        line, column = _mark(node)
        self.diagnostics.append(Diagnostic("error", message, self.file, line, column, path))

    def build(self, node: yaml.Node, path: Path, active: tuple[int, ...] = ()) -> Any:
        if id(node) not in self.built:
            self.built.add(id(node))
            return self._build(node, path, active)
        # Built before: an alias repeats this node here, with everything under it.
        outermost = self.expanding is None
        if outermost:
            self.expanding = self.loader.alias_marks.get(id(node))
        try:
            return self._build(node, path, active)
        finally:
            if outermost:
                self.expanding = None

    def _build(self, node: yaml.Node, path: Path, active: tuple[int, ...]) -> Any:
        if self.expanding is not None:
            self.aliased_values += 1
            if self.aliased_values > MAX_ALIASED_VALUES:
                raise _TooManyAliasedValues(self.expanding)
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
    if len(text) > MAX_BYTES:
        return ParsedFile(
            None,
            Positions(file),
            [
                Diagnostic(
                    "error",
                    f"the file is larger than {MAX_BYTES // 2**20} MB; a workflow file is never this large",
                    file,
                    0,
                    0,
                )
            ],
        )
    loader = _Loader(text)
    builder = _Builder(file, loader)
    try:
        node = loader.get_single_node()
    except _TooDeep as exc:
        message = f"values nest deeper than {MAX_DEPTH} levels here; a workflow needs far fewer"
        return ParsedFile(
            None, builder.positions, [Diagnostic("error", message, file, exc.mark.line + 1, exc.mark.column + 1)]
        )
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
    try:
        data = builder.build(node, ())
    except _TooManyAliasedValues as exc:
        line, column = (exc.alias.line + 1, exc.alias.column + 1) if exc.alias else (1, 1)
        message = (
            f"YAML aliases here expand to more than {MAX_ALIASED_VALUES:,} values; "
            "write the values out or use tasks.for_each instead of nested aliases"
        )
        return ParsedFile(None, builder.positions, [Diagnostic("error", message, file, line, column)])
    return ParsedFile(data, builder.positions, builder.diagnostics)
