"""The request and response values passed between the pipeline (server.py) and the handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    """One parsed, authenticated request.

    ``params`` are the decoded path parameters (``filePath`` keeps its
    slashes); ``query`` holds the first value of each query parameter;
    ``body`` is the parsed JSON body or ``None``; ``base_url`` is the
    service endpoint, used to build absolute URLs such as ``odata.nextLink``.
    """

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    base_url: str

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == name), None)

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() == "true"


@dataclass
class Response:
    """What a handler answers: a status, a JSON body or raw bytes, and extra headers."""

    status: int
    json: dict[str, Any] | None = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    metadata: str | None = None
