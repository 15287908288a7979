"""Helpers for tests that write workflows into a temp folder and run the CLI on them in-process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from batchflow.cli import main

#: A small valid workflow; tests replace single lines of it by number.
BASE = """\
name: demo
containers:
  - name: input
  - name: output
uploads:
  - container: input
    files: data/*.txt
pool:
  id: pool1
  vm_size: standard_d2s_v3
  image:
    publisher: canonical
    offer: ubuntu-24_04-lts
    sku: server
    node_agent_sku: batch.node.ubuntu 24.04
  nodes:
    dedicated: 1
job:
  id: job1
tasks:
  for_each:
    files_in: input
  template:
    id: task{{ index }}
    command: wc -w {{ file.name | quote }} > {{ (file.stem ~ '.out') | quote }}
    output_files:
      - pattern: "*.out"
        container: output
monitor:
  timeout: 5m
"""


#: The head of a sweep: two containers (``output`` is downloaded), a pool of two nodes and a job; its tasks
#: are ``range`` 0 to COUNT, and the task template follows ``template:`` (see :func:`sweep`).
SWEEP_HEAD = """\
name: sweep
vars:
  scale: 2
containers:
  - name: output
  - name: results
download:
  container: output
  destination: out
pool:
  id: sweep-pool
  vm_size: standard_d2s_v3
  image: {publisher: canonical, offer: ubuntu-24_04-lts, sku: server, node_agent_sku: batch.node.ubuntu 24.04}
  nodes: {dedicated: 2}
job:
  id: sweep-job
tasks:
  for_each:
    range: {from: 0, to: COUNT}
  template:
"""


def sweep(template: str, count: int) -> str:
    """A workflow of ``count`` tasks (``value`` 0 to count - 1) from ``template``, indented below ``template:``."""
    return SWEEP_HEAD.replace("COUNT", str(count - 1)) + template


def edit(base: str, replace: dict[int, str] | None = None, append: str = "") -> str:
    """``base`` with lines replaced by number (1-based; a replacement may span lines) and text appended."""
    lines = base.splitlines()
    for number, text in (replace or {}).items():
        lines[number - 1] = text
    return "\n".join(lines) + "\n" + append


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Project:
    """A temp folder with data files, where workflows are written and the CLI is run."""

    root: Path
    capsys: pytest.CaptureFixture[str]

    def write(self, text: str, name: str = "wf.yaml") -> Path:
        path = self.root / name
        path.write_text(text, encoding="utf-8")
        return path

    def run(self, *args: str) -> Run:
        self.capsys.readouterr()
        code = main(list(args))
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)


REPO = Path(__file__).resolve().parents[2]
