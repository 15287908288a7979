"""The typed workflow: frozen dataclasses built from a validated, rendered workflow file.

These are what the plan, the steps and the cloud adapters consume. Every
template is already rendered, every glob expanded to files with sizes, every
duration parsed, every default applied: nothing downstream reads YAML or
guesses a default. Container references stay symbolic (a container name plus
an access level); SAS URLs are made at apply time and never live here.

:meth:`Workflow.to_dict` gives the canonical, secret-free form used for
``--output json`` and for the run's fingerprint.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from batchflow.durations import format_duration

Policy = Literal["delete", "keep", "ask"]
Access = Literal["read", "write"]
UploadCondition = Literal["success", "failure", "completion"]

#: Prepended to every task and start-task script: stop at the first failing command.
SHELL_PRELUDE = "set -e -o pipefail"


def shell_command_line(script: str) -> str:
    """The Batch command line that runs ``script`` with bash.

    Batch does not run command lines under a shell, so batchflow wraps the
    script in ``/bin/bash -c '<script>'`` with one level of quoting; values the
    template put through ``quote`` therefore reach the script as one word.
    """
    return "/bin/bash -c " + shlex.quote(f"{SHELL_PRELUDE}; {script.strip()}")


@dataclass(frozen=True)
class Container:
    """A blob container the run uses."""

    name: str
    purpose: str = ""


@dataclass(frozen=True)
class UploadFile:
    """One local file and the blob it becomes (step 2)."""

    local_path: Path
    container: str
    blob_name: str
    size: int

    @property
    def name(self) -> str:
        """The file's name, ``taskdata1.txt``."""
        return self.local_path.name

    @property
    def stem(self) -> str:
        """The file's name without its last suffix, ``taskdata1``."""
        return self.local_path.stem

    @property
    def suffix(self) -> str:
        """The file's last suffix, ``.txt``."""
        return self.local_path.suffix

    def template_view(self) -> dict[str, Any]:
        """What a task template sees as ``{{ file }}``."""
        return {
            "name": self.name,
            "stem": self.stem,
            "suffix": self.suffix,
            "blob": self.blob_name,
            "container": self.container,
            "size": self.size,
            "path": str(self.local_path),
        }


@dataclass(frozen=True)
class ResourceFile:
    """A file a node downloads before a command runs: one blob, a blob prefix, or a URL."""

    container: str | None = None
    blob: str | None = None
    prefix: str | None = None
    url: str | None = None
    path: str | None = None
    mode: str | None = None


@dataclass(frozen=True)
class OutputFile:
    """Files a node uploads to a container after a task ends."""

    pattern: str
    container: str
    path: str | None = None
    upload_on: UploadCondition = "success"


@dataclass(frozen=True)
class DeclaredOutput:
    """A blob a task must produce: an exact name, or a pattern where ``*`` and ``?`` stay within
    one folder and ``**`` spans folders."""

    container: str
    name: str

    @property
    def is_pattern(self) -> bool:
        return any(c in self.name for c in "*?")

    def matches(self, blob: str) -> bool:
        if not self.is_pattern:
            return blob == self.name
        return glob_regex(self.name).fullmatch(blob) is not None


@functools.lru_cache(maxsize=1024)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A blob-name pattern as a regular expression: ``**/`` any folders, ``**`` anything, ``*`` and ``?`` in one part."""
    parts = re.split(r"(\*\*/|\*\*|\*|\?)", pattern)
    wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(part, re.escape(part)) for part in parts))


@dataclass(frozen=True)
class ContainerUrl:
    """An environment variable set at apply time to a SAS URL of ``container``."""

    variable: str
    container: str
    access: Access = "write"


@dataclass(frozen=True)
class Image:
    """A Marketplace image and its node agent SKU."""

    publisher: str
    offer: str
    sku: str
    node_agent_sku: str
    version: str = "latest"


@dataclass(frozen=True)
class StartTask:
    """Commands run on every node as it joins the pool."""

    commands: tuple[str, ...]
    resource_files: tuple[ResourceFile, ...] = ()
    elevation: Literal["admin", "nonadmin"] = "nonadmin"
    wait_for_success: bool = True
    retries: int = 0
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def command_line(self) -> str:
        """The Batch command line: the commands joined and run by bash."""
        return shell_command_line("; ".join(self.commands))


@dataclass(frozen=True)
class Pool:
    """The pool of compute nodes (step 3)."""

    id: str
    vm_size: str
    image: Image
    dedicated_nodes: int = 0
    low_priority_nodes: int = 0
    task_slots_per_node: int = 1
    resize_timeout: timedelta = timedelta(minutes=15)
    reuse: bool = False
    start_task: StartTask | None = None


@dataclass(frozen=True)
class Job:
    """The job that holds the tasks (step 4)."""

    id: str
    priority: int = 0
    max_wall_clock: timedelta | None = None
    max_task_retries: int = 0
    on_all_tasks_complete: Literal["noaction", "terminatejob"] = "noaction"
    on_task_failure: Literal["noaction", "performexitoptionsjobaction"] = "noaction"
    environment: dict[str, str] = field(default_factory=dict)
    uses_task_dependencies: bool = False


@dataclass(frozen=True)
class Task:
    """One concrete task, rendered from the template (step 5)."""

    id: str
    command: str
    display_name: str | None = None
    resource_files: tuple[ResourceFile, ...] = ()
    output_files: tuple[OutputFile, ...] = ()
    container_urls: tuple[ContainerUrl, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    max_wall_clock: timedelta | None = None
    retention: timedelta | None = None
    retries: int | None = None
    required_slots: int = 1
    depends_on_ids: tuple[str, ...] = ()
    depends_on_ranges: tuple[tuple[int, int], ...] = ()
    #: What the task must produce (``outputs:`` in the template).
    outputs: tuple[DeclaredOutput, ...] = ()

    @property
    def command_line(self) -> str:
        """The Batch command line: the command run by bash."""
        return shell_command_line(self.command)

    @property
    def declared_outputs(self) -> tuple[DeclaredOutput, ...]:
        """``outputs`` plus the blobs Batch uploads for the task when it succeeds (``output_files``).

        An output file's blob is named by ``path`` for a single file (default the
        file's name); for a pattern, ``path`` is a folder before the matched names.
        """
        found = list(self.outputs)
        for output in self.output_files:
            if output.upload_on == "failure":
                continue
            if any(c in output.pattern for c in "*?"):
                folder = (output.path or "").strip("/")
                relative = output.pattern.lstrip("./")
                name = f"{folder}/{relative}" if folder else relative
            else:
                name = output.path or output.pattern.rsplit("/", 1)[-1]
            found.append(DeclaredOutput(output.container, name))
        return tuple(found)


@dataclass(frozen=True)
class Monitor:
    """How step 6 watches the tasks."""

    timeout: timedelta = timedelta(minutes=20)
    poll_interval: timedelta = timedelta(seconds=5)


@dataclass(frozen=True)
class Download:
    """Step 7: which blobs to download, and where."""

    container: str
    destination: Path
    prefix: str = ""


@dataclass(frozen=True)
class Cleanup:
    """Steps 8 and 9: what happens to each container, the job and the pool."""

    containers: dict[str, Policy] = field(default_factory=dict)
    job: Policy = "ask"
    pool: Policy = "ask"


@dataclass(frozen=True)
class Workflow:
    """A loaded workflow: everything the nine steps need, rendered and checked."""

    name: str
    description: str
    path: Path
    variables: dict[str, Any]
    containers: tuple[Container, ...]
    uploads: tuple[UploadFile, ...]
    pool: Pool
    job: Job
    tasks: tuple[Task, ...]
    monitor: Monitor
    download: Download | None
    cleanup: Cleanup
    #: Whether tasks may be satisfied from the cache of earlier runs (``cache:`` in the file).
    cache: bool = True

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping; paths as strings and durations in the readable form."""
        return to_plain(self)


def to_plain(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses as mappings of their fields in order (as
    ``dataclasses.asdict`` makes them), tuples as lists, paths as text, durations readable.

    Written out rather than ``to_plain(asdict(value))``, which deep-copies every value
    first and took most of the time for a sweep of 100,000 tasks.
    """
    kind = type(value)
    if kind in _AS_IS or value is None:
        return value
    if kind is tuple or kind is list:
        return [to_plain(v) for v in value] if value else []
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    part = plain_part(value)
    return to_plain(part) if part is not value else value


def plain_part(value: Any) -> Any:
    """One dataclass, path or duration as JSON-ready data, one level deep; anything else as it is.

    A dataclass becomes a mapping of its fields (their values unconverted), a
    path its text, a duration its readable form. ``json.dumps(..., default=plain_part)``
    thus writes what :func:`to_plain` makes, without making it first.
    """
    names = _FIELD_NAMES.get(type(value))
    if names is None and is_dataclass(value) and not isinstance(value, type):
        names = field_names(type(value))
    if names is not None:
        return {name: getattr(value, name) for name in names}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, timedelta):
        return format_duration(value)
    return value


def field_names(kind: type) -> tuple[str, ...]:
    """The field names of the dataclass ``kind``, in order."""
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(f.name for f in fields(kind))
    return names


_AS_IS = frozenset({str, int, bool, float})
#: Field names of each dataclass :func:`to_plain` met, in order.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


# Making and copying instances of these frozen dataclasses without ``__init__``. A frozen
# class's ``__init__`` sets each field through ``object.__setattr__``, and ``dataclasses.replace``
# looks the fields up again on every call: for a sweep of 100,000 tasks, building and renaming
# the tasks that way took longer than rendering them. None of the classes here has a
# ``__post_init__`` or slots, so an instance is exactly its attribute dict.

_T = TypeVar("_T")


def maker(kind: type[_T], names: Iterable[str]) -> Callable[[dict[str, Any]], _T]:
    """A function making a ``kind`` from a mapping of every field to its value, without ``__init__``.

    ``names`` are the keys each such mapping will have; they are checked here, once, against the
    fields of ``kind``, so that a field added later cannot be left out silently, and not on each call.
    """
    if set(names) != _field_set(kind):
        missing = sorted(_field_set(kind) - set(names))
        unknown = sorted(set(names) - _field_set(kind))
        raise TypeError(f"{kind.__name__}: missing fields {missing}, unknown fields {unknown}")
    new = object.__new__

    def make(values: dict[str, Any]) -> _T:
        made = new(kind)
        made.__dict__.update(values)
        return made

    return make


def copier(kind: type[_T], names: Iterable[str]) -> Callable[[_T, dict[str, Any]], _T]:
    """A function copying a ``kind`` with some fields changed, given as a mapping, without ``__init__``:
    :func:`copy_with` for a loop. The mapping's keys must be among ``names``, checked here, once."""
    if not set(names) <= _field_set(kind):
        raise TypeError(f"{kind.__name__} has no field {sorted(set(names) - _field_set(kind))}")
    new = object.__new__

    def copy(value: _T, changes: dict[str, Any]) -> _T:
        made = new(kind)
        attributes = made.__dict__
        attributes.update(value.__dict__)
        attributes.update(changes)
        return made

    return copy


def copy_with(value: _T, **changes: Any) -> _T:
    """``dataclasses.replace(value, **changes)``, without running ``__init__``."""
    if not changes.keys() <= _field_set(type(value)):
        raise TypeError(f"{type(value).__name__} has no field {sorted(changes.keys() - _field_set(type(value)))}")
    copy = object.__new__(type(value))
    attributes = copy.__dict__
    attributes.update(value.__dict__)
    attributes.update(changes)
    return copy


@functools.lru_cache(maxsize=None)
def _field_set(kind: type) -> frozenset[str]:
    return frozenset(field_names(kind))
