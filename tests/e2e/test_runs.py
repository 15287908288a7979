"""Runs that never step on each other: isolation, concurrency, retry, declared outputs and the task cache.

Every test drives the real command line against the session's local services
and recomputes the outputs independently; task executions are counted with a
marker file each task appends its id to.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from batchflow.local import account
from tests.e2e.harness import WORKFLOWS, Batchflow, check_topwords_outputs, run_names, secrets_in, topwords_variant

KEEP_ALL = "  containers: keep\n  job: keep\n  pool: keep\n"
DELETE_ALL = "  containers: delete\n  job: delete\n  pool: delete\n"


def executions(marker: Path) -> list[str]:
    return sorted(marker.read_text().split()) if marker.exists() else []


def fail_while(workflow: Path, flag: Path, task: str) -> None:
    """Make ``task`` exit 3 while ``flag`` exists; the marker line before it still counts the attempt."""
    script = '      python3 "$AZ_BATCH_NODE_SHARED_DIR/topwords.py"'
    check = f'      if [ -e {flag} ] && [ "$AZ_BATCH_TASK_ID" = {task} ]; then exit 3; fi;\n'
    text = workflow.read_text()
    assert text.count(script) == 1
    workflow.write_text(text.replace(script, check + script))


def test_ffmpeg_then_topwords_each_download_only_their_own_outputs(batchflow: Batchflow, local_services) -> None:  # noqa: ANN001
    """Both shipped workflows declare containers named input and output; their runs must not mix them."""
    media = batchflow.cwd / "media"
    media.mkdir()
    for name, seconds in (("one tone.mp4", 1), ("two.mp4", 2)):
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
             "-f", "lavfi", "-i", f"color=c=blue:s=32x32:d={seconds}", "-shortest", str(media / name)],
            check=True,
        )  # fmt: skip
    suffix = uuid.uuid4().hex[:8]
    shutil.copytree(WORKFLOWS / "ffmpeg", batchflow.cwd / "ffmpeg", dirs_exist_ok=True)
    shutil.copytree(WORKFLOWS / "topwords", batchflow.cwd / "topwords", dirs_exist_ok=True)
    for name, pool in (("ffmpeg", "LinuxFfmpegPool"), ("topwords", "PythonTutorialPool")):
        text = (WORKFLOWS / f"{name}.yaml").read_text().replace(f"id: {pool}", f"id: {pool}-{suffix}")
        text = text.replace("job: ask", "job: delete").replace("pool: ask", "pool: delete")
        text = text.replace("  containers: delete\n", "  containers: keep\n")  # keep topwords' blobs too
        (batchflow.cwd / f"{name}.yaml").write_text(text)

    ffmpeg = batchflow.run("apply", "ffmpeg.yaml", "--set", f"input_files={media}/*.mp4")
    assert ffmpeg.returncode == 0, ffmpeg.stderr
    topwords = batchflow.run("apply", "topwords.yaml")
    assert topwords.returncode == 0, topwords.stderr

    inputs = sorted((batchflow.cwd / "topwords" / "data").glob("*.txt"))
    check_topwords_outputs(
        inputs, batchflow.cwd / "output" / "topwords", 3, "PythonTutorialJob", f"PythonTutorialPool-{suffix}"
    )
    assert sorted(p.name for p in (batchflow.cwd / "output" / "ffmpeg").iterdir()) == ["one tone.mp3", "two.mp3"]
    names = {c.name for c in local_services.blob_service().list_containers()}
    assert "output" not in names and "input" not in names  # every run has containers of its own
    assert (
        batchflow.run("destroy", "ffmpeg.yaml", "--all-runs", "--yes", "--set", f"input_files={media}/*.mp4").returncode
        == 0
    )
    assert batchflow.run("destroy", "topwords.yaml", "--all-runs", "--yes").returncode == 0


def test_two_runs_at_once_finish_and_destroying_one_leaves_the_other(batchflow: Batchflow, local_services) -> None:  # noqa: ANN001
    workflow, pool, job = topwords_variant(batchflow.cwd, cleanup=KEEP_ALL)
    data = batchflow.cwd / "topwords" / "data"
    (data / "zebra.txt").write_text("zebra zebra zebra quagga quagga okapi\n")
    sets = {}
    for name, files in (("a", ("bread.txt", "lighthouse.txt")), ("b", ("tides.txt", "zebra.txt"))):
        folder = batchflow.cwd / name
        folder.mkdir()
        for file in files:
            shutil.copy(data / file, folder / file)
        sets[name] = ("--set", f"input_files={folder}/*.txt", "--set", f"output_dir=out-{name}")

    started = {name: batchflow.start("apply", str(workflow), *options) for name, options in sets.items()}
    for name, process in started.items():
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"run {name}: {err}"
    for name in sets:
        inputs = sorted((batchflow.cwd / name).glob("*.txt"))
        check_topwords_outputs(inputs, batchflow.cwd / f"out-{name}", 3, job, pool)

    run_b, job_b, containers_b = run_names(batchflow, workflow, *sets["b"])
    blobs = local_services.blob_service()

    def contents() -> dict[str, list[str]]:
        return {c: sorted(b.name for b in blobs.get_container_client(c).list_blobs()) for c in containers_b.values()}

    before = contents()
    assert before[containers_b[next(c for c in containers_b if c.startswith("output"))]] == [
        "tides_OUTPUT.txt",
        "zebra_OUTPUT.txt",
    ]
    destroyed = batchflow.run("destroy", str(workflow), *sets["a"], "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert f"kept pool {pool}: still in use by run {run_b} (job {job_b})" in destroyed.stdout
    assert contents() == before
    assert local_services.batch_client().get_job(job_b).id == job_b
    status = batchflow.run("status", str(workflow), *sets["a"])
    assert "destroyed at" in status.stdout
    again = batchflow.run("apply", str(workflow), *sets["b"])
    assert again.returncode == 0 and "already finished" in again.stderr + again.stdout

    everything = batchflow.run("destroy", str(workflow), "--all-runs", "--yes")
    assert everything.returncode == 0, everything.stderr
    assert pool not in {p.id for p in local_services.batch_client().list_pools()}


def test_a_failed_task_is_retried_alone_even_after_its_pool_and_job_are_gone(
    batchflow: Batchflow, local_services
) -> None:  # noqa: ANN001
    marker, flag = batchflow.cwd / "executions.log", batchflow.cwd / "broken"
    workflow, pool, job = topwords_variant(batchflow.cwd, cleanup=DELETE_ALL, marker=marker)
    fail_while(workflow, flag, "topNtask1")
    flag.touch()
    failed = batchflow.run("apply", str(workflow))
    assert failed.returncode == 1, failed.stderr
    assert "task topNtask1 failed with exit code 3" in failed.stderr
    assert executions(marker) == ["topNtask0", "topNtask1", "topNtask2"]

    _, physical_job, _ = run_names(batchflow, workflow)
    client = local_services.batch_client()
    client.begin_delete_job(physical_job, polling_interval=1).result()
    client.begin_delete_pool(pool, polling_interval=1).result()
    flag.unlink()  # the cause is fixed outside batchflow
    retried = batchflow.run("apply", str(workflow))
    assert retried.returncode == 0, retried.stderr
    assert "retrying 1 failed task(s) (topNtask1); the 2 that succeeded are not run again" in retried.stderr
    assert "step 'create pool' was done, but what it made is gone; doing it again" in retried.stderr
    assert executions(marker) == ["topNtask0", "topNtask1", "topNtask1", "topNtask2"]
    inputs = sorted((batchflow.cwd / "topwords" / "data").glob("*.txt"))
    check_topwords_outputs(inputs, batchflow.cwd / "output" / "topwords", 3, job, pool)
    finished = batchflow.run("apply", str(workflow))
    assert finished.returncode == 0 and "already finished" in finished.stderr + finished.stdout

    destroyed = batchflow.run("destroy", str(workflow), "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert "destroyed at" in batchflow.run("status", str(workflow)).stdout
    again = batchflow.run("apply", str(workflow))
    assert again.returncode == 0, again.stderr
    assert "was destroyed at" in again.stderr and "starting it again from the first step" in again.stderr
    check_topwords_outputs(inputs, batchflow.cwd / "output" / "topwords", 3, job, pool)


@pytest.mark.parametrize("containers", ["keep", "delete"])
def test_a_rerun_with_one_changed_and_one_new_input_runs_two_tasks(batchflow: Batchflow, containers: str) -> None:
    marker = batchflow.cwd / "executions.log"
    cleanup = f"  containers: {containers}\n  job: delete\n  pool: delete\n"
    workflow, pool, job = topwords_variant(batchflow.cwd, cleanup=cleanup, marker=marker)
    first = batchflow.run("apply", str(workflow))
    assert first.returncode == 0, first.stderr
    assert len(executions(marker)) == 3

    data = batchflow.cwd / "topwords" / "data"
    (data / "tides.txt").write_text("the tide turned and the tide came in again\n")
    (data / "zebra.txt").write_text("zebra zebra zebra quagga quagga okapi\n")
    plan = batchflow.run("plan", str(workflow), "--set", "output_dir=out2")
    assert plan.returncode == 0, plan.stderr
    assert "4 task(s): 2 to run, 2 cached" in plan.stdout
    assert "topNtask0 [cached (from run topwords-" in plan.stdout

    second = batchflow.run("apply", str(workflow), "--set", "output_dir=out2")
    assert second.returncode == 0, second.stderr
    assert "2 cached (outputs reused, not run)" in second.stderr
    assert executions(marker) == sorted(["topNtask0", "topNtask1", "topNtask2", "topNtask2", "topNtask3"])
    inputs = sorted(data.glob("*.txt"))
    check_topwords_outputs(inputs, batchflow.cwd / "out2", 3, job, pool)

    everything = batchflow.run("apply", str(workflow), "--set", "output_dir=out3", "--no-cache")
    assert everything.returncode == 0, everything.stderr
    assert len(executions(marker)) == 5 + 4
    check_topwords_outputs(inputs, batchflow.cwd / "out3", 3, job, pool)

    workflow.write_text(workflow.read_text() + "cache: false\n")
    off = batchflow.run("plan", str(workflow), "--set", "output_dir=out4")
    assert "4 task(s): 4 to run, 0 cached" in off.stdout, off.stdout
    index = batchflow.home / "cache.sqlite"
    assert index.is_file() and not secrets_in([index], [account.BATCH_ACCOUNT_KEY, account.STORAGE_ACCOUNT_KEY])


def test_a_task_that_succeeds_without_its_declared_output_fails_the_run(batchflow: Batchflow) -> None:
    workflow, _, _ = topwords_variant(batchflow.cwd)
    text = workflow.read_text()
    declared = '      - "{{ file.stem }}_OUTPUT.txt"\n'
    assert declared in text
    workflow.write_text(text.replace(declared, declared + '      - "summaries/{{ file.stem }}.json"\n'))
    run = batchflow.run("apply", str(workflow))
    assert run.returncode == 1, run.stderr
    assert "did not produce its declared output(s): output-" in run.stderr
    assert "summaries/bread.json" in run.stderr and "task topNtask0 failed with exit code 0" in run.stderr

    # status only looks: with the local services down it shows the state and starts nothing
    home, port = batchflow.cwd / "no-services", str(free_port())
    quiet = batchflow.run(
        "status", str(workflow), BATCHFLOW_HOME=str(home), BATCHFLOW_BATCH_PORT=port, BATCHFLOW_BLOB_PORT=port
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "the local services are not running (batchflow local up starts them)" in quiet.stdout
    assert "3 failed, 3 without their declared outputs" in quiet.stdout
    assert not (home / "run").exists()
    assert batchflow.run("destroy", str(workflow), "--yes").returncode == 0


def test_killed_while_reusing_cached_outputs_resumes_without_running_anything(
    batchflow: Batchflow, local_services
) -> None:  # noqa: ANN001
    marker = batchflow.cwd / "executions.log"
    workflow, pool, job = topwords_variant(
        batchflow.cwd, cleanup="  containers: keep\n  job: keep\n  pool: keep\n", marker=marker
    )
    assert batchflow.run("apply", str(workflow)).returncode == 0
    assert len(executions(marker)) == 3

    options = ("--set", "output_dir=out2")  # a new run whose every task the cache can supply
    _, physical_job, _ = run_names(batchflow, workflow, *options)
    process = batchflow.start(
        "apply", str(workflow), *options, BATCHFLOW_FAULT_PAUSE="tasks", BATCHFLOW_FAULT_PAUSE_SECONDS="120"
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "paused inside step tasks" in line:
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    resumed = batchflow.run("apply", str(workflow), *options)
    assert resumed.returncode == 0, resumed.stderr
    assert "took over the lock left by apply" in resumed.stderr
    assert len(executions(marker)) == 3, "a cached task ran"
    inputs = sorted((batchflow.cwd / "topwords" / "data").glob("*.txt"))
    check_topwords_outputs(inputs, batchflow.cwd / "out2", 3, job, pool)
    assert list(local_services.batch_client().list_tasks(physical_job)) == []
    status = batchflow.run("status", str(workflow), *options, "--output", "json")
    assert json.loads(status.stdout)["steps"]["monitor"]["cached"] == 3
    assert batchflow.run("destroy", str(workflow), "--all-runs", "--yes").returncode == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
