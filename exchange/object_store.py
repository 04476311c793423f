"""An S3-compatible object store for the files of resources of format file, where the platform has
one (MinIO, Ceph's RADOS gateway, a government cloud's OSS/OBS/COS with its S3 API); without one
they stay in PostgreSQL (exchange/files.py). The client is MinIO's, which speaks to any of them.

Objects are named by content, ``{prefix}{sha256[:2]}/{sha256}``: written once, after the bytes were
checked against their digest, and never changed, so a write that is repeated or left over by a
failed transaction is harmless."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import S3Error

# Parts of a multipart upload: a 512 MiB file in 32 parts.
PART_BYTES = 16 * 1024 * 1024


class ObjectStoreError(RuntimeError):
    """The object store cannot be used as configured; the message says what to put right."""


@dataclass(frozen=True)
class ObjectStoreSettings:
    endpoint: str  # https://host:port (http:// only for a store on the same host)
    bucket: str
    access_key: str
    secret_key: str
    prefix: str = "gdx-files/"
    region: str | None = None
    ca_file: Path | None = None  # the CA of the store's certificate, when not a public one


class ObjectStore:
    def __init__(self, settings: ObjectStoreSettings) -> None:
        url = urlsplit(settings.endpoint)
        if url.scheme not in ("http", "https") or not url.netloc or url.path not in ("", "/"):
            raise ObjectStoreError(
                f"the object store's endpoint {settings.endpoint!r} is not an http(s)://host[:port] address"
            )
        context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
        http = urllib3.PoolManager(
            ssl_context=context, timeout=urllib3.Timeout(connect=10, read=120), retries=urllib3.Retry(total=3)
        )
        self.settings = settings
        self._client = Minio(
            url.netloc,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=url.scheme == "https",
            region=settings.region,
            http_client=http,
        )

    def name(self, sha256: str) -> str:
        return f"{self.settings.prefix}{sha256[:2]}/{sha256}"

    def check(self) -> None:
        """At start: the bucket is there and these credentials reach it."""
        where = f"bucket {self.settings.bucket!r} at {self.settings.endpoint}"
        try:
            exists = self._client.bucket_exists(self.settings.bucket)
        except S3Error as exc:
            raise ObjectStoreError(
                f"{where}: {exc.code} ({exc.message}); check the access key and its policy"
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise ObjectStoreError(f"{where} cannot be reached: {exc}") from None
        if not exists:
            raise ObjectStoreError(f"{where} does not exist; create it (mc mb, or the cloud's console) first")

    async def put(self, sha256: str, path: Path, media_type: str) -> None:
        await asyncio.to_thread(
            self._client.fput_object, self.settings.bucket, self.name(sha256), str(path),
            content_type=media_type, part_size=PART_BYTES,
        )  # fmt: skip

    async def remove(self, sha256: str) -> None:
        try:
            await asyncio.to_thread(self._client.remove_object, self.settings.bucket, self.name(sha256))
        except S3Error as exc:
            raise ObjectStoreError(f"removing {self.name(sha256)}: {exc.code} ({exc.message})") from None

    async def chunks(self, sha256: str, chunk_bytes: int) -> AsyncIterator[bytes]:
        """The object's bytes, read a chunk at a time in a worker thread."""
        response: Any = await asyncio.to_thread(self._client.get_object, self.settings.bucket, self.name(sha256))
        try:
            while block := await asyncio.to_thread(response.read, chunk_bytes):
                yield block
        finally:
            response.close()
            response.release_conn()
