"""Where a run goes: the local services, or Azure, and with which credentials.

A :class:`Target` holds endpoints and credentials and makes the SDK clients.
Secrets come only from the environment (or, for the local target, from the
well-known local accounts); never from the workflow file, and they are never
printed: the credential fields are left out of ``repr``.

* ``local`` (the default): Azurite and the local Batch service, started if needed.
* ``azure``: from the environment: ``AZURE_BATCH_ENDPOINT``; a Shared Key from
  ``AZURE_BATCH_ACCOUNT_NAME`` and ``AZURE_BATCH_ACCOUNT_KEY`` or else Microsoft
  Entra ID (``DefaultAzureCredential``); storage from
  ``AZURE_STORAGE_CONNECTION_STRING``, or ``AZURE_STORAGE_ACCOUNT_URL`` with
  ``AZURE_STORAGE_ACCOUNT_KEY`` or else Entra ID (user-delegation SAS).
* any other name: an entry of the targets file (``BATCHFLOW_TARGETS_FILE``,
  default ``~/.config/batchflow/targets.yaml``), whose values are the same
  settings; secrets are named by the environment variable that holds them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from azure.core.pipeline.policies import RetryPolicy

from batchflow.errors import SetupError, UsageError
from batchflow.state.redact import redact_secrets

#: azure-core retries 408, 429, 500, 502, 503 and 504 with exponential backoff.
#: batchflow allows more attempts than azure-core's 3 status retries, so that a
#: busy service (or the local service's fault simulation) is ridden out, not
#: reported.
RETRY_SETTINGS: dict[str, Any] = {
    "retry_total": 8,
    "retry_status": 8,
    "retry_backoff_factor": 0.5,
    "retry_backoff_max": 30,
}


class RepeatablePostRetryPolicy(RetryPolicy):
    """azure-core's retry policy, also retrying POST and PATCH on 408, 429 and 502.

    azure-core retries a POST only on 500, 503 and 504 (or a 429 that carries
    Retry-After), because a POST may not be safe to repeat. Every POST
    batchflow sends is: creating a pool, job or container that already exists
    is adopted by the steps, and an existing task counts as added.
    """

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        method = response.http_request.method.upper()
        if method in ("POST", "PATCH") and response.http_response.status_code in (408, 429, 502):
            return bool(settings["total"])
        return super().is_retry(settings, response)


@dataclass(frozen=True)
class Target:
    """Endpoints and credentials of one Batch account and one storage account."""

    name: str
    kind: Literal["local", "azure"]
    batch_endpoint: str
    blob_endpoint: str
    storage_account_name: str
    batch_account_name: str | None = None
    batch_account_key: str | None = field(default=None, repr=False)
    storage_account_key: str | None = field(default=None, repr=False)

    @property
    def uses_entra_for_batch(self) -> bool:
        return not self.batch_account_key

    @property
    def uses_entra_for_storage(self) -> bool:
        return not self.storage_account_key

    def describe(self) -> str:
        """A secret-free line saying where runs go."""
        return redact_secrets(f"{self.name} (Batch {self.batch_endpoint}, storage {self.blob_endpoint})")

    def batch_client(self) -> Any:
        from azure.batch import BatchClient
        from azure.core.credentials import AzureNamedKeyCredential

        if not self.uses_entra_for_batch:
            credential: Any = AzureNamedKeyCredential(self.batch_account_name or "", self.batch_account_key)
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        try:
            return BatchClient(
                endpoint=self.batch_endpoint,
                credential=credential,
                retry_policy=RepeatablePostRetryPolicy(**RETRY_SETTINGS),
                **self._transport(),
            )
        except ValueError as error:
            raise SetupError(f"target {self.name}: cannot use the Batch endpoint: {error}") from None

    def _transport(self) -> dict[str, Any]:
        """For the local services, a transport that never looks for a proxy in the environment.

        They listen on 127.0.0.1, where a proxy set for the internet (``HTTPS_PROXY``
        without ``NO_PROXY``) must not be used, and requests' search of the environment
        for one took an eighth of the runner's CPU per request. Azure targets keep the
        SDK's default transport, proxies included.
        """
        if self.kind != "local":
            return {}
        from azure.core.pipeline.transport import RequestsTransport

        return {"transport": RequestsTransport(use_env_settings=False)}

    def blob_service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        if not self.uses_entra_for_storage:
            credential: Any = {"account_name": self.storage_account_name, "account_key": self.storage_account_key}
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        try:
            return BlobServiceClient(self.blob_endpoint, credential=credential, **RETRY_SETTINGS, **self._transport())
        except ValueError as error:
            raise SetupError(
                f"target {self.name}: cannot use the storage endpoint: {redact_secrets(str(error))}"
            ) from None


def local_target(endpoints: Any) -> Target:
    """The target of the local services, from their ``LocalEndpoints``."""
    return Target(
        name="local",
        kind="local",
        batch_endpoint=endpoints.batch_endpoint,
        blob_endpoint=endpoints.blob_endpoint,
        storage_account_name=endpoints.storage_account_name,
        batch_account_name=endpoints.batch_account_name,
        batch_account_key=endpoints.batch_account_key,
        storage_account_key=endpoints.storage_account_key,
    )


def parse_connection_string(text: str) -> dict[str, str]:
    """Split ``Key=Value;Key=Value`` into a mapping (values may contain ``=``)."""
    parts = {}
    for item in text.split(";"):
        if "=" in item:
            key, _, value = item.partition("=")
            parts[key.strip()] = value.strip()
    return parts


def _storage_from_connection_string(text: str) -> tuple[str, str, str | None]:
    parts = parse_connection_string(text)
    name = parts.get("AccountName")
    if not name:
        raise SetupError("AZURE_STORAGE_CONNECTION_STRING has no AccountName")
    endpoint = parts.get("BlobEndpoint")
    if not endpoint:
        protocol = parts.get("DefaultEndpointsProtocol", "https")
        suffix = parts.get("EndpointSuffix", "core.windows.net")
        endpoint = f"{protocol}://{name}.blob.{suffix}"
    return name, endpoint.rstrip("/"), parts.get("AccountKey")


def _account_from_url(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if host in ("127.0.0.1", "localhost") or host.replace(".", "").isdigit():
        return parts.path.strip("/").split("/")[0]
    return host.split(".")[0]


def from_settings(name: str, settings: Mapping[str, str], environ: Mapping[str, str]) -> Target:
    """Build an ``azure`` target from settings named like the environment variables."""

    def get(key: str) -> str | None:
        value = settings.get(key)
        env_name = settings.get(f"{key}_ENV")
        if env_name:
            value = environ.get(env_name)
        return value or None

    endpoint = get("AZURE_BATCH_ENDPOINT")
    if not endpoint:
        raise SetupError(f"target {name!r}: set AZURE_BATCH_ENDPOINT to the Batch account's URL")
    connection = get("AZURE_STORAGE_CONNECTION_STRING")
    if connection:
        account, blob_endpoint, storage_key = _storage_from_connection_string(connection)
    else:
        blob_endpoint = (get("AZURE_STORAGE_ACCOUNT_URL") or "").rstrip("/")
        if not blob_endpoint:
            raise SetupError(
                f"target {name!r}: set AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL for the storage account"
            )
        account = _account_from_url(blob_endpoint)
        storage_key = get("AZURE_STORAGE_ACCOUNT_KEY")
    batch_key = get("AZURE_BATCH_ACCOUNT_KEY")
    batch_name = get("AZURE_BATCH_ACCOUNT_NAME")
    if batch_key and not batch_name:
        raise SetupError(f"target {name!r}: AZURE_BATCH_ACCOUNT_KEY needs AZURE_BATCH_ACCOUNT_NAME")
    return Target(
        name=name,
        kind="azure",
        batch_endpoint=endpoint.rstrip("/"),
        blob_endpoint=blob_endpoint,
        storage_account_name=account,
        batch_account_name=batch_name,
        batch_account_key=batch_key,
        storage_account_key=storage_key,
    )


def targets_file(environ: Mapping[str, str]) -> Path:
    """Where named targets are read from."""
    configured = environ.get("BATCHFLOW_TARGETS_FILE")
    return Path(configured).expanduser() if configured else Path.home() / ".config" / "batchflow" / "targets.yaml"


def resolve(name: str = "local", environ: Mapping[str, str] | None = None) -> Target:
    """The target called ``name``; the local services are started when it is ``local``."""
    env = os.environ if environ is None else environ
    if name == "local":
        from batchflow.local.services import ensure_running

        return local_target(ensure_running())
    if name == "azure":
        return from_settings(name, {k: v for k, v in env.items() if k.startswith("AZURE_")}, env)
    path = targets_file(env)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UsageError(f"unknown target {name!r}: use local, azure, or define it in {path}") from None
    except yaml.YAMLError as error:
        raise UsageError(f"{path}: cannot read the targets file: {error}") from None
    entries = (document.get("targets") or {}) if isinstance(document, dict) else {}
    if name not in entries or not isinstance(entries[name], dict):
        known = ", ".join(sorted(entries)) or "none"
        raise UsageError(f"unknown target {name!r}; {path} defines: {known}")
    return from_settings(name, {str(k): str(v) for k, v in entries[name].items()}, env)
