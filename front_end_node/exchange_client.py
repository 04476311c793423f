"""The agent's client of the central exchange: HTTPS with the department's certificate."""

from __future__ import annotations

import datetime as dt
import ssl
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
import orjson

from front_end_node.config import ExchangeSettings
from gdx.attachments import sha256_of
from gdx.protocol import BatchReceipt, ChangePage, Drift, Grant, Load, Resource


class ExchangeError(Exception):
    """The exchange answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status >= 500 or self.status == 429


@dataclass(frozen=True)
class SnapshotChunk:
    seq: int  # the resource's position at which these rows are its state
    heartbeat: tuple[int, dt.datetime] | None  # the provider's newest heartbeat at that position
    rows: int
    columns: list[str]  # the key's field, then the granted fields
    last_key: str | None  # where the next chunk begins; None: the last chunk
    body: bytes  # CSV, no header


class ExchangeClient:
    def __init__(self, settings: ExchangeSettings) -> None:
        context = ssl.create_default_context(cafile=str(settings.ca))
        context.load_cert_chain(str(settings.cert), str(settings.key))
        self.url = settings.url.rstrip("/")
        # trust_env=False: a proxy or CA bundle from the environment must not replace the platform CA.
        self._http = httpx.AsyncClient(
            base_url=self.url, verify=context, timeout=settings.timeout_s, trust_env=False, http2=False
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return orjson.loads(await self._call_raw(method, path, **kwargs))

    async def _call_raw(self, method: str, path: str, **kwargs: Any) -> bytes:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ExchangeError(f"the exchange at {self.url} is unreachable: {exc!r}") from None
        if response.status_code >= 400:
            self._raise(response, method, path)
        return response.content

    @staticmethod
    def _raise(response: httpx.Response, method: str, path: str) -> None:
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text[:300]}
        message = body.get("message", response.reason_phrase) if isinstance(body, dict) else str(body)
        raise ExchangeError(
            f"{method} {path}: {response.status_code} {message}",
            status=response.status_code,
            body=body if isinstance(body, dict) else {},
        )

    async def resource(self, code: str, *, timeout_s: float | None = None) -> Resource:
        """The catalog entry; ``timeout_s`` instead of the client's own, for a caller that has
        something to go on with when the exchange is slow to answer."""
        extra: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        return Resource.model_validate(await self._call("GET", f"/v1/resources/{code}", **extra))

    async def report_drift(self, code: str, drift: Drift) -> None:
        await self._call("POST", f"/v1/resources/{code}/drift", json=drift.model_dump(mode="json"))

    async def grants(self) -> list[Grant]:
        return [Grant.model_validate(g) for g in await self._call("GET", "/v1/grants")]

    async def push(self, code: str, body: bytes) -> BatchReceipt:
        data = await self._call(
            "POST", f"/v1/resources/{code}/changes", content=body, headers={"content-type": "application/json"}
        )
        return BatchReceipt.model_validate(data)

    async def snapshot(self, code: str, purpose: str, after_key: str | None, limit: int) -> SnapshotChunk:
        """A key range of the resource's current rows (exchange/routes/snapshots.py), CSV."""
        params: dict[str, str | int] = {"purpose": purpose, "limit": limit}
        if after_key is not None:
            params["after_key"] = after_key
        try:
            response = await self._http.get(f"/v1/resources/{code}/snapshot", params=params)
        except httpx.TransportError as exc:
            raise ExchangeError(f"the exchange at {self.url} is unreachable: {exc!r}") from None
        if response.status_code >= 400:
            self._raise(response, "GET", f"/v1/resources/{code}/snapshot")
        headers = response.headers
        last_key = headers.get("x-gdx-last-key")
        beat = headers.get("x-gdx-heartbeat-seq")
        return SnapshotChunk(
            seq=int(headers["x-gdx-seq"]),
            heartbeat=(int(beat), dt.datetime.fromisoformat(headers["x-gdx-heartbeat-time"])) if beat else None,
            rows=int(headers["x-gdx-rows"]),
            columns=headers["x-gdx-columns"].split(","),
            last_key=unquote(last_key) if last_key is not None else None,
            body=response.content,
        )

    async def put_file(self, code: str, sha256: str, data: bytes) -> None:
        """Upload a file of a resource of format file (the exchange keeps one copy per content)."""
        await self._call_raw("PUT", f"/v1/resources/{code}/files/{sha256}", content=data,
                             headers={"content-type": "application/octet-stream"})  # fmt: skip

    async def get_file(self, code: str, sha256: str, purpose: str) -> bytes:
        """A file of a resource of format file, checked against its name."""
        data = await self._call_raw("GET", f"/v1/resources/{code}/files/{sha256}", params={"purpose": purpose})
        if sha256_of(data) != sha256:
            raise ExchangeError(f"file {sha256} of {code} arrived with other bytes ({len(data):,}); read again later")
        return data

    async def open_load(self, code: str) -> Load:
        """Open a full load of the resource at the exchange, or resume the open one."""
        return Load.model_validate(await self._call("POST", f"/v1/resources/{code}/loads"))

    async def load_progress(self, code: str, load: uuid.UUID, rows: int, *, finished: bool = False) -> Load:
        body = {"rows": rows, "finished": finished}
        return Load.model_validate(await self._call("POST", f"/v1/resources/{code}/loads/{load}", json=body))

    async def pull(self, code: str, purpose: str, after: int, limit: int, *, latest: bool = False) -> ChangePage:
        params: dict[str, str | int] = {"purpose": purpose, "after": after, "limit": limit}
        if latest:
            params["latest"] = "true"
        raw = await self._call_raw("GET", f"/v1/resources/{code}/changes", params=params)
        # Validated straight from the bytes: a page of 5,000 rows through Python dicts first
        # cost the subscriber's agent a third of its time.
        return ChangePage.model_validate_json(raw)
