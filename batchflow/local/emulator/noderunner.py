"""Run one task (or start task) as local processes in its node folder.

A run has three phases, as on a Batch node: download the resource files,
run the command line, upload the output files. The command line is split
with POSIX ``shlex`` and executed directly, not through a shell, because
that is what Batch does; users who want a shell write ``/bin/sh -c "…"``.
Every process starts in its own session so that its whole tree can be
killed (wall clock, terminate, delete, shutdown) and nothing is left behind.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchflow.local.emulator.config import Config

#: Variables a task inherits from the service's environment; everything else
#: comes from Batch (AZ_BATCH_*) or the task's own settings, as on a fresh node.
_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SHELL", "TERM")
_NODE_SUBDIRS = ("applications", "fsmounts", "shared", "startup", "volatile", "workitems")


def node_root(config: Config, pool_id: str, node_id: str) -> Path:
    """The folder that plays the node's ``AZ_BATCH_NODE_ROOT_DIR``."""
    return Path(node_root_text(config, pool_id, node_id))


def node_root_text(config: Config, pool_id: str, node_id: str) -> str:
    """:func:`node_root` as text: what a run keeps (paths per task are built as strings)."""
    return f"{config.nodes_text}/{pool_id}/{node_id}"


def make_node_dirs(root: Path) -> None:
    for name in _NODE_SUBDIRS:
        (root / name).mkdir(parents=True, exist_ok=True)


def task_relative_dir(job_id: str, task_id: str) -> str:
    """``workitems/<job>/job-1/<task>``, below the node root: where stdout.txt, stderr.txt and wd live."""
    return f"workitems/{job_id}/job-1/{task_id}"


def task_dir(root: Path | str, job_id: str, task_id: str) -> Path:
    return Path(f"{root}/{task_relative_dir(job_id, task_id)}")


@dataclass
class Outcome:
    """How a run ended.

    ``kind`` is ``exited`` (the process ran; ``exit_code`` is set),
    ``preprocessing`` (a resource file failed; no process ran) or
    ``killed`` (someone else ended it; ``Run.kill_reason`` says why).
    ``failure`` is the Batch ``failureInfo`` when the run failed, and
    ``upload_failed`` marks that the failure came from output files.
    """

    kind: str
    exit_code: int | None = None
    failure: dict[str, Any] | None = None
    upload_failed: bool = False


@dataclass
class Run:
    """One execution in progress: what to run, where, and how to stop it."""

    pool_id: str
    node_id: str
    job_id: str | None  # None for a start task
    task_id: str | None
    spec: dict[str, Any]  # the task or start task, wire-shaped
    slots: int
    root: str  # the node's root folder
    env: dict[str, str]
    wall_clock: float | None = None  # seconds
    kill_reason: str | None = None
    process: subprocess.Popen[bytes] | None = None
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @functools.cached_property
    def dir(self) -> str:
        """The run's folder (``stdout.txt``, ``stderr.txt``, ``wd``): the node's ``startup`` for a start task."""
        if self.job_id is None:
            return f"{self.root}/startup"
        return f"{self.root}/{task_relative_dir(self.job_id, self.task_id or '')}"

    def kill(self, reason: str) -> None:
        """Stop the run for ``reason`` (terminate, delete, requeue, shutdown); idempotent."""
        with self.lock:
            if self.kill_reason is None:
                self.kill_reason = reason
            process = self.process
        if process is not None and process.poll() is None:
            kill_tree(process.pid)


def failure_info(
    code: str, message: str, category: str = "usererror", details: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    info: dict[str, Any] = {"category": category, "code": code, "message": message}
    if details:
        info["details"] = details
    return info


@functools.cache
def _inherited_env() -> dict[str, str]:
    # The service's own environment does not change while it runs; read it once, not per task.
    return {name: os.environ[name] for name in _INHERITED if name in os.environ}


def build_env(config: Config, run: Run, is_dedicated: bool, extra: list[dict[str, Any]]) -> dict[str, str]:
    """The task environment: inherited basics, then AZ_BATCH_*, then the user's settings."""
    env = dict(_inherited_env())
    root, folder = run.root, run.dir
    env.update(
        {
            "AZ_BATCH_NODE_ROOT_DIR": root,
            "AZ_BATCH_NODE_SHARED_DIR": f"{root}/shared",
            "AZ_BATCH_NODE_STARTUP_DIR": f"{root}/startup",
            "AZ_BATCH_NODE_MOUNTS_DIR": f"{root}/fsmounts",
            "AZ_BATCH_TASK_DIR": folder,
            "AZ_BATCH_TASK_WORKING_DIR": f"{folder}/wd",
            "AZ_BATCH_POOL_ID": run.pool_id,
            "AZ_BATCH_NODE_ID": run.node_id,
            "AZ_BATCH_ACCOUNT_NAME": config.account_name,
            "AZ_BATCH_ACCOUNT_URL": config.endpoint,
            "AZ_BATCH_NODE_IS_DEDICATED": "true" if is_dedicated else "false",
            "AZ_BATCH_CERTIFICATES_DIR": f"{folder}/certs",
            "AZ_BATCH_TASK_RESERVED_EPHEMERAL_DISK_SPACE_BYTES": "0",
        }
    )
    if run.job_id is not None:
        env["AZ_BATCH_JOB_ID"] = run.job_id
        env["AZ_BATCH_TASK_ID"] = run.task_id or ""
    for setting in extra:
        if setting.get("name"):
            env[str(setting["name"])] = str(setting.get("value") or "")
    return env


# --- command lines -------------------------------------------------------------

# A word is a run of unquoted text, backslash escapes and quoted strings; the parts of one word, one of each.
_WORD = re.compile(r"""(?:[^ \t\r\n'"\\]+|\\.|'[^']*'|"(?:[^"\\]|\\.)*")+""", re.DOTALL)
_PART = re.compile(r'''([^ \t\r\n'"\\]+)|\\(.)|'([^']*)'|"((?:[^"\\]|\\.)*)"''', re.DOTALL)
_QUOTED_ESCAPE = re.compile(r'\\([\\"])')  # within double quotes, a backslash escapes only " and itself
_BLANKS = frozenset(" \t\r\n")


def split_command_line(text: str) -> list[str]:
    """The words of a command line, exactly as ``shlex.split(text)`` makes them (POSIX rules, no comments).

    Written with two regular expressions because ``shlex`` reads one character at a
    time in Python, which cost a tenth of starting a no-op task. Text that does not
    split cleanly (an unclosed quote, a trailing backslash) goes to ``shlex`` itself,
    for its error message.
    """
    words = []
    end = 0
    for match in _WORD.finditer(text):
        if not _BLANKS.issuperset(text[end : match.start()]):
            return shlex.split(text)
        end = match.end()
        word = match.group()
        if "'" in word or '"' in word or "\\" in word:
            word = "".join(
                plain or escaped or single or _QUOTED_ESCAPE.sub(r"\1", double)
                for plain, escaped, single, double in _PART.findall(word)
            )
        words.append(word)
    if not _BLANKS.issuperset(text[end:]):
        return shlex.split(text)
    return words


# --- process trees -------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, found through /proc (survives a child's setsid)."""
    children = _children_map()
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def processes_under(nodes_dir: str) -> list[int]:
    """The live processes started as tasks (or start tasks) on the nodes in ``nodes_dir``, found by the
    ``AZ_BATCH_NODE_ROOT_DIR`` every run is given and its children inherit.

    This is how a service started after a crash finds what its predecessor left
    running, without writing anything down per task; a process that threw its
    environment away is still found as a descendant by :func:`kill_tree`.
    """
    marker = f"AZ_BATCH_NODE_ROOT_DIR={nodes_dir}/".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if any(item.startswith(marker) for item in environ.split(b"\0")):
            found.append(int(entry))
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``, its process group and all its descendants."""
    victims = descendants(pid)
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    for victim in [pid, *victims]:
        try:
            os.kill(victim, signal.SIGKILL)
        except OSError:
            pass


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a finished task's process group (daemons it started)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


# --- resource files ------------------------------------------------------------


def _safe_join(base: Path, relative: str) -> Path:
    target = (base / relative).resolve()
    if target != base.resolve() and base.resolve() not in target.parents:
        raise ValueError(f"{relative!r} leaves the task working directory")
    return target


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _is_loopback(url: str) -> bool:
    return urllib.parse.urlsplit(url).hostname in _LOOPBACK


def _transport(url: str) -> dict[str, Any]:
    """For storage on this machine (Azurite), a transport that ignores proxy variables: a proxy set for
    the internet (``HTTPS_PROXY`` without ``NO_PROXY``) cannot reach 127.0.0.1. Elsewhere, the default."""
    if not _is_loopback(url):
        return {}
    from azure.core.pipeline.transport import RequestsTransport

    return {"transport": RequestsTransport(use_env_settings=False)}


def _open_url(url: str) -> Any:
    """``urllib.request.urlopen(url)``, without a proxy for a URL on this machine (see :func:`_transport`)."""
    if _is_loopback(url):
        return urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=120)
    return urllib.request.urlopen(url, timeout=120)


def _container_client(url: str, config: Config) -> Any:
    from azure.storage.blob import ContainerClient

    return ContainerClient.from_container_url(url, **_transport(url))


def _auto_storage_client(name: str, config: Config) -> Any:
    from azure.storage.blob import ContainerClient

    if not config.blob_endpoint:
        raise LookupError("the local Batch account has no linked storage (start it with --blob-endpoint)")
    return ContainerClient(
        account_url=config.blob_endpoint,
        container_name=name,
        credential={"account_name": config.storage_account_name, "account_key": config.storage_account_key},
        **_transport(config.blob_endpoint),
    )


def _blob_failure(error: Exception, source: str) -> dict[str, Any]:
    status = getattr(error, "status_code", None) or getattr(error, "code", None)
    if status == 404:
        code = "BlobNotFound"
    elif status in (401, 403):
        code = "BlobAccessDenied"
    else:
        code = "BlobDownloadMiscError"
    return failure_info(code, f"Failed to download {source}: {error}", details=[{"name": "FilePath", "value": source}])


def download_resource_files(files: list[dict[str, Any]], wd: Path, config: Config) -> dict[str, Any] | None:
    """Fetch every resource file into ``wd``; return failure info for the first that fails."""
    for item in files:
        file_path = item.get("filePath") or ""
        mode = int(str(item.get("fileMode") or "0770"), 8)
        written: list[Path] = []
        try:
            if item.get("httpUrl"):
                target = _safe_join(wd, file_path)
                target.parent.mkdir(parents=True, exist_ok=True)
                with _open_url(item["httpUrl"]) as response, open(target, "wb") as out:
                    shutil.copyfileobj(response, out)
                written.append(target)
            else:
                if item.get("autoStorageContainerName"):
                    client = _auto_storage_client(item["autoStorageContainerName"], config)
                    source = item["autoStorageContainerName"]
                else:
                    client = _container_client(item["storageContainerUrl"], config)
                    source = item["storageContainerUrl"].split("?")[0]
                base = _safe_join(wd, file_path) if file_path else wd
                for blob in client.list_blobs(name_starts_with=item.get("blobPrefix") or None):
                    target = _safe_join(base, blob.name)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(target, "wb") as out:
                        client.download_blob(blob.name).readinto(out)
                    written.append(target)
            for path in written:
                os.chmod(path, mode)
        except urllib.error.HTTPError as error:
            return _blob_failure(error, item["httpUrl"])
        except Exception as error:  # any download problem ends the task as Batch does
            source = (
                item.get("httpUrl")
                or item.get("storageContainerUrl", "").split("?")[0]
                or item.get("autoStorageContainerName", "")
            )
            return _blob_failure(error, str(source))
    return None


# --- output files --------------------------------------------------------------


def _has_magic(part: str) -> bool:
    return any(char in part for char in "*?[")


def _match_parts(base: Path, parts: list[str]) -> list[Path]:
    """Files under ``base`` matching the pattern ``parts`` (``**`` spans folders; dotfiles need a literal dot)."""
    if not parts:
        return [base] if base.is_file() else []
    head, rest = parts[0], parts[1:]
    if head == "**":
        found = _match_parts(base, rest)
        if base.is_dir():
            for child in sorted(base.iterdir()):
                if child.is_dir() and not child.name.startswith("."):
                    found.extend(_match_parts(child, parts))
        return found
    if not _has_magic(head):
        child = base / head
        return _match_parts(child, rest) if child.exists() else []
    if not base.is_dir():
        return []
    found = []
    for child in sorted(base.iterdir()):
        if child.name.startswith(".") and not head.startswith("."):
            continue
        if fnmatch.fnmatchcase(child.name, head):
            found.extend(_match_parts(child, rest))
    return found


def match_output_files(pattern: str, wd: Path, env: dict[str, str]) -> list[tuple[Path, str]]:
    """Files matching a Batch ``filePattern`` with the name each keeps below the pattern's fixed part."""
    pattern = os.path.expandvars(pattern) if "$" in pattern else pattern
    for name, value in env.items():
        pattern = pattern.replace(f"${name}", value).replace(f"${{{name}}}", value)
    absolute = pattern.startswith("/")
    parts = [part for part in pattern.split("/") if part not in ("", ".")]
    base = Path("/") if absolute else wd
    fixed = 0
    while fixed < len(parts) and not _has_magic(parts[fixed]):
        fixed += 1
    if fixed == len(parts):
        path = Path(os.path.normpath(base.joinpath(*parts)))
        return [(path, path.name)] if path.is_file() else []
    prefix = Path(os.path.normpath(base.joinpath(*parts[:fixed]))) if fixed else base
    return [(path, path.relative_to(prefix).as_posix()) for path in _match_parts(prefix, parts[fixed:])]


def upload_output_files(outputs: list[dict[str, Any]], run: Run, exit_code: int) -> dict[str, Any] | None:
    """Upload the output files whose condition holds; log as Batch does; return failure info or None."""
    if not outputs:
        return None
    wd = Path(run.dir, "wd")
    log_out: list[str] = []
    log_err: list[str] = []
    failure = None
    for output in outputs:
        condition = ((output.get("uploadOptions") or {}).get("uploadCondition") or "taskcompletion").lower()
        if condition == "tasksuccess" and exit_code != 0 or condition == "taskfailure" and exit_code == 0:
            continue
        container = (output.get("destination") or {}).get("container") or {}
        url = container.get("containerUrl", "")
        pattern = output.get("filePattern", "")
        prefix = (container.get("path") or "").strip("/")
        headers = {h["name"]: h.get("value", "") for h in container.get("uploadHeaders") or [] if h.get("name")}
        try:
            from azure.storage.blob import ContainerClient

            client = ContainerClient.from_container_url(url, **_transport(url))
            wildcard = _has_magic(pattern)
            for path, relative in match_output_files(pattern, wd, run.env):
                if wildcard:
                    name = f"{prefix}/{relative}" if prefix else relative
                else:
                    name = prefix or relative
                extra = {"headers": headers} if headers else {}
                with open(path, "rb") as data:
                    client.upload_blob(name, data, overwrite=True, **extra)
                log_out.append(f"uploaded {path} to {url.split('?')[0]}/{name}")
        except Exception as error:  # an upload problem is reported in failureInfo, as Batch does
            status = getattr(error, "status_code", None)
            code = {404: "FileUploadContainerNotFound", 403: "FileUploadAuthenticationFailed"}.get(
                status or 0, "FileUploadMiscError"
            )
            log_err.append(f"failed to upload {pattern} to {url.split('?')[0]}: {error}")
            failure = failure or failure_info(code, f"Failed to upload output files matching {pattern}: {error}")
    Path(run.dir, "fileuploadout.txt").write_text("\n".join(log_out) + ("\n" if log_out else ""))
    Path(run.dir, "fileuploaderr.txt").write_text("\n".join(log_err) + ("\n" if log_err else ""))
    return failure


# --- one run -------------------------------------------------------------------


def execute(run: Run, config: Config) -> Outcome:
    """Download, run and upload for ``run``; never raises for task-level problems."""
    wd = f"{run.dir}/wd"
    try:
        os.mkdir(run.dir)  # the usual case, in two calls instead of makedirs' dozen
        os.mkdir(wd)
    except OSError:  # a first task of its job on this node, or a retry that finds its folders
        os.makedirs(wd, exist_ok=True)
    resource_files = run.spec.get("resourceFiles")
    failure = download_resource_files(resource_files, Path(wd), config) if resource_files else None
    if failure is not None:
        Path(run.dir, "stderr.txt").write_text(failure["message"] + "\n")
        Path(run.dir, "stdout.txt").write_text("")
        return Outcome("preprocessing", failure=failure)
    try:
        argv = split_command_line(run.spec.get("commandLine") or "")
    except ValueError as error:
        Path(run.dir, "stderr.txt").write_text(f"cannot split the command line: {error}\n")
        return Outcome(
            "exited",
            exit_code=2,
            failure=failure_info(
                "FailureExitCode",
                "The task process exited with an unexpected exit code",
                details=[{"name": "Message", "value": str(error)}],
            ),
        )
    with open(f"{run.dir}/stdout.txt", "wb") as stdout, open(f"{run.dir}/stderr.txt", "wb") as stderr:
        with run.lock:
            if run.kill_reason is not None:
                return Outcome("killed")
            try:
                run.process = subprocess.Popen(
                    argv,
                    cwd=wd,
                    env=run.env,
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as error:
                stderr.write(f"{argv[0] if argv else '(empty command line)'}: {error.strerror or error}\n".encode())
                run.process = None
        if run.process is None:
            exit_code = 127
        else:
            try:
                exit_code = run.process.wait(timeout=run.wall_clock)
            except subprocess.TimeoutExpired:
                with run.lock:
                    if run.kill_reason is None:
                        run.kill_reason = "walltime"
                kill_tree(run.process.pid)
                exit_code = run.process.wait()
            # Kill anything the task left running in its session: a task ends with its tree.
            kill_group(run.process.pid)
    if exit_code < 0:
        exit_code = 128 - exit_code
    if run.kill_reason == "walltime":
        return Outcome(
            "exited",
            exit_code=exit_code,
            failure=failure_info(
                "MaxWallClockTimeExceeded", "The task ran longer than its maximum wall clock time and was ended."
            ),
        )
    if run.kill_reason is not None:
        return Outcome("killed", exit_code=exit_code)
    failure = None
    if exit_code != 0:
        failure = failure_info(
            "FailureExitCode",
            "The task process exited with an unexpected exit code",
            details=[
                {"name": "Message", "value": f"The task process exited with an unexpected exit code: {exit_code}"}
            ],
        )
    upload_failure = upload_output_files(run.spec.get("outputFiles") or [], run, exit_code)
    if upload_failure is not None:
        return Outcome("exited", exit_code=exit_code, failure=upload_failure, upload_failed=True)
    return Outcome("exited", exit_code=exit_code, failure=failure)
