"""The department registry: loaded from the inventory, read on every request (cached briefly)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from gdx.inventory import Inventory


def sync_from_inventory(conninfo: str, inventory: Inventory) -> tuple[int, int]:
    """Upsert the inventory's departments and deactivate those it no longer lists.
    Returns (listed, deactivated). Departments are never deleted: the audit trail and the
    change log still name them."""
    with psycopg.connect(conninfo) as conn, conn.transaction():
        for node in inventory.nodes:
            rules = inventory.jurisdictions[node.jurisdiction]
            conn.execute(
                """
                INSERT INTO department (id, name, jurisdiction, reply_working_days, negotiation_working_days,
                    explanation_days, decision_days, catalog_update_working_days, inbox_webhook, active)
                VALUES (%(id)s, %(name)s, %(jurisdiction)s, %(reply_working_days)s, %(negotiation_working_days)s,
                    %(explanation_days)s, %(decision_days)s, %(catalog_update_working_days)s, %(inbox_webhook)s, true)
                ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, jurisdiction = EXCLUDED.jurisdiction,
                    reply_working_days = EXCLUDED.reply_working_days,
                    negotiation_working_days = EXCLUDED.negotiation_working_days,
                    explanation_days = EXCLUDED.explanation_days, decision_days = EXCLUDED.decision_days,
                    catalog_update_working_days = EXCLUDED.catalog_update_working_days,
                    inbox_webhook = EXCLUDED.inbox_webhook, active = true, updated_at = now()
                """,
                {
                    "id": node.department_id,
                    "name": node.department_name,
                    "jurisdiction": node.jurisdiction,
                    "inbox_webhook": node.inbox_webhook,
                    **rules.model_dump(exclude={"name"}),
                },
            )
        cur = conn.execute(
            "UPDATE department SET active = false, updated_at = now() WHERE active AND NOT (id = ANY(%s))",
            ([n.department_id for n in inventory.nodes],),
        )
        return len(inventory.nodes), cur.rowcount


class Registry:
    """Answers 'is this department active?' from a snapshot at most ``ttl`` seconds old."""

    def __init__(self, pool: AsyncConnectionPool[Any], ttl: float = 5.0) -> None:
        self._pool = pool
        self._ttl = ttl
        self._active: frozenset[str] = frozenset()
        self._loaded_at = -1e9

    async def is_active(self, department: str) -> bool:
        if time.monotonic() - self._loaded_at > self._ttl or department not in self._active:
            await self.refresh()
        return department in self._active

    async def refresh(self) -> None:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT id FROM department WHERE active")
            self._active = frozenset(row[0] for row in await cur.fetchall())
        self._loaded_at = time.monotonic()
