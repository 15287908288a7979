"""Collect template variables from their four sources, in increasing priority.

1. ``vars:`` in the workflow (the defaults),
2. ``--vars-file FILE`` (YAML or JSON; later files win),
3. environment variables ``BATCHFLOW_VAR_<NAME>``,
4. ``--set name=value`` (later ones win).

Values from the command line and the environment are text. A declared
variable's text is read by its type (``variable_types``); an undeclared one's is
read as a YAML scalar, so ``--set numwords=5`` is the integer 5 and
``--set dry=true`` a boolean; only ``true``/``false`` are booleans (not YAML
1.1's ``yes``/``on``), and anything that is not a scalar stays the string it was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from batchflow.diagnostics import Diagnostic
from batchflow.errors import UsageError
from batchflow.model.yamlfile import parse_text

ENV_PREFIX = "BATCHFLOW_VAR_"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Origin:
    """Where a variable's value was set, for messages about it; ``text`` is the raw value typed as text."""

    file: str
    line: int = 0
    column: int = 0
    how: str = ""
    text: str | None = None


@dataclass
class Variables:
    """The merged variables and where each final value came from."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def set(self, name: str, value: Any, origin: Origin) -> None:
        self.values[name] = value
        self.origins[name] = origin


def parse_scalar(text: str) -> Any:
    """Read a command-line value as a YAML scalar: ``5`` → 5, ``true`` → True, ``a b`` → 'a b'."""
    if text == "":
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, bool) and text.strip().lower() not in ("true", "false"):
        return text
    if value is None and text.strip() not in ("null", "~"):
        return text
    if isinstance(value, (dict, list)) or hasattr(value, "isoformat"):
        return text
    return value


def split_assignment(text: str) -> tuple[str, str]:
    """Split one ``--set name=value`` into the name and the raw value; a malformed one is a usage error."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not _NAME.match(name):
        raise UsageError(f"--set expects NAME=VALUE with a name of letters, digits and underscores, got {text!r}")
    return name, value


def collect(
    defaults: Any,
    default_origins: Mapping[str, Origin],
    vars_files: Sequence[Path],
    environ: Mapping[str, str],
    assignments: Sequence[str],
) -> Variables:
    """Merge the four sources; problems in vars files become diagnostics.

    ``default_origins`` names every declared variable, including those without a default.
    """
    result = Variables()
    for name, value in defaults.items():
        result.set(name, value, default_origins.get(name, Origin("workflow")))
    for path in vars_files:
        display = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except OSError as exc:
            result.diagnostics.append(Diagnostic("error", f"cannot read vars file: {exc.strerror}", display))
            continue
        parsed = parse_text(text, display)
        result.diagnostics.extend(parsed.diagnostics)
        if parsed.data is None and not parsed.diagnostics:
            continue
        if not isinstance(parsed.data, dict):
            if not parsed.diagnostics:
                result.diagnostics.append(
                    Diagnostic("error", "a vars file must be a mapping of variable names to values", display)
                )
            continue
        for name, value in parsed.data.items():
            line, column = parsed.positions.of_key((name,))
            if not _NAME.match(name):
                result.diagnostics.append(
                    Diagnostic("error", f"{name!r} is not a valid variable name", display, line, column, (name,))
                )
                continue
            result.set(name, value, Origin(display, line, column, "the vars file"))
    known = [*default_origins, *result.values]
    declared = {name.lower(): name for name in known}
    for key in sorted(environ):
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX):
            raw = key[len(ENV_PREFIX) :]
            # BATCHFLOW_VAR_NUMWORDS sets the declared variable numwords.
            name = raw if raw in known else declared.get(raw.lower(), raw)
            text = environ[key]
            result.set(name, parse_scalar(text), Origin("environment", how=f"environment variable {key}", text=text))
    for assignment in assignments:
        name, text = split_assignment(assignment)
        result.set(name, parse_scalar(text), Origin("command line", how=f"--set {name}", text=text))
    return result
