"""The end-of-run summary, progress outside a terminal, and the run report looked at in headless Chromium.

Each test runs a real workflow on the local services, then loads its
``report.html`` in Chromium and checks the DOM the page's script built: a table
row per task, a timeline bar per task run, the failures with their stderr.
Screenshots are written next to the report (and to ``BATCHFLOW_SCREENSHOTS``
when set) for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from tests.e2e.harness import WORKFLOWS, Batchflow, topwords_variant, unique_containers
from tests.support.browser import dom, screenshot

DELETE_ALL = "  containers: delete\n  job: delete\n  pool: delete\n"


def report_of(batchflow: Batchflow) -> Path:
    (page,) = (batchflow.cwd / ".batchflow").glob("*/report.html")
    return page


def look(page: Path, name: str) -> Path:
    png = screenshot(page, page.with_suffix(".png"))
    if os.environ.get("BATCHFLOW_SCREENSHOTS"):
        folder = Path(os.environ["BATCHFLOW_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, folder / f"{name}.png")
    return png


def rows(html: str) -> list[str]:
    return re.findall(r'<tr class="task (\w+)" data-task="([^"]+)"', html)


def bars(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<rect class="bar (\w+)" data-task="([^"]+)"', html)


def test_topwords_summary_progress_and_report(batchflow: Batchflow) -> None:
    workflow, _, _ = topwords_variant(batchflow.cwd, cleanup=DELETE_ALL)
    run = batchflow.run("apply", str(workflow))
    assert run.returncode == 0, run.stderr
    # outside a terminal, progress is plain lines; the summary follows the last line
    assert "[6/9] tasks: 3/3 done, 0 running, 0 waiting, 0 failed" in run.stderr.splitlines()
    summary = run.stdout.splitlines()
    assert summary[0].startswith("run topwords-") and "finished" in summary[0]
    assert summary[1].startswith("  elapsed ") and "monitor " in summary[1]
    assert "  tasks: 3 succeeded, 0 failed, 0 cached" in summary
    assert any(line.startswith("  slowest: topNtask") for line in summary)
    assert any(re.fullmatch(r"  outputs: 3 file\(s\), \d+ B, in .*output/topwords", line) for line in summary)
    page = report_of(batchflow)
    assert f"  report: {page}" in summary

    html = dom(page)
    assert sorted(task for _, task in rows(html)) == ["topNtask0", "topNtask1", "topNtask2"]
    assert sorted(bars(html)) == [("succeeded", f"topNtask{i}") for i in range(3)]
    assert html.count('class="bar start"') == 1  # the pool's one node ran its start task in this run
    assert "No task failed." in html
    assert len(re.findall(r'<a href="file://[^"]+_OUTPUT\.txt">', html)) == 3
    assert "http://" not in html.split("<h2>Inputs and outputs</h2>")[1].replace(
        "http://127.0.0.1", ""
    )  # nothing loads from the network
    look(page, "topwords")

    rebuilt = batchflow.run("report", str(workflow), "--output", "json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    data = json.loads(rebuilt.stdout)
    assert data["tasks"] == {"total": 3, "succeeded": 3, "cached": 0, "failed": 0, "unfinished": 0}
    assert [s["key"] for s in data["steps"]][0] == "containers" and data["report"] == str(page)


def test_a_failing_run_reports_its_failures(batchflow: Batchflow) -> None:
    workflow, _, _ = topwords_variant(batchflow.cwd)
    text = workflow.read_text().replace(
        'python3 "$AZ_BATCH_NODE_SHARED_DIR/topwords.py"',
        'echo "cannot parse {{ file.name }}: bad magic" >&2; exit 3; python3 "$AZ_BATCH_NODE_SHARED_DIR/topwords.py"',
    )
    workflow.write_text(text)
    run = batchflow.run("apply", str(workflow), "--output", "json")
    assert run.returncode == 1
    summary = json.loads(run.stdout)["summary"]
    assert summary["tasks"]["failed"] == 3 and summary["elapsed"] > 0

    html = dom(report_of(batchflow))
    assert [state for state, _ in rows(html)] == ["failed"] * 3
    assert sorted(bars(html)) == [("failed", f"topNtask{i}") for i in range(3)]
    failures = re.findall(r'<li class="failure">.*?</li>', html, flags=re.S)
    assert len(failures) == 3 and all("bad magic" in item and "exit code 3" in item for item in failures)
    assert 'class="badge failed"' in html
    look(report_of(batchflow), "failing")
    assert batchflow.run("destroy", str(workflow), "--yes").returncode == 0


def test_ffmpeg_report(batchflow: Batchflow) -> None:
    media = batchflow.cwd / "media"
    media.mkdir()
    for name in ("first clip.mp4", "second.mp4"):
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=330:duration=2",
             "-f", "lavfi", "-i", "color=c=green:s=32x32:d=2", "-shortest", str(media / name)],
            check=True,
        )  # fmt: skip
    text = (
        (WORKFLOWS / "ffmpeg.yaml").read_text().replace("job: ask", "job: delete").replace("pool: ask", "pool: delete")
    )
    text = unique_containers(text, uuid.uuid4().hex[:8]).replace(
        "id: LinuxFfmpegPool", f"id: ffmpeg-{uuid.uuid4().hex[:8]}"
    )
    workflow = batchflow.cwd / "ffmpeg.yaml"
    workflow.write_text(text)
    run = batchflow.run("apply", str(workflow), "--set", f"input_files={media}/*.mp4")
    assert run.returncode == 0, run.stderr
    html = dom(report_of(batchflow))
    assert sorted(task for _, task in rows(html)) == ["Task0", "Task1"]
    assert sorted(bars(html)) == [("succeeded", "Task0"), ("succeeded", "Task1")]
    assert "first clip.mp3" in html and "second.mp3" in html
    look(report_of(batchflow), "ffmpeg")
    batchflow.run("destroy", str(workflow), "--yes", "--set", f"input_files={media}/*.mp4")


NOOP = """\
name: noop
pool:
  id: noop-{suffix}
  vm_size: standard_d2s_v3
  image: {{publisher: canonical, offer: ubuntu-24_04-lts, sku: server, node_agent_sku: batch.node.ubuntu 24.04}}
  nodes: {{dedicated: 2}}
job:
  id: noop
tasks:
  for_each:
    range: {{from: 1, to: 10000}}
  template:
    id: t{{{{ value }}}}
    command: "true"
monitor:
  poll_interval: 1s
  timeout: 30m
cleanup:
  job: delete
  pool: delete
"""


def test_a_10000_task_report_stays_small_and_complete(batchflow: Batchflow) -> None:
    workflow = batchflow.cwd / "noop.yaml"
    workflow.write_text(NOOP.format(suffix=uuid.uuid4().hex[:8]))
    run = batchflow.run("apply", str(workflow), timeout=600)
    assert run.returncode == 0, run.stderr
    assert "  tasks: 10,000 succeeded, 0 failed, 0 cached" in run.stdout
    page = report_of(batchflow)
    assert page.stat().st_size < 10 * 1024 * 1024
    html = dom(page)
    assert len(bars(html)) == 10_000  # one bar per task run
    assert len(rows(html)) == 500 and "10,000 task(s), page 1 of 20" in html  # the table is paged
    assert "10,000 tasks: 10,000 succeeded" in html
    look(page, "noop-10000")
