"""The terminal reporter of ``apply``: step headlines, notes, progress bars, yes/no questions.

Progress bars come from tqdm and appear only on a terminal; elsewhere
(a log file, CI) each step still prints its headline and summary lines.
Everything goes to standard error, so ``--output json`` keeps standard
output for the JSON document alone.
"""

from __future__ import annotations

import sys
from typing import IO

from tqdm import tqdm

from batchflow.plan.build import STEPS


class _Bar:
    def __init__(self, bar: tqdm | None) -> None:
        self.bar = bar

    def update(self, done: int, text: str = "") -> None:
        if self.bar is not None:
            self.bar.n = done
            if text:
                self.bar.set_postfix_str(text, refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TerminalReporter:
    """Prints ``[3/9] create pool`` headlines and indented notes to standard error."""

    def __init__(self, stream: IO[str] | None = None, interactive: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if interactive is None else interactive

    def step(self, number: int, text: str) -> None:
        print(f"[{number}/{len(STEPS)}] {text}", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        print(f"      {text}", file=self.stream, flush=True)

    def warn(self, text: str) -> None:
        print(f"      warning: {text}", file=self.stream, flush=True)

    def progress(self, label: str, total: int, unit: str) -> _Bar:
        if not self.tty or total == 0:
            return _Bar(None)
        return _Bar(tqdm(total=total, desc=f"      {label}", unit=unit, file=self.stream, leave=False))

    def confirm(self, question: str) -> bool | None:
        if not (self.tty and sys.stdin.isatty()):
            return None
        while True:
            print(f"      {question} [y/N] ", end="", file=self.stream, flush=True)
            try:
                answer = input().strip().lower()
            except EOFError:
                return None
            if answer in ("", "n", "no"):
                return False
            if answer in ("y", "yes"):
                return True
