"""No secret reaches .batchflow/: detection, redaction, and refusal by every writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchflow.state.model import TaskRecord, new_state
from batchflow.state.redact import assert_no_secrets, find_secrets, redact_secrets
from batchflow.state.store import StateStore

# Azurite's published development key: the shape of a real account key, and no secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
SIGNATURE = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo%3D"
SAS_URL = f"https://acct.blob.core.windows.net/input/a.txt?sv=2023-11-03&sp=r&se=2026-01-01&sig={SIGNATURE}"
CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)
SECRET_TEXTS = {
    "sas-url": SAS_URL,
    "sas-query": "?" + SAS_URL.split("?")[1],
    "account-key": f'{{"key": "{ACCOUNT_KEY}"}}',
    "connection-string": CONNECTION_STRING,
    "connection-string-short-key": "AccountName=a;AccountKey=c2hvcnQ=;EndpointSuffix=core.windows.net",
}


@pytest.mark.parametrize("text", SECRET_TEXTS.values(), ids=SECRET_TEXTS.keys())
def test_secrets_are_found_and_reported_without_their_value(text: str) -> None:
    findings = find_secrets(text)
    assert findings
    with pytest.raises(ValueError) as refused:
        assert_no_secrets(text, where="the state file")
    message = str(refused.value)
    assert "the state file" in message
    for secret in (ACCOUNT_KEY, SIGNATURE, "c2hvcnQ="):
        assert secret not in message
        assert all(secret not in finding for finding in findings)


def test_each_kind_is_named() -> None:
    assert find_secrets(SAS_URL) == [f"SAS signature (sig=...) at offset {SAS_URL.index(SIGNATURE)}"]
    assert find_secrets(ACCOUNT_KEY) == ["storage account key (88 base64 characters) at offset 0"]
    offset = CONNECTION_STRING.index(ACCOUNT_KEY)
    assert find_secrets(CONNECTION_STRING) == [
        f"account key in a connection string (AccountKey=...) at offset {offset}"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "https://acct.blob.core.windows.net/input/a.txt",
        "https://acct.blob.core.windows.net/input/a.txt?sv=2023-11-03&sig=REDACTED",
        "a design note about the sig= parameter",
        "sha256:" + "ab" * 32,
        "md5 base64 1B2M2Y8AsgTpgAmY7PhCfg==",
        "x" + ACCOUNT_KEY,  # 89 characters: part of a longer base64 value, not a key
    ],
)
def test_ordinary_text_is_not_flagged(text: str) -> None:
    assert find_secrets(text) == []
    assert_no_secrets(text)


def test_redaction_removes_every_secret_and_keeps_the_text_readable() -> None:
    text = f"download failed for {SAS_URL} using {CONNECTION_STRING} and key {ACCOUNT_KEY}"
    redacted = redact_secrets(text)
    assert find_secrets(redacted) == []
    assert "sig=REDACTED" in redacted and "AccountKey=REDACTED;" in redacted
    assert redacted.startswith("download failed for https://acct.blob.core.windows.net/input/a.txt?sv=")


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    store = StateStore(tmp_path / "run")
    store.save(new_state(run="run", workflow="w", workflow_file="w.yaml", fingerprint="f"))
    return store


def test_save_refuses_a_state_holding_a_secret(store: StateStore) -> None:
    before = store.state_path.read_bytes()
    state = store.state
    state.resources["input_url"] = SAS_URL
    with pytest.raises(ValueError, match="refusing to write .*state.json.*SAS signature"):
        store.save(state)
    assert store.state_path.read_bytes() == before
    assert state.serial == 1
    state.resources["input_url"] = redact_secrets(SAS_URL)
    assert store.save(state) is True


def test_record_tasks_refuses_a_secret_and_writes_nothing(store: StateStore) -> None:
    leaky = TaskRecord(
        "t1",
        state="completed",
        exit_code=1,
        result="failure",
        failure={"message": f"could not read {CONNECTION_STRING}"},
    )
    with pytest.raises(ValueError, match="refusing to write .*tasks.jsonl"):
        store.record_tasks([TaskRecord("t0", state="running"), leaky])
    assert not store.journal_path.exists()
    assert store.state.tasks == {}


def test_save_refuses_a_secret_in_a_task_placed_in_the_state_directly(store: StateStore) -> None:
    """Saves reuse the text of the tasks recorded before; a task that is new to the store is still checked."""
    store.record_tasks([TaskRecord("t0", state="running")])
    store.compact()
    state = store.state
    failure = {"message": f"resource file {SAS_URL} not found"}
    state.tasks["t1"] = TaskRecord("t1", state="completed", exit_code=1, result="failure", failure=failure)
    for _ in range(2):  # refused again: a line that was refused is not kept as checked
        with pytest.raises(ValueError, match="refusing to write .*state.json.*SAS signature"):
            store.save(state)
    state.tasks["t1"] = TaskRecord(
        "t1", state="completed", exit_code=1, result="failure", failure={"message": redact_secrets(failure["message"])}
    )
    assert store.save(state) is True
    assert find_secrets(store.state_path.read_text()) == []


def test_nothing_written_by_a_run_contains_a_secret(store: StateStore) -> None:
    """Everything the store writes, scanned the way the end-to-end tests will scan .batchflow/."""
    failure = {"message": redact_secrets(f"resource file {SAS_URL} not found")}
    store.record_tasks([TaskRecord("t1", state="completed", exit_code=1, result="failure", failure=failure)])
    store.compact()
    store.record_tasks([TaskRecord("t2", state="running")])
    for path in store.directory.iterdir():
        assert find_secrets(path.read_text()) == [], path


@pytest.mark.parametrize("prefix", ["", "İstanbul ünïcode — ", "x" * 100 + "\n"])
def test_offsets_are_exact_in_ascii_and_unicode_text(prefix: str) -> None:
    text = prefix + SAS_URL + " " + CONNECTION_STRING.upper().replace(ACCOUNT_KEY.upper(), ACCOUNT_KEY)
    findings = find_secrets(text)
    assert findings[0] == f"SAS signature (sig=...) at offset {text.index(SIGNATURE)}"
    assert findings[1].endswith(f"at offset {text.index(ACCOUNT_KEY)}")
    assert len(findings) == 2


def test_a_parameter_merely_ending_in_sig_is_not_a_signature() -> None:
    assert find_secrets("https://x/y?mysig=" + "a" * 40) == []
    assert find_secrets("https://x/y?SIG=" + "a" * 40) != []
