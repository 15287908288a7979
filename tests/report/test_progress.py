"""Progress outside a terminal: a line when the counts change, at most every ten seconds, and the last counts."""

from __future__ import annotations

import io

from batchflow.cli.progress import LINE_INTERVAL, TerminalReporter, _Lines


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_are_rate_limited_and_the_last_counts_are_always_shown() -> None:
    out, clock = io.StringIO(), Clock()
    lines = _Lines(out, "[6/9] tasks:", 10_000, clock)
    lines.update(0, "0 running")
    lines.update(0, "0 running")  # no change: nothing new
    clock.now = 3
    lines.update(1_234, "40 running, 12 failed")  # changed, but too soon
    clock.now = LINE_INTERVAL + 0.5
    lines.update(1_500, "40 running, 12 failed")
    clock.now += 1
    lines.update(10_000, "0 running, 12 failed")
    lines.close()
    assert out.getvalue().splitlines() == [
        "[6/9] tasks: 0/10,000 done, 0 running",
        "[6/9] tasks: 1,500/10,000 done, 40 running, 12 failed",
        "[6/9] tasks: 10,000/10,000 done, 0 running, 12 failed",
    ]


def test_a_reporter_without_a_terminal_prints_lines_with_the_step_number() -> None:
    out = io.StringIO()
    reporter = TerminalReporter(out, interactive=False)
    reporter.step(6, "monitor tasks")
    progress = reporter.progress("tasks", 3, "task")
    progress.update(3, "0 running")
    progress.close()
    assert "[6/9] tasks: 3/3 done, 0 running" in out.getvalue().splitlines()


def test_a_terminal_bar_leaves_a_final_line() -> None:
    out = io.StringIO()
    reporter = TerminalReporter(out, interactive=True)
    reporter.step(2, "upload files")
    progress = reporter.progress("uploading", 4, "file")
    progress.update(4, "tides.txt")
    progress.close()
    assert out.getvalue().rstrip().splitlines()[-1] == "      uploading: 4/4 done, tides.txt"
