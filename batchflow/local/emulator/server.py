"""HTTP server lifecycle and the request pipeline, written in one function.

The pipeline order is: request id → route → authenticate → fault
injection → parse body → handler (under the service lock) → serialize;
any :class:`BatchError` on the way becomes a Batch error body. The server
listens on 127.0.0.1 only and uses HTTP/1.1 keep-alive, since the SDKs
reuse connections.
"""

from __future__ import annotations

import enum
import json
import os
import socket
import sys
import threading
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from batchflow.local.emulator import auth, errors, routes, wire
from batchflow.local.emulator.messages import Request, Response
from batchflow.local.emulator.scheduler import Service

MAX_BODY = 1024 * 1024  # the service's limit for a request body (1 MB)
JSON_TYPE = "application/json; odata=minimalmetadata"


class Status(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


def _encode_error(error: errors.BatchError, base_url: str, request_id: str) -> bytes:
    body: dict[str, Any] = {
        "odata.metadata": f"{base_url}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
        "code": error.code,
        "message": {"lang": "en-US", "value": f"{error.message}\nRequestId:{request_id}\nTime:{wire.timestamp()}"},
    }
    if error.values:
        body["values"] = [{"key": key, "value": value} for key, value in error.values]
    return json.dumps(body).encode()


def handle(
    service: Service, method: str, target: str, headers: dict[str, str], read_body: Any
) -> tuple[int, dict[str, str], bytes]:
    """Run one request through the pipeline; return status, headers and body bytes."""
    request_id = str(uuid.uuid4())
    base_url = service.config.endpoint
    out_headers = {"request-id": request_id, "DataServiceVersion": "3.0"}
    lowered = {name.lower(): value for name, value in headers.items()}
    if lowered.get("return-client-request-id", "").lower() == "true" and "client-request-id" in lowered:
        out_headers["client-request-id"] = lowered["client-request-id"]
    split = urlsplit(target)
    raw_path, raw_query = split.path, split.query
    try:
        found = routes.match(method, raw_path)
        auth.check(method, raw_path, raw_query, headers, service.config.account_name, service.config.account_key)
        if found is None:
            raise errors.unsupported_operation(method, raw_path)
        handler, params = found
        status = service.faults.transient_status()
        if status is not None:
            raise errors.transient(status)
        query = {name: values[0] for name, values in parse_qs(raw_query, keep_blank_values=True).items()}
        if "api-version" not in query:
            raise errors.missing_query("api-version")
        length = int(lowered.get("content-length") or 0)
        raw_body = read_body(length) if length else b""
        if length > MAX_BODY:
            raise errors.body_too_large()
        parsed = None
        if raw_body.strip():
            try:
                parsed = json.loads(raw_body)
            except ValueError as error:
                raise errors.invalid_body(str(error)) from error
        request = Request(method, raw_path, params, query, headers, parsed, base_url)
        with service.lock:
            response: Response = handler(request, service)
    except errors.BatchError as error:
        out_headers.update(error.headers)
        if method == "HEAD":
            return error.status, out_headers, b""
        out_headers["Content-Type"] = JSON_TYPE
        return error.status, out_headers, _encode_error(error, base_url, request_id)
    except Exception as error:  # a bug in the service: answer 500 like the real one, and say what it was
        traceback.print_exc()
        out_headers["Content-Type"] = JSON_TYPE
        return (
            500,
            out_headers,
            _encode_error(errors.internal(f"{type(error).__name__}: {error}"), base_url, request_id),
        )
    out_headers.update(response.headers)
    if response.json is not None:
        payload = {"odata.metadata": f"{base_url}/$metadata#{response.metadata or ''}", **response.json}
        out_headers["Content-Type"] = JSON_TYPE
        return response.status, out_headers, json.dumps(payload).encode()
    return response.status, out_headers, response.raw or b""


#: With BATCHFLOW_WIRE_RECORD=FILE, every JSON response is appended to FILE, one JSON
#: line each, with the handler that answered; tests check them against the SDK's models
#: (tests/local/wire_models.py), so that no field or enum value Azure does not send creeps in.
_RECORD_TO = os.environ.get("BATCHFLOW_WIRE_RECORD")
_record_lock = threading.Lock()


def _record(method: str, target: str, status: int, body: bytes) -> None:
    found = routes.match(method, urlsplit(target).path)
    line = {
        "method": method,
        "handler": found[0].__name__ if found else None,
        "status": status,
        "body": json.loads(body),
    }
    with _record_lock, open(_RECORD_TO, "a", encoding="utf-8") as out:  # type: ignore[arg-type]
        out.write(json.dumps(line) + "\n")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "batchflow-local-batch"
    # Without TCP_NODELAY, a small response written after its headers waits for the
    # client's delayed ACK (about 40 ms per request with keep-alive).
    disable_nagle_algorithm = True
    service: Service
    verbose = False

    def _dispatch(self) -> None:
        consumed = {"done": False}

        def read_body(length: int) -> bytes:
            consumed["done"] = True
            return self.rfile.read(length)

        status, headers, body = handle(self.service, self.command, self.path, dict(self.headers.items()), read_body)
        if _RECORD_TO and headers.get("Content-Type") == JSON_TYPE:
            _record(self.command, self.path, status, body)
        if not consumed["done"]:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        if self.verbose:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (and the shutdown wake-up connection) are normal, not errors."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class EmulatorServer:
    """The HTTP side of the local Batch service, with a guarded lifecycle.

    Binding comes first and separately, because the service's own endpoint
    (which tasks see as ``AZ_BATCH_ACCOUNT_URL``) needs the real port when
    port 0 was asked for::

        server = EmulatorServer(port=0)
        server.bind()
        service = Service(config_for(server.port))
        server.start(service)
    """

    def __init__(self, port: int, verbose: bool = False) -> None:
        self.requested_port = port
        self.verbose = verbose
        self.status = Status.STOPPED
        self.service: Service | None = None
        self._server: _Server | None = None
        self._handler: type[_Handler] | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def bind(self) -> None:
        """Open the listening socket on 127.0.0.1 (raises OSError if the port is taken)."""
        if self.status is not Status.STOPPED or self._server is not None:
            raise RuntimeError(f"cannot bind a server that is {self.status.value}")
        self._handler = type("Handler", (_Handler,), {"verbose": self.verbose})
        self._server = _Server(("127.0.0.1", self.requested_port), self._handler)

    def start(self, service: Service) -> None:
        """Start the service's scheduler and serve requests on a background thread."""
        if self.status is not Status.STOPPED:
            raise RuntimeError(f"cannot start a server that is {self.status.value}")
        if self._server is None:
            self.bind()
        assert self._server is not None and self._handler is not None
        self.status = Status.STARTING
        self.service = service
        self._handler.service = service
        service.start()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 3600}, daemon=True)
        self._thread.start()
        self.status = Status.RUNNING

    def stop(self) -> None:
        """Stop serving, then stop the service (which kills every task process tree)."""
        if self.status is not Status.RUNNING:
            return
        self.status = Status.STOPPING
        assert self._server is not None
        # serve_forever sleeps in select() for up to an hour (no idle wake-ups),
        # so a throwaway connection wakes it to notice the shutdown request.
        stopper = threading.Thread(target=self._server.shutdown, daemon=True)
        stopper.start()
        while stopper.is_alive():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                pass
            stopper.join(0.1)
        self._server.server_close()
        assert self.service is not None
        self.service.stop()
        self.status = Status.STOPPED


def port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
