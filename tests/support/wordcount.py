"""An independent implementation of the topwords rule, for checking outputs.

Written separately from workflows/topwords/topwords.py (no shared code) so a
bug in one is not silently repeated in the other.
"""

from __future__ import annotations

import string

PUNCTUATION = set(string.punctuation)


def expected_top_words(data: bytes, count: int) -> list[tuple[str, int]]:
    text = data.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    counts: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    for token in text.split():
        start, end = 0, len(token)
        while start < end and token[start] in PUNCTUATION:
            start += 1
        while end > start and token[end - 1] in PUNCTUATION:
            end -= 1
        word = token[start:end]
        if not word:
            continue
        if word not in counts:
            counts[word] = 0
            first_seen[word] = len(first_seen)
        counts[word] += 1
    ranked = sorted(counts, key=lambda w: (-counts[w], first_seen[w]))
    return [(w, counts[w]) for w in ranked[:count]]


def expected_output(data: bytes, count: int, node: str, task: str, job: str, pool: str) -> str:
    dashes = "-" * 30
    lines = ["Word\tCount", dashes] + [f"{w}:\t{n}" for w, n in expected_top_words(data, count)]
    lines += [dashes, f"Node: {node}", f"Task: {task}", f"Job:  {job}", f"Pool: {pool}"]
    return "\n".join(lines) + "\n"
