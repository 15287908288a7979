"""Blob storage for the steps: containers, uploads that skip unchanged blobs, SAS URLs, safe downloads.

Everything goes through azure-storage-blob. Uploads compare the local file's
MD5 with the blob's stored ``Content-MD5`` and send only what differs, and
they store the MD5 explicitly (a chunked upload would otherwise have none).
SAS tokens are as narrow as the use: read (and list, for a prefix) for
resource files, create and write only for outputs. Downloads refuse blob
names that would land outside the destination.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import (
    BlobSasPermissions,
    ContainerSasPermissions,
    ContentSettings,
    generate_blob_sas,
    generate_container_sas,
)

from batchflow.cloud.errors import service_errors
from batchflow.cloud.targets import Target
from batchflow.errors import RunFailed, SetupError

UploadOutcome = Literal["new", "changed", "unchanged"]

#: Partial downloads are written under this prefix and renamed when complete;
#: ones left by a killed process are removed by :func:`remove_partial_downloads`.
PARTIAL_PREFIX = ".batchflow-partial-"

_UMASK = os.umask(0)
os.umask(_UMASK)

#: The longest file name most file systems take, in bytes.
NAME_MAX = 255

#: Start SAS validity a little in the past: the service's clock may be behind ours.
CLOCK_SKEW = timedelta(minutes=5)

#: How long a server-side copy (of a cached task's output) may take.
COPY_TIMEOUT = 600.0


def file_md5(path: Path) -> bytes:
    """The MD5 digest of a file, read in 1 MiB pieces."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for piece in iter(lambda: handle.read(1 << 20), b""):
            digest.update(piece)
    return digest.digest()


@dataclass(frozen=True)
class BlobInfo:
    """A blob's name, size and stored MD5 (``None`` when the service has none)."""

    name: str
    size: int
    md5: bytes | None


class UnsafeBlobName(RunFailed):
    """A blob name that would write outside the download destination."""


def safe_destination(root: Path, blob_name: str) -> Path:
    """Where blob ``blob_name`` goes under ``root``; refuses names that escape it.

    Refused: absolute names, ``..`` and ``.`` parts, empty parts, backslashes
    and NUL, and any path through an existing symbolic link.
    """
    if not blob_name or "\\" in blob_name or "\x00" in blob_name or blob_name.startswith("/"):
        raise UnsafeBlobName(f"refusing to download blob {blob_name!r}: not a safe relative name")
    parts = blob_name.split("/")  # not PurePosixPath: it would fold "a/./b" and "a//b" into "a/b"
    if any(part in ("..", ".", "") for part in parts):
        raise UnsafeBlobName(f"refusing to download blob {blob_name!r}: it would leave {root} or alias another name")
    if any(len(part.encode()) > NAME_MAX for part in parts):
        raise UnsafeBlobName(
            f"refusing to download blob {blob_name!r}: a part of its name is longer than {NAME_MAX} bytes"
        )
    target = root.joinpath(*parts)
    probe = root
    for part in parts:
        probe = probe / part
        if probe.is_symlink():
            raise UnsafeBlobName(f"refusing to download blob {blob_name!r}: {probe} is a symbolic link")
    resolved_root = root.resolve()
    if resolved_root not in target.resolve().parents:
        raise UnsafeBlobName(f"refusing to download blob {blob_name!r}: it would leave {root}")
    return target


def remove_partial_downloads(root: Path) -> int:
    """Delete the partial files a killed download left under ``root``; returns how many."""
    removed = 0
    for leftover in root.rglob(PARTIAL_PREFIX + "*") if root.is_dir() else []:
        if leftover.is_file() and not leftover.is_symlink():
            leftover.unlink()
            removed += 1
    return removed


def _sign(generate: Any, *args: Any, **kwargs: Any) -> str:
    """Call an SDK SAS generator; a key that is not valid base64 is a setup problem, not a crash."""
    try:
        return generate(*args, **kwargs)
    except ValueError as error:  # binascii.Error from decoding the key
        raise SetupError(f"cannot sign a SAS token: the storage key is not valid ({error})") from None


class BlobStore:
    """One storage account, as the steps use it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.service = target.blob_service()
        self._delegation_key: Any = None
        self._delegation_expiry: datetime | None = None

    # ------------------------------------------------------------ containers

    def create_container(self, name: str) -> bool:
        """Create container ``name``; returns False when it already existed."""
        with service_errors(f"creating container {name}"):
            try:
                self.service.create_container(name)
            except ResourceExistsError:
                return False
        return True

    def container_exists(self, name: str) -> bool:
        with service_errors(f"looking up container {name}"):
            return bool(self.service.get_container_client(name).exists())

    def delete_container(self, name: str) -> bool:
        """Delete container ``name``; returns False when it was already gone."""
        with service_errors(f"deleting container {name}"):
            try:
                self.service.delete_container(name)
            except ResourceNotFoundError:
                return False
        return True

    # ----------------------------------------------------------------- blobs

    def blob_md5(self, container: str, blob: str) -> bytes | None | Literal[False]:
        """The blob's stored MD5, ``None`` if it has none, ``False`` if there is no such blob."""
        with service_errors(f"reading {container}/{blob}"):
            try:
                properties = self.service.get_blob_client(container, blob).get_blob_properties()
            except ResourceNotFoundError:
                return False
        md5 = properties.content_settings.content_md5
        return bytes(md5) if md5 else None

    def upload(self, local: Path, container: str, blob: str, md5: bytes | None = None) -> UploadOutcome:
        """Upload ``local`` unless the blob already has the same MD5; say which it was."""
        md5 = md5 or file_md5(local)
        existing = self.blob_md5(container, blob)
        if existing == md5:
            return "unchanged"
        content_type = mimetypes.guess_type(local.name)[0] or "application/octet-stream"
        with service_errors(f"uploading {local} to {container}/{blob}"), open(local, "rb") as data:
            self.service.get_blob_client(container, blob).upload_blob(
                data,
                overwrite=True,
                length=local.stat().st_size,
                content_settings=ContentSettings(content_type=content_type, content_md5=bytearray(md5)),
                max_concurrency=4,
            )
        return "new" if existing is False else "changed"

    def copy_blob(self, source_container: str, blob: str, container: str, expiry: datetime) -> None:
        """Copy a blob of this account into ``container`` under the same name, on the service's side.

        The source is read through a read-only SAS that expires at ``expiry``;
        the copy is waited for, so the blob is complete when this returns.
        """
        source = self.blob_sas_url(source_container, blob, expiry)
        with service_errors(f"copying {source_container}/{blob} to {container}"):
            client = self.service.get_blob_client(container, blob)
            client.start_copy_from_url(source)
            deadline = time.monotonic() + COPY_TIMEOUT
            while True:
                status = client.get_blob_properties().copy.status
                if status == "success":
                    return
                if status in ("failed", "aborted") or time.monotonic() > deadline:
                    raise RunFailed(f"copying {source_container}/{blob} to {container} ended as {status}")
                time.sleep(0.2)

    def list_blobs(self, container: str, prefix: str = "") -> list[BlobInfo]:
        with service_errors(f"listing container {container}"):
            return [
                BlobInfo(
                    b.name, b.size, bytes(b.content_settings.content_md5) if b.content_settings.content_md5 else None
                )
                for b in self.service.get_container_client(container).list_blobs(name_starts_with=prefix or None)
            ]

    def download(self, container: str, blob: BlobInfo, root: Path) -> bool:
        """Download ``blob`` under ``root`` unless an identical file is there; returns whether it was written."""
        target = safe_destination(root, blob.name)
        # Without a stored MD5 (large block uploads have none) a same-sized file may still differ.
        if blob.md5 is not None and target.is_file() and target.stat().st_size == blob.size:
            if file_md5(target) == blob.md5:
                return False
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=PARTIAL_PREFIX)
        try:
            with service_errors(f"downloading {container}/{blob.name}"), os.fdopen(handle, "wb") as out:
                self.service.get_blob_client(container, blob.name).download_blob(max_concurrency=4).readinto(out)
            os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600; a download is an ordinary file
            os.replace(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return True

    # ------------------------------------------------------------------- SAS

    def _signing(self, expiry: datetime) -> dict[str, Any]:
        """Keyword arguments that sign a SAS: the key (account or user delegation), and HTTPS only where it applies."""
        # The local Azurite speaks plain http; everywhere else a token must not work over http.
        extra = {"protocol": "https"} if self.target.blob_endpoint.startswith("https://") else {}
        if self.target.storage_account_key:
            return {"account_key": self.target.storage_account_key, **extra}
        if self._delegation_key is None or (self._delegation_expiry and self._delegation_expiry < expiry):
            start = datetime.now(timezone.utc) - CLOCK_SKEW
            with service_errors("getting a user delegation key for SAS tokens"):
                self._delegation_key = self.service.get_user_delegation_key(start, expiry)
            self._delegation_expiry = expiry
        return {"user_delegation_key": self._delegation_key, **extra}

    def container_url(self, container: str) -> str:
        return self.service.get_container_client(container).url

    def container_sas_url(self, container: str, access: Literal["read", "write"], expiry: datetime) -> str:
        """The container's URL with a SAS: ``read`` gives read and list, ``write`` gives create and write only."""
        permission = (
            ContainerSasPermissions(read=True, list=True)
            if access == "read"
            else ContainerSasPermissions(write=True, create=True)
        )
        token = _sign(
            generate_container_sas,
            self.target.storage_account_name,
            container,
            permission=permission,
            expiry=expiry,
            start=datetime.now(timezone.utc) - CLOCK_SKEW,
            **self._signing(expiry),
        )
        return f"{self.container_url(container)}?{token}"

    def blob_sas_url(self, container: str, blob: str, expiry: datetime) -> str:
        """One blob's URL with a read-only SAS."""
        token = _sign(
            generate_blob_sas,
            self.target.storage_account_name,
            container,
            blob,
            permission=BlobSasPermissions(read=True),
            expiry=expiry,
            start=datetime.now(timezone.utc) - CLOCK_SKEW,
            **self._signing(expiry),
        )
        return f"{self.service.get_blob_client(container, blob).url}?{token}"
