"""Start, stop and report the two local services (Azurite and the Batch service) as background processes.

Each service runs in its own session (so ``batchflow`` can exit and a
Ctrl-C in the terminal does not reach it), logs to ``BATCHFLOW_HOME/logs``
and is recorded in ``BATCHFLOW_HOME/run/<name>.json`` with its pid, port
and kernel start time; the start time tells a live service from a
recycled pid. ``ensure_running`` is idempotent and returns only once both
services answer HTTP on their ports.

A ``batchflow`` killed at any moment leaves nothing the next command cannot
repair: starts and stops hold a file lock (the kernel releases it however
its holder dies); a record is written atomically right after its process
starts, so a service still starting is adopted, or stopped if it never
answers; and every service carries ``BATCHFLOW_LOCAL_SERVICE`` in its
environment, so one whose record was never written (a start killed in
between) or already removed (a stop killed midway) is found and stopped
rather than left holding its port.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from batchflow.errors import SetupError
from batchflow.local import account, azurite

BATCH = "batch"
AZURITE = "azurite"
#: Set to ``<name>:<home>`` in each service's environment (and so in its own child
#: processes; the Batch service's tasks get an environment of their own).
SERVICE_ENV = "BATCHFLOW_LOCAL_SERVICE"
#: How long Azurite may take to close after SIGINT before it is killed; it
#: normally says it has closed within a tenth of a second.
AZURITE_GRACE = 5.0


@dataclass(frozen=True)
class LocalEndpoints:
    """Where the local services listen and the well-known credentials they accept.

    >>> endpoints = ensure_running()                       # doctest: +SKIP
    >>> BatchClient(endpoints.batch_endpoint,              # doctest: +SKIP
    ...     AzureNamedKeyCredential(endpoints.batch_account_name, endpoints.batch_account_key))
    """

    batch_endpoint: str
    batch_account_name: str
    batch_account_key: str
    blob_endpoint: str
    storage_account_name: str
    storage_account_key: str
    storage_connection_string: str

    @classmethod
    def for_ports(cls, batch_port: int, blob_port: int) -> LocalEndpoints:
        return cls(
            batch_endpoint=account.batch_endpoint(batch_port),
            batch_account_name=account.BATCH_ACCOUNT_NAME,
            batch_account_key=account.BATCH_ACCOUNT_KEY,
            blob_endpoint=account.blob_endpoint(blob_port),
            storage_account_name=account.STORAGE_ACCOUNT_NAME,
            storage_account_key=account.STORAGE_ACCOUNT_KEY,
            storage_connection_string=account.storage_connection_string(blob_port),
        )

    def environment(self) -> dict[str, str]:
        """The variables ``batchflow local env`` exports for programs using the Azure SDKs."""
        return {
            "AZURE_BATCH_ENDPOINT": self.batch_endpoint,
            "AZURE_BATCH_ACCOUNT_NAME": self.batch_account_name,
            "AZURE_BATCH_ACCOUNT_KEY": self.batch_account_key,
            "AZURE_STORAGE_CONNECTION_STRING": self.storage_connection_string,
        }


@dataclass(frozen=True)
class ServiceState:
    """One service as found on this machine: running or not, its pid, port and log."""

    name: str
    running: bool
    pid: int | None
    port: int | None
    log: str


@dataclass(frozen=True)
class LocalStatus:
    home: str
    batch: ServiceState
    azurite: ServiceState
    endpoints: LocalEndpoints | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _home(home: Path | None) -> Path:
    return (home or account.batchflow_home()).expanduser().resolve()


def _record_path(home: Path, name: str) -> Path:
    return home / "run" / f"{name}.json"


def _log_path(home: Path, name: str) -> Path:
    return home / "logs" / f"{name}.log"


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]


def _process_group(pid: int) -> int | None:
    """The process group of a live (not zombie) process, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[2])


def _read_record(home: Path, name: str) -> dict[str, int | str] | None:
    """The record of a service that is still alive, or None (stale records are removed)."""
    path = _record_path(home, name)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if _start_time(int(record["pid"])) != record.get("started"):
        path.unlink(missing_ok=True)
        return None
    return record


def _answers_http(port: int, timeout: float = 1.0) -> bool:
    """Whether something on 127.0.0.1:``port`` answers an HTTP request (any status)."""
    try:
        with socket.create_connection((account.HOST, port), timeout=timeout) as connection:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return connection.recv(5).startswith(b"HTTP/")
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as the servers use it: connections in TIME_WAIT do not make a port busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((account.HOST, port))
        except OSError:
            return False
    return True


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Serialise ``up``/``down`` of the same home across processes."""
    path = home / "run" / "services.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # The other one may be installing Azurite first, which takes half a minute.
            print(
                "batchflow: waiting for another batchflow process that is starting or stopping the local services",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _launch(home: Path, name: str, argv: list[str], port: int, timeout: float) -> None:
    log = _log_path(home, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env={**os.environ, SERVICE_ENV: f"{name}:{home}"},
            )
        except OSError as error:
            raise SetupError(f"could not start {name}: {error}") from error
    # Recorded before it answers: if this process is killed while the service starts,
    # the next command finds the service by its record and waits for it to answer.
    # Killed before this line, it leaves a process without a record: see _stop_unrecorded.
    _write_record(home, name, process.pid, port)
    deadline = time.monotonic() + timeout
    while not _answers_http(port, timeout=0.5):
        if process.poll() is not None:
            _record_path(home, name).unlink(missing_ok=True)
            tail = "\n  ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
            raise SetupError(
                f"{name} exited at start (status {process.returncode}); its log {log} ends with:\n  {tail}"
            )
        if time.monotonic() > deadline:
            _stop_service(home, name, process.pid)
            raise SetupError(f"{name} did not answer on 127.0.0.1:{port} within {timeout:.0f}s; see {log}")
        time.sleep(0.05)


def _write_record(home: Path, name: str, pid: int, port: int) -> None:
    """Write a service's record atomically, so a kill never leaves half a record."""
    record = {"pid": pid, "port": port, "started": _start_time(pid)}
    path = _record_path(home, name)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record))
    os.replace(temporary, path)


def _alive_record(home: Path, name: str, timeout: float) -> dict[str, int | str] | None:
    """The record of a running service that answers; one that a killed start left still
    starting is given ``timeout`` to answer, and is stopped when it does not."""
    record = _read_record(home, name)
    if record is None:
        return None
    deadline = time.monotonic() + timeout
    while not _answers_http(int(record["port"]), timeout=0.5):
        if _read_record(home, name) is None:
            return None
        if time.monotonic() > deadline:
            _stop_service(home, name, int(record["pid"]))
            return None
        time.sleep(0.05)
    return record


def _unrecorded_groups(home: Path, name: str, record: dict[str, int | str] | None) -> list[int]:
    """Process groups of service ``name`` of ``home`` other than the recorded one's.

    They come from a start killed before it wrote the record, or a stop killed
    after it removed the record; left alone, they would keep the port or the data.
    """
    tag = f"{SERVICE_ENV}={name}:{home}".encode()
    ours = {os.getpgrp(), int(record["pid"]) if record else None}
    groups = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if tag not in handle.read().split(b"\0"):
                    continue
        except OSError:
            continue
        group = _process_group(int(entry))
        if group is not None and group not in ours:
            groups.add(group)
    return sorted(groups)


def _stop_unrecorded(home: Path, name: str, record: dict[str, int | str] | None) -> bool:
    """Stop the processes of service ``name`` that its record does not name; whether there were any."""
    groups = _unrecorded_groups(home, name, record)
    for group in groups:
        _stop_process(home, name, group)
    return bool(groups)


def _choose_port(requested: int | None, variable: str, default: int, option: str) -> int:
    port = requested if requested is not None else account.configured_port(variable, default)
    if port and not _port_free(port):
        raise SetupError(
            f"port {port} on 127.0.0.1 is already in use by another program; "
            f"choose another with {option} or the {variable} environment variable"
        )
    if port == 0:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((account.HOST, 0))
            port = int(probe.getsockname()[1])
    return port


def ensure_running(
    home: Path | None = None,
    *,
    batch_port: int | None = None,
    blob_port: int | None = None,
    azurite_executable: Path | None = None,
    max_nodes: int | None = None,
) -> LocalEndpoints:
    """Start whichever local service is not running and return the endpoints of both.

    Idempotent: services already running under ``home`` are kept, on the
    ports they already use. Ports default to ``BATCHFLOW_BLOB_PORT`` /
    ``BATCHFLOW_BATCH_PORT`` or 10010 / 10090; 0 picks a free port.
    Raises SetupError for a busy port, missing Node.js or a failed start.
    """
    home = _home(home)
    with _locked(home):
        blob = _alive_record(home, AZURITE, timeout=60)
        batch = _alive_record(home, BATCH, timeout=30)
        _stop_unrecorded(home, BATCH, batch)
        _stop_unrecorded(home, AZURITE, blob)
        # Check both ports before starting anything, so a busy port leaves nothing half-started.
        new_blob_port = (
            None if blob else _choose_port(blob_port, "BATCHFLOW_BLOB_PORT", account.DEFAULT_BLOB_PORT, "--blob-port")
        )
        new_batch_port = (
            None
            if batch
            else _choose_port(batch_port, "BATCHFLOW_BATCH_PORT", account.DEFAULT_BATCH_PORT, "--batch-port")
        )
        if new_blob_port is not None and new_blob_port == new_batch_port:
            raise SetupError(f"the Batch service and Azurite cannot share port {new_blob_port}")
        if blob is None:
            assert new_blob_port is not None
            executable = azurite_executable or azurite.ensure_executable(home)
            _launch(home, AZURITE, azurite.command(executable, home, new_blob_port), new_blob_port, timeout=60)
            blob = _read_record(home, AZURITE)
            assert blob is not None
        blob_port_used = int(blob["port"])
        if batch is None:
            assert new_batch_port is not None
            argv = [
                sys.executable,
                "-m",
                "batchflow.local.emulator",
                "--home",
                str(home),
                "--port",
                str(new_batch_port),
                "--blob-endpoint",
                account.blob_endpoint(blob_port_used),
            ]
            if max_nodes:
                argv += ["--max-nodes", str(max_nodes)]
            _launch(home, BATCH, argv, new_batch_port, timeout=30)
            batch = _read_record(home, BATCH)
            assert batch is not None
        return LocalEndpoints.for_ports(int(batch["port"]), blob_port_used)


def _group_alive(group: int) -> bool:
    """Whether a process of process group ``group`` still runs (zombies do not count)."""
    try:
        os.waitpid(group, os.WNOHANG)  # reap it if it is our own child
    except ChildProcessError:
        pass
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _start_time(group) is not None:
        return True
    # The leader is gone (a wrapper such as npx that exited first); its children may not be.
    return any(entry.isdigit() and _process_group(int(entry)) == group for entry in os.listdir("/proc"))


def _terminate(pid: int, stop_signal: int = signal.SIGTERM, grace: float = 10.0, closed: Any = None) -> None:
    """Send ``stop_signal`` to the process group ``pid`` leads, then SIGKILL the group once it has
    not ended after ``grace`` seconds, or as soon as ``closed()`` says it has shut down cleanly.

    The whole group: a service started through a wrapper (a shell script,
    npx) ends with its children, even when the wrapper exits first.
    """

    def alive() -> bool:
        return _group_alive(pid) or _start_time(pid) is not None

    for sig, wait in ((stop_signal, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except OSError:
            try:
                os.kill(pid, sig)
            except OSError:
                return
        deadline = time.monotonic() + wait
        while alive():
            if sig != signal.SIGKILL and closed is not None and closed():
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        else:
            return


def _stop_azurite(pid: int, log: Path) -> None:
    """Stop Azurite the way it stops cleanly, and quickly.

    Azurite handles one SIGINT or SIGTERM: it closes its server and its
    metadata database and writes "successfully closed" to its log, within a
    few hundredths of a second. Then the Node.js process lingers: about 10 s
    after SIGTERM (all of the 10.6 s a ``local down`` used to take), from 7 s
    to more than 40 s after SIGINT. Once that line is written there is nothing
    left to save, so the process group is killed then; without the line (an
    Azurite that words it differently), after ``AZURITE_GRACE`` seconds.
    """
    try:
        offset = log.stat().st_size
    except OSError:
        offset = 0

    def closed() -> bool:
        try:
            with log.open("rb") as handle:
                handle.seek(offset)
                return b"successfully closed" in handle.read()
        except OSError:
            return False

    _terminate(pid, signal.SIGINT, grace=AZURITE_GRACE, closed=closed)


def _stop_process(home: Path, name: str, pid: int) -> None:
    if name == AZURITE:
        _stop_azurite(pid, _log_path(home, name))
    else:
        _terminate(pid)


def _stop_service(home: Path, name: str, pid: int) -> None:
    # The record goes first: a stop killed midway then leaves a process without a record,
    # which the next command finds by its environment and stops (a record of a process that
    # has closed its port but not exited would make the next start wait for it to answer).
    _record_path(home, name).unlink(missing_ok=True)
    _stop_process(home, name, pid)


def stop(home: Path | None = None) -> list[str]:
    """Stop both services (the Batch service first, so it ends its tasks); return what was stopped."""
    home = _home(home)
    stopped = []
    with _locked(home):
        for name in (BATCH, AZURITE):
            record = _read_record(home, name)
            if record is not None:
                _stop_service(home, name, int(record["pid"]))
            if _stop_unrecorded(home, name, None) or record is not None:
                stopped.append(name)
    return stopped


def status(home: Path | None = None) -> LocalStatus:
    """What runs under ``home``, with the endpoints when both services are up."""
    home = _home(home)
    states = {}
    for name in (BATCH, AZURITE):
        record = _read_record(home, name)
        running = record is not None and _answers_http(int(record["port"]))
        states[name] = ServiceState(
            name=name,
            running=running,
            pid=int(record["pid"]) if record else None,
            port=int(record["port"]) if record else None,
            log=str(_log_path(home, name)),
        )
    endpoints = None
    if states[BATCH].running and states[AZURITE].running:
        endpoints = LocalEndpoints.for_ports(int(states[BATCH].port or 0), int(states[AZURITE].port or 0))
    return LocalStatus(home=str(home), batch=states[BATCH], azurite=states[AZURITE], endpoints=endpoints)
