"""The local service splits a task's command line exactly as ``shlex.split`` does (POSIX rules), only faster."""

from __future__ import annotations

import random
import shlex

import pytest

from batchflow.local.emulator.noderunner import split_command_line

EXAMPLES = [
    "/bin/bash -c 'set -e -o pipefail; python3 wordcount.py \"in put.txt\" 3'",
    'a "b c" d',
    r"a\ b",
    r'"a\"b" "a\b" "a\\b" "\$x" "a\`b"',
    r"'a\b' 'it'\''s'",
    'a""b "" x',
    "  lead  trail  \t\r\n",
    "multi\nline\ttabs",
    "x\\\ny",
    "é ü #not-a-comment a#b",
    "",
]


@pytest.mark.parametrize("text", EXAMPLES)
def test_examples_split_as_shlex_does(text: str) -> None:
    assert split_command_line(text) == shlex.split(text)


@pytest.mark.parametrize("text", ['"unterminated', "'x", "a\\"])
def test_what_does_not_split_fails_with_shlex_message(text: str) -> None:
    with pytest.raises(ValueError) as ours:
        split_command_line(text)
    with pytest.raises(ValueError) as theirs:
        shlex.split(text)
    assert str(ours.value) == str(theirs.value)


def test_random_command_lines_split_as_shlex_does() -> None:
    rng = random.Random(20261201)
    alphabet = " \t\r\n\\'\"ab$#é"
    for _ in range(50_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        try:
            expected: object = shlex.split(text)
        except ValueError as error:
            expected = ("error", str(error))
        try:
            got: object = split_command_line(text)
        except ValueError as error:
            got = ("error", str(error))
        assert got == expected, repr(text)
