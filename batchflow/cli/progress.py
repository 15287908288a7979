"""The terminal reporter of ``apply``: step headlines, notes, progress bars, yes/no questions.

Progress bars come from tqdm and appear only on a terminal, each leaving
one line with its final counts when it closes. Elsewhere (a log file, CI,
nohup) progress is a plain line whenever the counts change, at most every
ten seconds, so a long step 6 still shows that it moves.
Everything goes to standard error, so ``--output json`` keeps standard
output for the JSON document alone.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

from tqdm import tqdm

from batchflow.plan.build import STEPS

#: Outside a terminal, at most one progress line per this many seconds.
LINE_INTERVAL = 10.0


class _Bar:
    """A tqdm bar on a terminal; when it closes, one plain line stays where it was."""

    def __init__(self, bar: tqdm, stream: IO[str], label: str, total: int) -> None:
        self.bar, self.stream, self.label, self.total = bar, stream, label, total
        self.done, self.text = 0, ""

    def update(self, done: int, text: str = "") -> None:
        self.done, self.text = done, text
        self.bar.n = done
        if text:
            self.bar.set_postfix_str(text, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
        line = f"      {self.label}: {self.done:,}/{self.total:,} done"
        print(line + (f", {self.text}" if self.text else ""), file=self.stream, flush=True)


class _Lines:
    """Progress outside a terminal (CI, nohup, a log file): a plain line when the counts change,
    at most every :data:`LINE_INTERVAL` seconds, and the last counts when it closes."""

    def __init__(self, stream: IO[str], prefix: str, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.prefix, self.total, self.clock = stream, prefix, total, clock
        self.shown: tuple[int, str] | None = None
        self.latest: tuple[int, str] | None = None
        self.shown_at: float | None = None

    def update(self, done: int, text: str = "") -> None:
        self.latest = (done, text)
        if self.latest != self.shown and (self.shown_at is None or self.clock() - self.shown_at >= LINE_INTERVAL):
            self._show()

    def close(self) -> None:
        if self.latest is not None and self.latest != self.shown:
            self._show()

    def _show(self) -> None:
        assert self.latest is not None
        done, text = self.latest
        line = f"{self.prefix} {done:,}/{self.total:,} done" + (f", {text}" if text else "")
        print(line, file=self.stream, flush=True)
        self.shown, self.shown_at = self.latest, self.clock()


class _Nothing:
    def update(self, done: int, text: str = "") -> None:
        pass

    def close(self) -> None:
        pass


class TerminalReporter:
    """Prints ``[3/9] create pool`` headlines and indented notes to standard error."""

    def __init__(self, stream: IO[str] | None = None, interactive: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if interactive is None else interactive
        #: The step being run, for progress lines outside a terminal.
        self.current = 0

    def step(self, number: int, text: str) -> None:
        self.current = number
        print(f"[{number}/{len(STEPS)}] {text}", file=self.stream, flush=True)

    @property
    def _indent(self) -> str:
        # Notes belong to the step above them; before the first step there is none.
        return "      " if self.current else ""

    def note(self, text: str) -> None:
        print(f"{self._indent}{text}", file=self.stream, flush=True)

    def warn(self, text: str) -> None:
        print(f"{self._indent}warning: {text}", file=self.stream, flush=True)

    def progress(self, label: str, total: int, unit: str) -> _Bar | _Lines | _Nothing:
        if total == 0:
            return _Nothing()
        if not self.tty:
            return _Lines(self.stream, f"[{self.current}/{len(STEPS)}] {label}:", total)
        bar = tqdm(total=total, desc=f"      {label}", unit=unit, file=self.stream, leave=False)
        return _Bar(bar, self.stream, label, total)

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
