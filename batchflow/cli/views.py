"""How commands print: the text a person reads and the JSON a script reads.

Only the command line prints. Each view takes plain data (diagnostics,
planned steps) and an output format, ``text`` or ``json``.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from batchflow.diagnostics import Diagnostic
from batchflow.plan.build import PlannedStep


def print_json(data: Any, file: IO[str] | None = None) -> None:
    """Print ``data`` as indented JSON."""
    print(json.dumps(data, indent=2, ensure_ascii=False), file=file or sys.stdout)


def print_diagnostics(diagnostics: list[Diagnostic], output: str = "text", file: IO[str] | None = None) -> None:
    """Print every diagnostic, one line each (or one JSON document)."""
    out = file or sys.stderr
    if output == "json":
        errors = [d.to_json() for d in diagnostics if d.severity == "error"]
        warnings = [d.to_json() for d in diagnostics if d.severity == "warning"]
        print_json({"valid": not errors, "errors": errors, "warnings": warnings}, file=sys.stdout)
        return
    for diagnostic in diagnostics:
        print(diagnostic.format(), file=out)
    errors = sum(1 for d in diagnostics if d.severity == "error")
    if errors:
        print(f"batchflow: {errors} error(s); nothing was created", file=out)


def print_plan(name: str, steps: list[PlannedStep], output: str = "text") -> None:
    """Print the nine planned steps."""
    if output == "json":
        print_json({"workflow": name, "steps": [s.to_json() for s in steps]})
        return
    print(f"Plan for workflow {name}:")
    for step in steps:
        print(f"[{step.number}/{len(steps)}] {step.title}: {step.summary}")
        for line in step.details:
            print(f"      {line}")
