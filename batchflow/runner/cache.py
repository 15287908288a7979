"""The task cache: reuse the outputs of a task that already succeeded with the same inputs.

A task is *cacheable* when it declares its outputs (``outputs:``, or Batch
``output_files`` uploaded on success) and everything that can change its
result is known before it runs. Its cache key is a SHA-256 over:

* the target's name (a local node and an Azure node are not the same machine);
* the rendered command line, the task's environment and the job's common environment;
* each resource file: its path on the node, its mode, and the MD5 of every
  uploaded file it brings (or its URL, for URL resources);
* each container URL: its variable, access and, for read access, the MD5s of
  what is uploaded into that container;
* the declared outputs (logical container and name) and the ``output_files``;
* the pool's image and node agent, and its start task (commands, user,
  environment, and the MD5s of its resource files).

Container names enter the key by their logical names, never the per-run
physical ones, so two runs of one workflow agree on their keys.

A task is not cacheable, and always runs, when it has no declared outputs,
when the job uses task dependencies, or when a resource file or read URL
points at a container that tasks write to (its content is not known until
the run).

The index lives in ``BATCHFLOW_HOME/cache.sqlite``: for each key, the runs
whose task succeeded and the blobs it produced (with size and MD5), and after
the download, the local files they became. SQLite serialises the writers of
concurrent runs; the index holds names, sizes and digests, never a URL or a token.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from batchflow.cloud.storage import BlobInfo, file_md5
from batchflow.model.spec import DeclaredOutput, Task, Workflow
from batchflow.state.model import now_iso

#: Bump when the key's content changes meaning; old entries then simply stop matching.
KEY_VERSION = 1
CACHE_FILE = "cache.sqlite"


def _upload_digests(workflow: Workflow, digests: dict[Path, bytes]) -> dict[str, list[tuple[str, str]]]:
    """Logical container -> sorted (blob name, MD5 hex) of what is uploaded into it."""
    found: dict[str, list[tuple[str, str]]] = {}
    for upload in workflow.uploads:
        found.setdefault(upload.container, []).append((upload.blob_name, digests[upload.local_path].hex()))
    return {container: sorted(blobs) for container, blobs in found.items()}


def _written_containers(workflow: Workflow) -> set[str]:
    """Logical containers that tasks write to; their content is unknown before the run."""
    written = set()
    for task in workflow.tasks:
        written.update(o.container for o in task.output_files)
        written.update(u.container for u in task.container_urls if u.access == "write")
    return written


class _Uncacheable(Exception):
    """Raised while building a key when part of the task's input cannot be known in advance."""


class KeyMaker:
    """Computes the cache keys of one workflow's tasks; the shared parts are encoded once."""

    def __init__(self, workflow: Workflow, digests: dict[Path, bytes], target: str) -> None:
        self.workflow = workflow
        self.uploads = _upload_digests(workflow, digests)
        self.written = _written_containers(workflow)
        pool = workflow.pool
        start = pool.start_task
        shared: dict[str, Any] = {
            "version": KEY_VERSION,
            "target": target,
            "image": asdict(pool.image),
            "job_environment": workflow.job.environment,
            "start_task": None,
        }
        try:
            if start is not None:
                shared["start_task"] = {
                    "command": start.command_line,
                    "user": start.elevation,
                    "environment": start.environment,
                    "resources": [self._resource(r) for r in start.resource_files],
                }
            self.shared: str | None = json.dumps(shared, sort_keys=True)
        except _Uncacheable:
            self.shared = None

    def _blobs(self, container: str, blob: str | None = None, prefix: str | None = None) -> list[tuple[str, str]]:
        if container in self.written:
            raise _Uncacheable
        available = self.uploads.get(container, [])
        if blob is not None:
            chosen = [entry for entry in available if entry[0] == blob]
        else:
            chosen = [entry for entry in available if entry[0].startswith(prefix or "")]
        if not chosen:
            raise _Uncacheable
        return chosen

    def _resource(self, resource: Any) -> dict[str, Any]:
        if resource.url:
            return {"url": resource.url, "path": resource.path, "mode": resource.mode}
        return {
            "blobs": self._blobs(resource.container, resource.blob, resource.prefix),
            "path": resource.path,
            "mode": resource.mode,
        }

    def key(self, task: Task) -> str | None:
        """The task's cache key, or ``None`` when it must always run."""
        declared = task.declared_outputs
        if self.shared is None or not declared or self.workflow.job.uses_task_dependencies:
            return None
        try:
            urls = []
            for url in sorted(task.container_urls, key=lambda u: u.variable):
                entry: dict[str, Any] = {"variable": url.variable, "access": url.access}
                if url.access == "read":
                    entry["blobs"] = self._blobs(url.container, prefix="")
                urls.append(entry)
            document = {
                "shared": self.shared,
                "command": task.command_line,
                "environment": task.environment,
                "resources": [self._resource(r) for r in task.resource_files],
                "container_urls": urls,
                "outputs": sorted([o.container, o.name] for o in declared),
                "output_files": [asdict(o) for o in task.output_files],
            }
        except _Uncacheable:
            return None
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()

    def keys(self) -> dict[str, str]:
        """Task id -> key, for every cacheable task."""
        found = {}
        for task in self.workflow.tasks:
            key = self.key(task)
            if key is not None:
                found[task.id] = key
        return found


@dataclass
class CachedBlob:
    """One output blob of a cached task, and the local file it was downloaded to, if any."""

    logical: str  # the container's logical name
    container: str  # the physical container it was written to
    name: str
    size: int
    md5: str | None  # hex, when the service stored one
    file: str | None = None  # absolute path of the downloaded copy
    file_md5: str | None = None


@dataclass
class Entry:
    """A task that succeeded: which run, which task, and its output blobs."""

    key: str
    run: str
    task: str
    blobs: list[CachedBlob] = field(default_factory=list)
    created: str = field(default_factory=now_iso)

    def to_json(self) -> str:
        return json.dumps({"task": self.task, "created": self.created, "blobs": [asdict(b) for b in self.blobs]})

    @classmethod
    def from_row(cls, key: str, run: str, data: str) -> Entry:
        fields = json.loads(data)
        return cls(key, run, fields["task"], [CachedBlob(**b) for b in fields["blobs"]], fields["created"])


class CacheIndex:
    """The machine's record of cacheable tasks that succeeded, in one SQLite file."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / CACHE_FILE

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30)) as connection:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS entries ("
                " key TEXT NOT NULL, run TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (key, run))"
            )
            with connection:
                yield connection

    def lookup(self, keys: Iterable[str]) -> dict[str, list[Entry]]:
        """Key -> its entries, newest first, for the keys the index knows."""
        wanted = sorted(set(keys))
        found: dict[str, list[Entry]] = {}
        if not wanted or not self.path.exists():
            return found
        with self._connect() as connection:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = connection.execute(
                    f"SELECT key, run, data FROM entries WHERE key IN ({','.join('?' * len(chunk))})", chunk
                )
                for key, run, data in rows:
                    found.setdefault(key, []).append(Entry.from_row(key, run, data))
        for entries in found.values():
            entries.sort(key=lambda e: e.created, reverse=True)
        return found

    def record(self, entries: Iterable[Entry]) -> int:
        """Add or replace entries (one per key and run); returns how many."""
        rows = [(e.key, e.run, e.to_json()) for e in entries]
        if rows:
            with self._connect() as connection:
                connection.executemany("INSERT OR REPLACE INTO entries (key, run, data) VALUES (?, ?, ?)", rows)
        return len(rows)

    def entries_of(self, run: str) -> list[Entry]:
        if not self.path.exists():
            return []
        with self._connect() as connection:
            rows = connection.execute("SELECT key, run, data FROM entries WHERE run = ?", (run,)).fetchall()
        return [Entry.from_row(key, r, data) for key, r, data in rows]


class BlobListing:
    """The blobs of some containers, listed once each, with exact and pattern lookups."""

    def __init__(self, list_blobs: Any) -> None:
        self._list = list_blobs
        self._by_container: dict[str, tuple[dict[str, BlobInfo], list[str]]] = {}

    def _of(self, container: str) -> tuple[dict[str, BlobInfo], list[str]]:
        if container not in self._by_container:
            try:
                blobs = {b.name: b for b in self._list(container)}
            except Exception:  # a container that is gone holds nothing to reuse
                blobs = {}
            self._by_container[container] = (blobs, sorted(blobs))
        return self._by_container[container]

    def get(self, container: str, name: str) -> BlobInfo | None:
        return self._of(container)[0].get(name)

    def matching(self, output: DeclaredOutput) -> list[BlobInfo]:
        """The blobs that satisfy ``output``: its exact name, or every name its pattern matches."""
        blobs, names = self._of(output.container)
        if not output.is_pattern:
            found = blobs.get(output.name)
            return [found] if found else []
        literal = output.name[: min(i for i in (output.name.find("*"), output.name.find("?")) if i >= 0)]
        start = bisect.bisect_left(names, literal)
        chosen = []
        for name in names[start:]:
            if not name.startswith(literal):
                break
            if output.matches(name):
                chosen.append(blobs[name])
        return chosen


def choose(
    tasks: Iterable[Task], keys: dict[str, str], index: CacheIndex, listing: BlobListing | None
) -> dict[str, tuple[Entry, str]]:
    """Task id -> (the newest entry whose outputs can still be had, and how), for the tasks the cache can satisfy."""
    tasks = [t for t in tasks if t.id in keys]
    hits = index.lookup(keys[t.id] for t in tasks)
    chosen = {}
    for task in tasks:
        for entry in hits.get(keys[task.id], []):
            how = reusable(entry, listing)
            if how is not None:
                chosen[task.id] = (entry, how)
                break
    return chosen


def reusable(entry: Entry, listing: BlobListing | None) -> str | None:
    """How ``entry``'s outputs can be had: ``"copy"`` (its blobs are all still there, unchanged),
    ``"upload"`` (its downloaded files are all still there, same MD5), or ``None``.

    With no listing (plan --offline), only the local files are checked.
    """
    if listing is not None and all(_blob_unchanged(blob, listing) for blob in entry.blobs):
        return "copy"
    if all(blob.file and blob.file_md5 and _file_unchanged(blob) for blob in entry.blobs):
        return "upload"
    return None


def _blob_unchanged(blob: CachedBlob, listing: BlobListing) -> bool:
    found = listing.get(blob.container, blob.name)
    if found is None or found.size != blob.size:
        return False
    return blob.md5 is None or (found.md5 is not None and found.md5.hex() == blob.md5)


def _file_unchanged(blob: CachedBlob) -> bool:
    path = Path(blob.file or "")
    try:
        return path.is_file() and path.stat().st_size == blob.size and file_md5(path).hex() == blob.file_md5
    except OSError:
        return False
