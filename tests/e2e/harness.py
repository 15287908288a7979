"""Run the real `batchflow` command against the session's local services, and build test workflows."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.support.project import REPO
from tests.support.wordcount import expected_top_words

WORKFLOWS = REPO / "workflows"


@dataclass
class Batchflow:
    """``python -m batchflow`` in ``cwd``, pointed at the session's local services."""

    cwd: Path
    home: Path
    batch_port: int
    blob_port: int

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHFLOW_", "AZURE_"))}
        env.update(
            BATCHFLOW_HOME=str(self.home),
            BATCHFLOW_BATCH_PORT=str(self.batch_port),
            BATCHFLOW_BLOB_PORT=str(self.blob_port),
        )
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 180, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "batchflow", *args],
            cwd=self.cwd,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def start(self, *args: str, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "batchflow", *args],
            cwd=self.cwd,
            env=self.env(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
            # Tests send Ctrl-C; a shell that started pytest in the background ignores
            # SIGINT for its children, and Python keeps an ignored SIGINT ignored.
            preexec_fn=_default_sigint,
        )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def unique_containers(text: str, suffix: str) -> str:
    """Rename the workflow's containers with ``suffix``: container names are account-wide,
    so tests that share one Azurite must not share containers."""
    names = "application|input|output"
    text = re.sub(rf"^(\s*-?\s*(?:name|container|files_in): )({names})$", rf"\g<1>\g<2>-{suffix}", text, flags=re.M)
    return re.sub(rf"^(\s+)({names}): (delete|keep|ask)$", rf"\g<1>\g<2>-{suffix}: \g<3>", text, flags=re.M)


def topwords_variant(
    folder: Path,
    *,
    cleanup: str = "  containers: keep\n  job: keep\n  pool: keep\n",
    marker: Path | None = None,
    sleep: float = 0,
    extra_files: int = 0,
) -> tuple[Path, str, str]:
    """A copy of workflows/topwords.yaml in ``folder`` with unique pool and job ids.

    ``marker``: each task appends its id to this file when it runs, so a test
    can tell how often each task ran. ``extra_files``: more input texts, for
    steps long enough to be interrupted. Returns (workflow path, pool id, job id).
    """
    shutil.copytree(WORKFLOWS / "topwords", folder / "topwords", dirs_exist_ok=True)
    for index in range(extra_files):
        (folder / "topwords" / "data" / f"extra{index:03d}.txt").write_text(
            f"alpha beta beta gamma {index}\n" * (index + 1)
        )
    suffix = uuid.uuid4().hex[:8]
    pool, job = f"pool-{suffix}", f"job-{suffix}"
    text = (WORKFLOWS / "topwords.yaml").read_text()
    text = text.replace("id: PythonTutorialPool", f"id: {pool}").replace("id: PythonTutorialJob", f"id: {job}")
    prefix = ""
    if marker is not None:
        prefix += f'echo "$AZ_BATCH_TASK_ID" >> {shlex.quote(str(marker))};\n      '
    if sleep:
        prefix += f"sleep {sleep};\n      "
    text = text.replace("    command: >-\n      python3", f"    command: >-\n      {prefix}python3")
    text = re.sub(r"cleanup:\n(  .*\n)+", "cleanup:\n" + cleanup, text)
    text = unique_containers(text, suffix)
    path = folder / "topwords.yaml"
    path.write_text(text)
    return path, pool, job


def check_topwords_outputs(inputs: list[Path], output_dir: Path, numwords: int, job: str, pool: str) -> None:
    """Every output file recomputed independently from its input."""
    produced = sorted(p.name for p in output_dir.iterdir())
    assert produced == sorted(f"{p.stem}_OUTPUT.txt" for p in inputs)
    for source in sorted(inputs, key=lambda p: p.name):
        lines = (output_dir / f"{source.stem}_OUTPUT.txt").read_text().splitlines()
        expected_words = [f"{w}:\t{n}" for w, n in expected_top_words(source.read_bytes(), numwords)]
        assert lines[:2] == ["Word\tCount", "-" * 30]
        assert lines[2 : 2 + len(expected_words)] == expected_words
        rest = lines[2 + len(expected_words) :]
        assert rest[0] == "-" * 30
        assert rest[1].startswith("Node: tvm")
        # The physical job is the declared id plus the run's name; a task reused from the
        # cache says which run's job made it, so only the declared part is compared.
        assert rest[2].startswith("Task: topNtask") and rest[3].startswith(f"Job:  {job}-")
        assert rest[4:] == [f"Pool: {pool}"]


def run_names(batchflow: Batchflow, workflow: Path, *options: str) -> tuple[str, str, dict[str, str]]:
    """The run an apply with ``options`` would be, its physical job id, and declared -> physical container names."""
    plan = batchflow.run("plan", str(workflow), "--offline", "--output", "json", *options)
    assert plan.returncode == 0, plan.stderr
    steps = json.loads(plan.stdout)["steps"]
    run = json.loads(plan.stdout)["context"][0].split()[1].rstrip(":")
    containers = {logical: physical for physical, logical in steps[0]["declared_as"].items()}
    return run, steps[3]["job"]["id"], containers


def secrets_in(paths: list[Path], secrets: list[str]) -> list[str]:
    """Files under ``paths`` (or texts) containing any of ``secrets`` or a SAS signature."""
    found = []
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for file in files:
            data = file.read_bytes()
            if b"sig=" in data or any(s.encode() in data for s in secrets):
                found.append(str(file))
    return found
