"""Hop 2: the front-end database's outbox -> the central exchange.

A batch's id is fixed in the outbox before it is sent and its rows leave the outbox only
when the exchange acknowledged it; a crash in between resends the same id, which the
exchange applies once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from front_end_node import catalog, store
from front_end_node.exchange_client import ExchangeClient, ExchangeError
from front_end_node.state import AgentState
from gdx.fields import FieldType
from gdx.protocol import ResourceSpec

HOP = "push"


def batch_body(batch: store.Outgoing, integer_key: bool) -> tuple[bytes, tuple[int, dt.datetime] | None, list[int]]:
    """The request body, the newest heartbeat in the batch, and the outbox id of each change."""
    changes: list[dict[str, Any]] = []
    ids: list[int] = []
    heartbeat: tuple[int, dt.datetime] | None = None
    for outbox_id, op, key, row, version, commit_time in batch.rows:
        if op == "h":
            if heartbeat is None or version > heartbeat[0]:
                heartbeat = (version, commit_time)
            continue
        assert key is not None
        change: dict[str, Any] = {
            "op": "upsert" if op == "u" else "delete",
            "key": int(key) if integer_key else key,
            "source_version": version,
            "source_commit_time": commit_time,
        }
        if row is not None:
            change["row"] = orjson.Fragment(row)  # already JSON: sent as stored, not parsed again
        changes.append(change)
        ids.append(outbox_id)
    body: dict[str, Any] = {"batch_id": str(batch.batch_id), "changes": changes}
    if heartbeat is not None:
        body["heartbeat"] = {"seq": heartbeat[0], "source_time": heartbeat[1]}
    return orjson.dumps(body), heartbeat, ids


class Pusher:
    def __init__(
        self, code: str, spec: ResourceSpec, client: ExchangeClient, state: AgentState, batch_size: int
    ) -> None:
        self.code = code
        self.client = client
        self.state = state
        self.batch_size = batch_size
        key_type = next(f.type for f in spec.fields if f.name == spec.primary_key)
        self.integer_key = key_type is FieldType.INTEGER
        self.file_field = spec.file_field

    async def step(self, conn: store.Conn) -> bool:
        batch = await store.next_batch(conn, self.code, self.batch_size)
        if batch is None:
            self.state.ok(HOP, self.code)
            return False
        body, heartbeat, ids = batch_body(batch, self.integer_key)
        if self.file_field is not None:
            await self._send_files(conn, batch)
        try:
            receipt = await self.client.push(self.code, body)
        except ExchangeError as exc:
            if exc.status == 422 and exc.body.get("error") == "file_not_uploaded":
                # The exchange let a file go that this node had sent long ago (exchange/retention.py):
                # send the batch's files again, then the batch.
                await store.mark_unsent(conn, self.code, self._named_files(batch))
                self.state.failed(
                    HOP, self.code, f"the exchange lacks files this batch names; sending them again: {exc}"
                )
                return True
            if exc.status == 422 and exc.body.get("error") == "invalid_changes":
                if await self._made_to_follow_catalog(conn, batch, body):
                    return True
                refused = {ids[p["index"]]: p["problem"] for p in exc.body.get("details", []) if p["index"] < len(ids)}
                await store.unfix(conn, batch, refused, self.code)
                self.state.failed(HOP, self.code, f"the exchange refused {len(refused)} row(s); quarantined: {exc}")
                return True
            raise
        await store.acknowledge(conn, self.code, batch, heartbeat)
        self.state.ok(HOP, self.code, rows=receipt.applied, batches=1)
        return True

    async def _send_files(self, conn: store.Conn, batch: store.Outgoing) -> None:
        """The files the batch's records name go first: the exchange takes a record only when it
        holds its file. Each is marked sent once the exchange has it (an upload again is harmless)."""
        for sha256 in await store.unsent_files(conn, self.code, self._named_files(batch)):
            data = await store.file_data(conn, self.code, sha256)
            assert data is not None
            await self.client.put_file(self.code, sha256, data)
            await store.mark_sent(conn, self.code, sha256)

    def _named_files(self, batch: store.Outgoing) -> list[str]:
        named = {orjson.loads(row).get(self.file_field) for _, _, _, row, _, _ in batch.rows if row is not None}
        return sorted(sha for sha in named if isinstance(sha, str))

    async def _made_to_follow_catalog(self, conn: store.Conn, batch: store.Outgoing, sent: bytes) -> bool:
        """Rows made before a schema version dropped fields are refused for those fields: the
        refusal may be the catalog's change, not the rows. True if following the catalog
        changed the batch, which then goes again."""
        await catalog.follow(conn, self.client, self.code, self.state.department)
        again = await store.next_batch(conn, self.code, self.batch_size)
        return again is not None and again.batch_id == batch.batch_id and batch_body(again, self.integer_key)[0] != sent
