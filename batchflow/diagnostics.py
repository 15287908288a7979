"""Diagnostics: one problem found in a workflow, with where it is and how to print it.

Validation collects every problem instead of stopping at the first one, so a
user fixes a whole file in one pass. A diagnostic's printed form is the one
compilers use, so editors and terminals can jump to it::

    workflows/x.yaml:12:5: pool.vm_size: expected a string (at /pool/vm_size)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]
Path = tuple  # a path into the parsed document: ("pool", "vm_size") or ("uploads", 0, "files")


@dataclass(frozen=True)
class Diagnostic:
    """One problem: severity, message, and where it is (file, 1-based line and column, path)."""

    severity: Severity
    message: str
    file: str
    line: int = 1
    column: int = 1
    path: Path = ()

    @property
    def pointer(self) -> str:
        """The JSON pointer of :attr:`path`, for example ``/pool/vm_size``."""
        if not self.path:
            return ""
        return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in self.path)

    @property
    def dotted(self) -> str:
        """The path as people read it: ``uploads[0].files``."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out

    def format(self) -> str:
        """The one-line form: ``file:line:col: [warning: ]path: message (at /pointer)``."""
        # line 0: the problem is not in a file (a --set value, an environment variable)
        where = f"{self.file}:{self.line}:{self.column}: " if self.line else f"{self.file}: "
        if self.severity == "warning":
            where += "warning: "
        if self.path:
            where += f"{self.dotted}: "
        text = where + self.message
        if self.pointer:
            text += f" (at {self.pointer})"
        return text

    def to_json(self) -> dict[str, object]:
        """A plain mapping for ``--output json``."""
        return {
            "severity": self.severity,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.dotted,
            "pointer": self.pointer,
        }


def sort_key(diagnostic: Diagnostic) -> tuple[str, int, int, str]:
    """Order diagnostics as they appear in their files."""
    return (diagnostic.file, diagnostic.line, diagnostic.column, diagnostic.message)
