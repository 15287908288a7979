"""Start-task failures stop apply at once; `ask` keeps resources without a terminal; SAS tokens are scoped."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

from tests.e2e.harness import Batchflow, run_names, topwords_variant


def test_start_task_failure_is_reported_at_once(batchflow: Batchflow) -> None:
    workflow, pool, _ = topwords_variant(batchflow.cwd)
    text = workflow.read_text().replace(
        '      - cp -p topwords.py "$AZ_BATCH_NODE_SHARED_DIR/"',
        '      - echo "disk quota exceeded while preparing" >&2\n      - exit 4',
    )
    workflow.write_text(text)
    started = time.monotonic()
    run = batchflow.run("apply", str(workflow))
    assert run.returncode == 1, run.stderr
    assert time.monotonic() - started < 60, "apply waited for a pool that cannot work"
    assert "the start task failed on node" in run.stderr and "with exit code 4" in run.stderr
    assert "disk quota exceeded while preparing" in run.stderr
    node = run.stderr.split("the start task failed on node ", 1)[1].split()[0]
    logs = batchflow.run("logs", str(workflow), "--start-task", node, "--stderr")
    assert logs.returncode == 0 and "disk quota exceeded while preparing" in logs.stdout
    destroyed = batchflow.run("destroy", str(workflow), "--yes")
    assert f"pool {pool}" in destroyed.stdout


def test_ask_without_a_terminal_keeps_and_says_so(batchflow: Batchflow, local_services) -> None:  # noqa: ANN001
    workflow, pool, _ = topwords_variant(batchflow.cwd, cleanup="  containers: ask\n  job: ask\n  pool: ask\n")
    _, job, _ = run_names(batchflow, workflow)
    run = batchflow.run("apply", str(workflow))
    assert run.returncode == 0, run.stderr
    assert f"kept job {job} (cleanup says ask, and there is no terminal; pass --yes to delete)" in run.stderr
    assert pool in {p.id for p in local_services.batch_client().list_pools()}
    destroyed = batchflow.run("destroy", str(workflow), "--yes")
    assert destroyed.returncode == 0 and f"pool {pool}" in destroyed.stdout
    assert pool not in {p.id for p in local_services.batch_client().list_pools()}


def test_sas_tokens_are_least_privilege(batchflow: Batchflow, local_services) -> None:  # noqa: ANN001
    workflow, _, _ = topwords_variant(batchflow.cwd)
    _, job, _ = run_names(batchflow, workflow)
    run = batchflow.run("apply", str(workflow))
    assert run.returncode == 0, run.stderr
    task = local_services.batch_client().get_task(job, "topNtask0")
    limit = datetime.now(timezone.utc) + timedelta(minutes=20) + timedelta(hours=1)

    def query(url: str) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}

    (resource,) = task.resource_files
    read = query(resource.http_url)
    assert read["sp"] == "r" and "sig" in read
    output_url = next(e.value for e in task.environment_settings if e.name == "OUTPUT_CONTAINER_URL")
    write = query(output_url)
    assert set(write["sp"]) == {"c", "w"}, write["sp"]  # create and write: no read, list or delete
    for token in (read, write):
        assert datetime.fromisoformat(token["se"].replace("Z", "+00:00")) <= limit
    batchflow.run("destroy", str(workflow), "--yes")


def test_a_failure_quoting_a_sas_url_is_reported_without_it(batchflow: Batchflow, local_services) -> None:  # noqa: ANN001
    from batchflow.local import account

    workflow, _, _ = topwords_variant(batchflow.cwd)
    input_container = next(
        physical for logical, physical in run_names(batchflow, workflow)[2].items() if logical.startswith("input")
    )
    process = batchflow.start("apply", str(workflow), BATCHFLOW_FAULT_PAUSE="job", BATCHFLOW_FAULT_PAUSE_SECONDS="3")
    assert process.stderr is not None
    for line in process.stderr:
        if "paused inside step job" in line:
            break
    # the input disappears after the upload: the task's resource file download fails
    local_services.blob_service().get_blob_client(input_container, "bread.txt").delete_blob()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert "task topNtask0 failed" in err and "Traceback" not in err
    assert "sig=REDACTED" in err, err  # the service quoted the URL; the token itself is gone
    assert all(secret not in out + err for secret in (account.BATCH_ACCOUNT_KEY, account.STORAGE_ACCOUNT_KEY))
    state_text = "".join(p.read_text() for p in (batchflow.cwd / ".batchflow").rglob("*.json*"))
    assert "sig=" not in state_text.replace("sig=REDACTED", "")
    batchflow.run("destroy", str(workflow), "--yes")
