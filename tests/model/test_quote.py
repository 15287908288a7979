"""The quote filter: a hostile value reaches the task's process as one literal argument.

The task command line is run the way Batch runs it: split into words (no
shell), then executed; the words start bash, which runs the rendered script.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from batchflow.model.load import load_workflow
from tests.support.project import BASE, Project, edit

HOSTILE = """it's a "quoted" value with $(touch pwned) and `touch pwned2` and $HOME ; rm -rf nothing * \\"""


def test_quoted_value_is_one_literal_argument(project: Project, tmp_path: Path) -> None:
    script = tmp_path / "argv.py"
    script.write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    text = edit(
        BASE,
        {25: "    command: '{{ python | quote }} {{ script | quote }} {{ value | quote }} {{ file.name | quote }}'"},
    )
    path = project.write(text)
    workflow = load_workflow(
        path, assignments=[f"python={sys.executable}", f"script={script}", f"value={HOSTILE}"], environ={}
    ).workflow

    task = workflow.tasks[0]
    argv = shlex.split(task.command_line)  # what the Batch node agent does
    run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(run.stdout) == [HOSTILE, "a.txt"]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_file_names_with_spaces_stay_whole(project: Project, tmp_path: Path) -> None:
    (project.root / "data" / "my file (1).txt").write_text("x")
    path = project.write(BASE)
    workflow = load_workflow(path, environ={}).workflow
    commands = [t.command for t in workflow.tasks]
    assert "wc -w 'my file (1).txt' > 'my file (1).out'" in commands
