"""One constructor per Batch error the service returns, in the service's JSON shape.

Handlers raise :class:`BatchError`; the pipeline in ``server.py`` turns it
into the status code and body the real service would send, so the SDKs map
it to the same exception classes (404 → ResourceNotFoundError, 409 →
ResourceExistsError, …) with ``error.code`` set.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BatchError(Exception):
    """An error answer: HTTP ``status``, Batch ``code``, human ``message``, key/value details."""

    status: int
    code: str
    message: str
    values: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def pool_exists() -> BatchError:
    return BatchError(409, "PoolExists", "The specified pool already exists.")


def job_exists() -> BatchError:
    return BatchError(409, "JobExists", "The specified job already exists.")


def task_exists() -> BatchError:
    return BatchError(409, "TaskExists", "The specified task already exists.")


def pool_not_found() -> BatchError:
    return BatchError(404, "PoolNotFound", "The specified pool does not exist.")


def job_not_found() -> BatchError:
    return BatchError(404, "JobNotFound", "The specified job does not exist.")


def task_not_found() -> BatchError:
    return BatchError(404, "TaskNotFound", "The specified task does not exist.")


def node_not_found() -> BatchError:
    return BatchError(404, "NodeNotFound", "The specified node does not exist.")


def file_not_found() -> BatchError:
    return BatchError(404, "FileNotFound", "The specified file does not exist.")


def pool_being_deleted() -> BatchError:
    return BatchError(
        409, "PoolBeingDeleted", "The specified pool has been marked for deletion and is being reclaimed."
    )


def job_being_deleted() -> BatchError:
    return BatchError(
        409, "JobBeingDeleted", "The specified job has been marked for deletion and is being garbage collected."
    )


def job_being_terminated() -> BatchError:
    return BatchError(409, "JobBeingTerminated", "The specified job is in the process of being terminated.")


def job_completed() -> BatchError:
    return BatchError(409, "JobCompleted", "The specified job is already in a completed state.")


def task_completed() -> BatchError:
    return BatchError(409, "TaskCompleted", "The specified task is already completed.")


def task_files_unavailable() -> BatchError:
    return BatchError(409, "TaskFilesUnavailable", "The task has not run on a node yet, so it has no files.")


def task_files_cleaned_up() -> BatchError:
    return BatchError(409, "TaskFilesCleanedup", "The task's files were removed after its retention time.")


def operation_invalid(message: str) -> BatchError:
    return BatchError(409, "OperationInvalidForCurrentState", message)


def missing_property(name: str) -> BatchError:
    return BatchError(
        400,
        "MissingRequiredProperty",
        "A required property was not specified in the request body.",
        [("PropertyName", name)],
    )


def invalid_property(name: str, value: object, reason: str = "") -> BatchError:
    values = [("PropertyName", name), ("PropertyValue", str(value))]
    if reason:
        values.append(("Reason", reason))
    return BatchError(
        400,
        "InvalidPropertyValue",
        "The value provided for one of the properties in the request body is invalid.",
        values,
    )


def invalid_body(reason: str) -> BatchError:
    return BatchError(
        400, "InvalidRequestBody", "The specified Request Body is not syntactically valid.", [("Reason", reason)]
    )


def invalid_query(name: str, value: str, reason: str = "") -> BatchError:
    values = [("QueryParameterName", name), ("QueryParameterValue", value)]
    if reason:
        values.append(("Reason", reason))
    return BatchError(
        400,
        "InvalidQueryParameterValue",
        "Value for one of the query parameters specified in the request URI is invalid.",
        values,
    )


def missing_query(name: str) -> BatchError:
    return BatchError(
        400,
        "MissingRequiredQueryParameter",
        "A query parameter that's mandatory for this request is not specified.",
        [("QueryParameterName", name)],
    )


def too_many_tasks(count: int) -> BatchError:
    return BatchError(
        400,
        "InvalidPropertyValue",
        "A task collection may hold at most 100 tasks.",
        [("PropertyName", "value"), ("PropertyValue", str(count))],
    )


def body_too_large() -> BatchError:
    return BatchError(
        413, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum permissible limit."
    )


def dependencies_not_on_job() -> BatchError:
    return BatchError(
        400,
        "TaskDependenciesNotSpecifiedOnJob",
        "The job does not allow task dependencies (usesTaskDependencies is false).",
    )


def authentication_failed(reason: str) -> BatchError:
    return BatchError(
        403,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header is correctly formed including the signature.",
        [("AuthenticationErrorDetail", reason)],
    )


def unsupported_operation(method: str, path: str) -> BatchError:
    return BatchError(
        400,
        "UnsupportedOperation",
        f"The local Batch service does not implement {method} {path}.",
    )


def invalid_range(value: str) -> BatchError:
    return BatchError(
        416, "InvalidRange", "The range specified is invalid for the current size of the resource.", [("Range", value)]
    )


def transient(status: int) -> BatchError:
    """An injected fault: the codes the real service uses for the same statuses."""
    code = {500: "InternalError", 503: "ServerBusy", 429: "TooManyRequests"}[status]
    return BatchError(status, code, "Injected transient fault (local fault simulation).", headers={"Retry-After": "0"})


def internal(message: str) -> BatchError:
    return BatchError(500, "InternalError", message)
