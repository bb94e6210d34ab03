"""Where file bytes live: a directory on local disk, or any S3-compatible object store.

Keys are made by the server from ids alone (`object_key`), never from a filename, so no
client input reaches a path or an object name. Objects are written whole: a reader never sees
half a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
import uuid
from collections.abc import Awaitable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from zyron.errors import ZyronError
from zyron.settings import ConfigError, Settings

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger("zyron.files")

# What a key may look like: the shape object_key makes, so no other string reaches a path.
_KEY = re.compile(r"^files/[0-9a-f]{32}/[0-9a-f]{32}$")


class StorageError(ZyronError):
    """The storage backend failed: a 503 to the client, the reason (never contents) logged."""

    status_code = 503
    code = "storage_unavailable"
    default_detail = "File storage cannot be reached right now; try again in a moment."

    def __init__(self, reason: str) -> None:
        super().__init__(headers={"Retry-After": "2"})
        self.reason = reason


class ObjectNotFound(StorageError):
    """No object is stored under the key."""


def object_key(user_id: uuid.UUID, file_id: uuid.UUID) -> str:
    """Return the storage key of a file: made from the ids alone."""
    return f"files/{user_id.hex}/{file_id.hex}"


def _checked(key: str) -> str:
    """Refuse a key that object_key did not make."""
    if not _KEY.match(key):
        raise StorageError("malformed storage key")
    return key


class Storage(Protocol):
    """Put, get and delete whole objects by key."""

    name: str

    async def put(self, key: str, data: bytes, media_type: str) -> None:
        """Store `data` under `key`, replacing what was there."""
        ...

    async def get(self, key: str) -> bytes:
        """Return the bytes under `key`; ObjectNotFound if there are none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; a key with nothing stored is no error."""
        ...

    async def exists(self, key: str) -> bool:
        """Tell whether an object is stored under `key`."""
        ...

    async def keys(self) -> list[str]:
        """Return every stored key (for tests and maintenance, not for request paths)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class LocalStorage:
    """Files under `root/files/`: written to a temporary file, then renamed into place.

    Disk I/O runs in a worker thread (asyncio.to_thread), so the event loop never waits on it.
    """

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        return self.root / _checked(key)

    async def put(self, key: str, data: bytes, media_type: str) -> None:
        """Store `data` under `key`, atomically."""
        try:
            await asyncio.to_thread(self._put, self._path(key), data)
        except OSError as exc:
            raise _local_error(exc) from exc

    @staticmethod
    def _put(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Same directory as the target, so the rename stays on one file system (atomic).
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    async def get(self, key: str) -> bytes:
        """Return the bytes under `key`."""
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as exc:
            raise ObjectNotFound("no object under that key") from exc
        except OSError as exc:
            raise _local_error(exc) from exc

    async def delete(self, key: str) -> None:
        """Remove the file, if it is there."""
        path = self._path(key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _local_error(exc) from exc

    async def exists(self, key: str) -> bool:
        """Tell whether the file is there."""
        return await asyncio.to_thread(self._path(key).is_file)

    async def keys(self) -> list[str]:
        """Return every stored key, temporary files included (they would be leftovers)."""
        return await asyncio.to_thread(lambda: sorted(self._walk()))

    def _walk(self) -> Iterator[str]:
        base = self.root / "files"
        if not base.exists():
            return
        for path in base.rglob("*"):
            if path.is_file():
                yield path.relative_to(self.root).as_posix()

    async def aclose(self) -> None:
        """Nothing to release."""


def _local_error(exc: OSError) -> StorageError:
    """Describe a disk error without its path (which holds the key)."""
    return StorageError(f"local storage: {exc.strerror or type(exc).__name__}")


class S3Storage:
    """Objects in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, Supabase Storage)."""

    name = "s3"

    def __init__(self, settings: Settings) -> None:
        if not settings.s3_bucket:
            raise ConfigError(
                "STORAGE_BACKEND=s3 needs S3_BUCKET (and S3_ENDPOINT_URL outside AWS)"
            )
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix.strip("/")
        self._settings = settings
        self._stack = AsyncExitStack()
        self._client: S3Client | None = None

    async def start(self) -> None:
        """Open the client (one connection pool for the process)."""
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        settings = self._settings
        secret = settings.s3_secret_access_key
        config = AioConfig(
            s3={"addressing_style": "path" if settings.s3_force_path_style else "auto"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            # Only what the call needs: some S3-compatible stores refuse the newer checksums.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=settings.s3_endpoint_url,
                region_name=settings.s3_region,
                aws_access_key_id=settings.s3_access_key_id,
                aws_secret_access_key=secret.get_secret_value() if secret else None,
                config=config,
            )
        )

    @property
    def client(self) -> S3Client:
        """Return the open client."""
        if self._client is None:
            raise StorageError("S3 storage used before start()")
        return self._client

    def _name(self, key: str) -> str:
        key = _checked(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put(self, key: str, data: bytes, media_type: str) -> None:
        """Upload the object in one request (a file is at most MAX_FILE_BYTES)."""
        await self._call(
            self.client.put_object(
                Bucket=self.bucket, Key=self._name(key), Body=data, ContentType=media_type
            )
        )

    async def get(self, key: str) -> bytes:
        """Download the object."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=self._name(key))
            async with response["Body"] as body:
                data: bytes = await body.read()
        except ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFound("no object under that key") from exc
            raise StorageError(f"S3 GetObject failed: {_error_code(exc)}") from exc
        except (BotoCoreError, OSError) as exc:
            raise StorageError(f"S3 GetObject failed: {type(exc).__name__}") from exc
        return data

    async def delete(self, key: str) -> None:
        """Delete the object (S3 answers success for a missing key)."""
        await self._call(self.client.delete_object(Bucket=self.bucket, Key=self._name(key)))

    async def exists(self, key: str) -> bool:
        """HEAD the object."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            await self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return False
            raise StorageError(f"S3 HeadObject failed: {_error_code(exc)}") from exc
        except (BotoCoreError, OSError) as exc:
            raise StorageError(f"S3 HeadObject failed: {type(exc).__name__}") from exc
        return True

    async def keys(self) -> list[str]:
        """List the keys under the prefix."""
        start = f"{self.prefix}/" if self.prefix else ""
        found: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{start}files/"):
            found.extend(item["Key"][len(start) :] for item in page.get("Contents", []))
        return sorted(found)

    async def _call(self, call: Awaitable[object]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            await call
        except ClientError as exc:
            raise StorageError(f"S3 request failed: {_error_code(exc)}") from exc
        except (BotoCoreError, OSError) as exc:
            raise StorageError(f"S3 request failed: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._stack.aclose()
        self._client = None


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "unknown"))


async def open_storage(settings: Settings) -> Storage:
    """Return the storage STORAGE_BACKEND names, ready to use."""
    if settings.storage_backend == "s3":
        s3 = S3Storage(settings)
        await s3.start()
        log.info(
            "file storage",
            extra={
                "backend": "s3",
                "bucket": s3.bucket,
                "endpoint": settings.s3_endpoint_url or "aws",
                "path_style": settings.s3_force_path_style,
            },
        )
        return s3
    local = LocalStorage(settings.data_dir)
    log.info("file storage", extra={"backend": "local"})
    return local
