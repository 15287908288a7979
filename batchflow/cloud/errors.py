"""Turn Azure SDK exceptions into batchflow errors with messages a user can act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ServiceRequestError

from batchflow.errors import RunFailed
from batchflow.state.redact import redact_secrets


def error_code(error: BaseException) -> str | None:
    """The service's error code (``PoolExists``, ``ContainerNotFound``) of an SDK exception, if any."""
    code = getattr(getattr(error, "error", None), "code", None)
    return code or getattr(error, "error_code", None)


def describe(error: BaseException) -> str:
    """One line about ``error``, without any URL query string (SAS tokens live there)."""
    if isinstance(error, ServiceRequestError):
        return f"cannot reach the service: {redact_secrets(str(error).splitlines()[0])}"
    if isinstance(error, ClientAuthenticationError):
        return "the service refused the credentials (check the account name and key, or sign in)"
    if isinstance(error, HttpResponseError):
        status = error.status_code
        code = error_code(error) or error.reason or "error"
        message = getattr(getattr(error, "error", None), "message", None) or str(error).splitlines()[0]
        if status == 403 and code == "AuthenticationFailed":
            return "the service refused the credentials (AuthenticationFailed): check the account name and key"
        return redact_secrets(f"HTTP {status} {code}: {str(message).splitlines()[0]}")
    return redact_secrets(str(error).splitlines()[0] if str(error) else type(error).__name__)


@contextmanager
def service_errors(doing: str) -> Iterator[None]:
    """Re-raise any SDK error inside the block as :class:`RunFailed` saying what was being done."""
    try:
        yield
    except AzureError as error:
        raise RunFailed(f"{doing}: {describe(error)}") from error
