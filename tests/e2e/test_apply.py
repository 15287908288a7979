"""`batchflow apply` end to end on the local services: results, reruns, failures, locks, secrets."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from batchflow.local import account
from tests.e2e.harness import (
    WORKFLOWS,
    Batchflow,
    check_topwords_outputs,
    run_names,
    secrets_in,
    topwords_variant,
    unique_containers,
)


def test_topwords_runs_and_outputs_are_correct(batchflow: Batchflow, local_services) -> None:  # noqa: ANN001
    workflow, pool, job = topwords_variant(
        batchflow.cwd, cleanup="  containers: delete\n  job: delete\n  pool: delete\n"
    )
    run = batchflow.run("apply", str(workflow))
    assert run.returncode == 0, run.stderr
    for number in range(1, 10):
        assert f"[{number}/9]" in run.stderr
    inputs = sorted((batchflow.cwd / "topwords" / "data").glob("*.txt"))
    check_topwords_outputs(inputs, batchflow.cwd / "output" / "topwords", 3, job, pool)
    assert "outputs in" in run.stdout

    # the run deleted its job, pool and containers
    client = local_services.batch_client()
    assert pool not in {p.id for p in client.list_pools()}
    assert not any(
        c.name.startswith("input-") and c.name.endswith(pool[5:])
        for c in local_services.blob_service().list_containers()
    )

    # no secret in the state, the outputs, or what was printed
    keys = [account.BATCH_ACCOUNT_KEY, account.STORAGE_ACCOUNT_KEY]
    assert not secrets_in([batchflow.cwd / ".batchflow", batchflow.cwd / "output"], keys)
    assert not any(k in run.stdout + run.stderr for k in keys) and "sig=" not in run.stdout + run.stderr

    # applying a finished run again is a quick no-op that says where the outputs are
    started = time.monotonic()
    again = batchflow.run("apply", str(workflow))
    assert again.returncode == 0, again.stderr
    assert "already finished; outputs in" in again.stderr
    assert time.monotonic() - started < 10


def test_templated_rerun_with_new_inputs(batchflow: Batchflow) -> None:
    workflow, pool, job = topwords_variant(
        batchflow.cwd, cleanup="  containers: delete\n  job: delete\n  pool: delete\n"
    )
    first = batchflow.run("apply", str(workflow))
    assert first.returncode == 0, first.stderr
    more = batchflow.cwd / "more"
    more.mkdir()
    (more / "one.txt").write_text("red green blue green red red yellow blue green red\n")
    (more / "two.txt").write_text("\ufeffsea, sky; sea! land? sky sea: land... (sky) sea\n", encoding="utf-8")
    second = batchflow.run(
        "apply",
        str(workflow),
        "--set",
        f"input_files={more}/*.txt",
        "--set",
        "numwords=5",
        "--set",
        "output_dir=output/more",
    )
    assert second.returncode == 0, second.stderr
    assert "already finished" not in second.stderr  # a new run: the definition changed
    check_topwords_outputs(sorted(more.glob("*.txt")), batchflow.cwd / "output" / "more", 5, job, pool)
    runs = sorted(p.name for p in (batchflow.cwd / ".batchflow").iterdir())
    assert len(runs) == 2 and all(r.startswith("topwords-") for r in runs)


def test_failing_task_exits_1_with_its_stderr(batchflow: Batchflow) -> None:
    workflow, pool, job = topwords_variant(batchflow.cwd)
    text = workflow.read_text().replace(
        'python3 "$AZ_BATCH_NODE_SHARED_DIR/topwords.py"',
        'echo "cannot parse {{ file.name }}: bad magic" >&2; exit 3; python3 "$AZ_BATCH_NODE_SHARED_DIR/topwords.py"',
    )
    workflow.write_text(text)
    run = batchflow.run("apply", str(workflow))
    assert run.returncode == 1, run.stderr
    assert "task topNtask0 failed with exit code 3" in run.stderr
    assert "cannot parse bread.txt: bad magic" in run.stderr
    assert f"batchflow logs {workflow} topNtask0 --stderr" in run.stderr
    logs = batchflow.run("logs", str(workflow), "topNtask1", "--stderr")
    assert logs.returncode == 0 and "cannot parse lighthouse.txt: bad magic" in logs.stdout
    status = batchflow.run("status", str(workflow), "--output", "json")
    report = json.loads(status.stdout)
    assert report["live"]["tasks"]["failed"] == 3 and len(report["failures"]) == 3
    (node,) = report["live"]["nodes"]
    text = batchflow.run("status", str(workflow)).stdout
    assert "[6/9] monitor tasks: done: 0 succeeded (0 from the cache), 3 failed" in text
    assert f"--start-task {node}" in text and "tokens_expire" not in text
    start_task = batchflow.run("logs", str(workflow), "--start-task", node)
    assert start_task.returncode == 0, start_task.stderr
    empty = batchflow.run("logs", str(workflow), "topNtask1")
    assert empty.returncode == 0 and empty.stdout == "" and "(stdout.txt is empty)" in empty.stderr
    # What is missing is named, without the SDK's own log lines.
    missing_task = batchflow.run("logs", str(workflow), "topNtask9")
    assert missing_task.returncode == 1
    assert "has no task topNtask9" in missing_task.stderr, missing_task.stderr
    missing_node = batchflow.run("logs", str(workflow), "--start-task", "tvm-nowhere")
    assert missing_node.returncode == 1 and "has no node tvm-nowhere" in missing_node.stderr, missing_node.stderr
    destroyed = batchflow.run("destroy", str(workflow), "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert f"job {job}" in destroyed.stdout and f"pool {pool}" in destroyed.stdout
    gone = batchflow.run("logs", str(workflow), "topNtask1", "--stderr")
    assert gone.returncode == 1 and "does not exist (deleted by cleanup or destroy)" in gone.stderr, gone.stderr
    for run in (missing_task, missing_node, gone):
        assert "deserialization" not in run.stderr and "Traceback" not in run.stderr


def test_a_second_apply_on_the_same_run_is_refused(batchflow: Batchflow) -> None:
    workflow, _, _ = topwords_variant(batchflow.cwd, sleep=3)
    first = batchflow.start("apply", str(workflow))
    try:
        deadline = time.monotonic() + 60
        lock_files = []
        while not lock_files and time.monotonic() < deadline:
            lock_files = (
                list((batchflow.cwd / ".batchflow").glob("*/lock.json"))
                if (batchflow.cwd / ".batchflow").exists()
                else []
            )
            time.sleep(0.1)
        assert lock_files, "the first apply never took its lock"
        second = batchflow.run("apply", str(workflow))
        assert second.returncode == 1
        assert f"is locked by apply (pid {first.pid}" in second.stderr
    finally:
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    destroyed = batchflow.run("destroy", str(workflow), "--yes")
    assert destroyed.returncode == 0, destroyed.stderr


def test_malicious_blob_name_is_refused_on_download(batchflow: Batchflow, tmp_path: Path) -> None:
    workflow, _, _ = topwords_variant(batchflow.cwd)
    escape = tmp_path.parent / f"escaped-{tmp_path.name}.txt"
    # one task also uploads a blob whose name is an absolute path
    text = workflow.read_text().replace(
        'python3 "$AZ_BATCH_NODE_SHARED_DIR/topwords.py"',
        "python3 -c \"import os,sys; sys.path.insert(0, os.environ['AZ_BATCH_NODE_SHARED_DIR']); "
        f"import topwords; topwords.put_blob(os.environ['OUTPUT_CONTAINER_URL'], '{escape}', b'pwned')\"; "
        'python3 "$AZ_BATCH_NODE_SHARED_DIR/topwords.py"',
    )
    workflow.write_text(text)
    run = batchflow.run("apply", str(workflow))
    assert run.returncode == 1, run.stderr
    assert f"refusing to download blob '{escape}'" in run.stderr
    assert not escape.exists()
    assert len(list((batchflow.cwd / "output" / "topwords").glob("*_OUTPUT.txt"))) == 3
    batchflow.run("destroy", str(workflow), "--yes")


def test_azure_target_from_local_env(batchflow: Batchflow) -> None:
    """The azure target's configuration path, fed by `batchflow local env`."""
    workflow, _, _ = topwords_variant(batchflow.cwd, cleanup="  containers: delete\n  job: delete\n  pool: delete\n")
    exported = json.loads(batchflow.run("local", "env", "--json").stdout)
    assert set(exported) >= {
        "AZURE_BATCH_ENDPOINT",
        "AZURE_BATCH_ACCOUNT_NAME",
        "AZURE_BATCH_ACCOUNT_KEY",
        "AZURE_STORAGE_CONNECTION_STRING",
    }
    run = batchflow.run("apply", str(workflow), "--target", "azure", **exported)
    assert run.returncode == 0, run.stderr
    assert "on azure (Batch http://127.0.0.1:" in run.stderr
    assert len(list((batchflow.cwd / "output" / "topwords").glob("*_OUTPUT.txt"))) == 3


def test_ffmpeg_converts_every_file(batchflow: Batchflow) -> None:
    import shutil
    import subprocess

    # The shipped sample inputs: the workflow runs as it comes, with no preparation step.
    shutil.copytree(WORKFLOWS / "ffmpeg", batchflow.cwd / "ffmpeg", dirs_exist_ok=True)
    media = batchflow.cwd / "ffmpeg" / "input"
    text = (
        (WORKFLOWS / "ffmpeg.yaml").read_text().replace("job: ask", "job: delete").replace("pool: ask", "pool: delete")
    )
    text = unique_containers(text, uuid.uuid4().hex[:8])
    workflow = batchflow.cwd / "ffmpeg.yaml"
    workflow.write_text(text)
    run = batchflow.run("apply", str(workflow))
    assert run.returncode == 0, run.stderr
    out = batchflow.cwd / "output" / "ffmpeg"
    inputs = sorted(media.glob("*.mp4"))
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stem}.mp3" for p in inputs)

    def duration(path: Path) -> float:
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        return float(probe.stdout.strip())

    for source in inputs:
        mp3 = out / f"{source.stem}.mp3"
        assert abs(duration(mp3) - duration(source)) < 0.5, mp3


def test_plan_compares_with_state_and_service(batchflow: Batchflow) -> None:
    workflow, pool, _ = topwords_variant(batchflow.cwd)
    first_run, job, containers = run_names(batchflow, workflow)
    before = batchflow.run("plan", str(workflow), "--output", "json")
    assert before.returncode == 0, before.stderr
    steps = {s["key"]: s["apply_would"] for s in json.loads(before.stdout)["steps"]}
    assert steps["uploads"] == ["4 new, 0 changed, 0 unchanged (by MD5)"]
    assert steps["pool"] == [f"pool {pool} will be created"]
    assert steps["job"] == [f"job {job} will be created"]

    applied = batchflow.run("apply", str(workflow))
    assert applied.returncode == 0, applied.stderr
    after = batchflow.run("plan", str(workflow))
    assert after.returncode == 0, after.stderr
    assert after.stdout.count("=> done in this run already; apply skips it") == 9

    # a changed input makes a new run, with containers and a job of its own; it may share the pool
    (batchflow.cwd / "topwords" / "data" / "tides.txt").write_text("a different tide\n")
    second_run, second_job, second_containers = run_names(batchflow, workflow)
    assert second_run != first_run and second_job != job
    assert not set(second_containers.values()) & set(containers.values())
    changed = batchflow.run("plan", str(workflow), "--output", "json")
    steps = {s["key"]: s["apply_would"] for s in json.loads(changed.stdout)["steps"]}
    assert steps["uploads"] == ["4 new, 0 changed, 0 unchanged (by MD5)"]
    assert "exists and will be reused" in steps["pool"][0]
    assert steps["job"] == [f"job {second_job} will be created"]
    destroyed = batchflow.run("destroy", str(workflow), "--run", _only_run(batchflow), "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert f"job {job}" in destroyed.stdout


def _only_run(batchflow: Batchflow) -> str:
    runs = [p.name for p in (batchflow.cwd / ".batchflow").iterdir()]
    assert len(runs) == 1
    return runs[0]


def test_ctrl_c_stops_cleanly_and_prints_the_resume_command(batchflow: Batchflow) -> None:
    import signal

    workflow, _, _ = topwords_variant(batchflow.cwd, sleep=2)
    process = batchflow.start(
        "apply", str(workflow), BATCHFLOW_FAULT_PAUSE="monitor", BATCHFLOW_FAULT_PAUSE_SECONDS="60"
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "paused inside step monitor" in line:
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"Resume with: batchflow apply {workflow}" in err
    assert "Traceback" not in err
    (page,) = (batchflow.cwd / ".batchflow").glob("*/report.html")  # written on the way out
    assert "monitor tasks</td><td>running" in page.read_text()
    resumed = batchflow.run("apply", str(workflow))
    assert resumed.returncode == 0, resumed.stderr
    assert "took over" not in resumed.stderr  # the interrupted apply released its lock
    batchflow.run("destroy", str(workflow), "--yes")


def test_a_fixed_workflow_runs_beside_the_failed_run_it_replaces(batchflow: Batchflow, local_services) -> None:  # noqa: ANN001
    workflow, _, job = topwords_variant(batchflow.cwd)
    original = workflow.read_text()
    workflow.write_text(original.replace('python3 "$AZ_BATCH_NODE_SHARED_DIR/topwords.py"', "exit 5; true"))
    failed = batchflow.run("apply", str(workflow))
    assert failed.returncode == 1
    destroy_hint = failed.stderr.split("Remove them with: ", 1)[1].split("\n", 1)[0]

    # The fix makes a new run with a job of its own: the failed run's job is no obstacle.
    workflow.write_text(original)
    fixed = batchflow.run("apply", str(workflow))
    assert fixed.returncode == 0, fixed.stderr
    jobs = {j.id for j in local_services.batch_client().list_jobs() if j.id.startswith(job + "-")}
    assert len(jobs) == 2

    destroyed = batchflow.run(*destroy_hint.split()[1:], "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    everything = batchflow.run("destroy", str(workflow), "--all-runs", "--yes")
    assert everything.returncode == 0, everything.stderr
    assert not {j.id for j in local_services.batch_client().list_jobs() if j.id.startswith(job + "-")}


def test_a_kept_pool_is_reused_by_a_new_run_with_fresh_start_task_tokens(batchflow: Batchflow, local_services) -> None:  # noqa: ANN001
    from urllib.parse import parse_qs, urlsplit

    workflow, pool, job = topwords_variant(batchflow.cwd, cleanup="  containers: delete\n  job: delete\n  pool: keep\n")
    first = batchflow.run("apply", str(workflow))
    assert first.returncode == 0, first.stderr
    client = local_services.batch_client()

    def start_task_expiry() -> str:
        url = client.get_pool(pool).start_task.resource_files[0].http_url
        return parse_qs(urlsplit(url).query)["se"][0]

    before = start_task_expiry()
    time.sleep(1.1)  # SAS expiry has one-second resolution
    second = batchflow.run("apply", str(workflow), "--set", "numwords=4")
    assert second.returncode == 0, second.stderr
    assert "reused (made by run topwords-" in second.stderr
    assert start_task_expiry() > before
    assert pool in {p.id for p in client.list_pools()}  # still kept by the second run's policy
    client.begin_delete_pool(pool, polling_interval=1).result()
