"""Target resolution: environment variables and the targets file, never a secret from the workflow."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchflow.cloud.targets import resolve
from batchflow.errors import SetupError, UsageError

CONNECTION = "DefaultEndpointsProtocol=https;AccountName=mystore;AccountKey=a2V5;EndpointSuffix=core.windows.net"


def test_azure_target_from_the_environment() -> None:
    target = resolve(
        "azure",
        {
            "AZURE_BATCH_ENDPOINT": "https://mybatch.westeurope.batch.azure.com/",
            "AZURE_BATCH_ACCOUNT_NAME": "mybatch",
            "AZURE_BATCH_ACCOUNT_KEY": "c2VjcmV0",
            "AZURE_STORAGE_CONNECTION_STRING": CONNECTION,
        },
    )
    assert target.batch_endpoint == "https://mybatch.westeurope.batch.azure.com"
    assert target.blob_endpoint == "https://mystore.blob.core.windows.net"
    assert target.storage_account_name == "mystore" and not target.uses_entra_for_storage
    assert "c2VjcmV0" not in repr(target) and "a2V5" not in repr(target) and "c2VjcmV0" not in target.describe()


def test_azure_target_without_keys_uses_entra_id() -> None:
    target = resolve(
        "azure",
        {
            "AZURE_BATCH_ENDPOINT": "https://b.eastus.batch.azure.com",
            "AZURE_STORAGE_ACCOUNT_URL": "https://st.blob.core.windows.net",
        },
    )
    assert target.uses_entra_for_batch and target.uses_entra_for_storage
    assert target.storage_account_name == "st"


def test_missing_endpoint_is_a_setup_error() -> None:
    with pytest.raises(SetupError, match="AZURE_BATCH_ENDPOINT"):
        resolve("azure", {})


def test_named_target_reads_secrets_from_the_variables_it_names(tmp_path: Path) -> None:
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        "targets:\n  prod:\n"
        "    AZURE_BATCH_ENDPOINT: https://prod.batch.azure.com\n"
        "    AZURE_BATCH_ACCOUNT_NAME: prod\n"
        "    AZURE_BATCH_ACCOUNT_KEY_ENV: PROD_KEY\n"
        "    AZURE_STORAGE_CONNECTION_STRING_ENV: PROD_STORAGE\n"
    )
    environ = {"BATCHFLOW_TARGETS_FILE": str(targets), "PROD_KEY": "cHJvZA==", "PROD_STORAGE": CONNECTION}
    target = resolve("prod", environ)
    assert target.name == "prod" and target.batch_account_key == "cHJvZA=="
    with pytest.raises(UsageError, match="defines: prod"):
        resolve("staging", environ)
