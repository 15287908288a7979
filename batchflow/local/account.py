"""The well-known local accounts, default ports and endpoint strings.

Like Azurite's ``devstoreaccount1``, the local Batch account has a fixed,
published name and key: it protects nothing (the services listen on
127.0.0.1 only) and exists so that the official SDKs, which insist on
signing every request, can be pointed at this machine unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The local Batch account's name and key. Public on purpose; see module docstring.
BATCH_ACCOUNT_NAME = "batchflowlocal"
BATCH_ACCOUNT_KEY = "yERa0LC2thSVTBKouXxkQhSN0R5nfKBpGBKb8y8yCLeZdD+lnzSyEKD9zKfafScqedc3dqcGx8Vrz45XmO/9sg=="

#: Azurite's development account, published by Microsoft in Azurite's README.
STORAGE_ACCOUNT_NAME = "devstoreaccount1"
STORAGE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

#: Default ports, chosen away from Azurite's own 10000-10002 so that a user's
#: separately running Azurite does not collide with batchflow's.
DEFAULT_BATCH_PORT = 10090
DEFAULT_BLOB_PORT = 10010

HOST = "127.0.0.1"


def batchflow_home() -> Path:
    """Return ``BATCHFLOW_HOME`` or ``~/.batchflow``: where local state and Azurite live."""
    value = os.environ.get("BATCHFLOW_HOME")
    return Path(value).expanduser() if value else Path.home() / ".batchflow"


def configured_port(name: str, default: int) -> int:
    """Return the port from environment variable ``name`` or ``default``."""
    value = os.environ.get(name)
    return int(value) if value else default


def batch_endpoint(port: int) -> str:
    """The URL the Batch SDK's ``endpoint`` takes for the local service on ``port``."""
    return f"http://{HOST}:{port}"


def blob_endpoint(port: int) -> str:
    """Azurite's path-style blob endpoint for the development account on ``port``."""
    return f"http://{HOST}:{port}/{STORAGE_ACCOUNT_NAME}"


def storage_connection_string(port: int) -> str:
    """A connection string the Storage SDKs accept, naming only the blob endpoint."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={STORAGE_ACCOUNT_NAME};"
        f"AccountKey={STORAGE_ACCOUNT_KEY};BlobEndpoint={blob_endpoint(port)};"
    )
