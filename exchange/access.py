"""May this caller read this resource, for this purpose, by this method? And which fields?"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from exchange import grants
from exchange.deps import refused
from exchange.errors import ApiError, forbidden
from exchange.identity import Principal
from exchange.resources import StoredResource
from gdx.protocol import ShareMethod


async def granted_fields(
    pool: AsyncConnectionPool[Any],
    who: Principal,
    stored: StoredResource,
    purpose: str,
    method: ShareMethod,
    action: str,
) -> list[str] | None:
    """The fields the caller may read (None: all), or raise 403 after auditing the refusal.

    A grant is for one purpose (ZJG Art. 21: data serve only the purpose they were granted
    for), so the purpose stated now must be that of a grant.
    """
    if who.is_department and who.name == stored.provider:
        return None
    reason = None
    if not who.is_department:
        reason = f"the {who.role.value} role does not read department data"
    elif method not in stored.spec.share_methods:
        offered = ", ".join(m.value for m in stored.spec.share_methods)
        reason = f"resource {stored.code!r} is not shared by {method.value} (offered: {offered})"
    else:
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(grants.SELECT + " WHERE g.resource_id = %s AND g.consumer = %s", (stored.id, who.name))
            held = [grants.from_row(row) for row in await cur.fetchall()]
        grant = next((g for g in held if g.purpose == purpose), None)
        if grant is not None:
            ended = grant.ended_because()
            if ended is None:
                return list(grant.fields) if grant.fields is not None else None
            error = ApiError(403, f"grant_{grant.status.value}", ended)
            raise await refused(pool, who, action, error, resource=stored.code, purpose=purpose,
                                scope={"grant": grant.id})  # fmt: skip
        if held:
            purposes = "; ".join(repr(g.purpose) for g in held)
            reason = (
                f"you hold no grant on {stored.code!r} for the purpose {purpose!r} (your grants' purposes: "
                f"{purposes}); a new purpose needs a new request"
            )
        else:
            reason = f"you hold no grant on {stored.code!r}; subscribe or file a request first"
    raise await refused(pool, who, action, forbidden(reason), resource=stored.code, purpose=purpose)


def columns(stored: StoredResource, fields: list[str] | None) -> list[str]:
    """The columns a caller reads: the key's field, then the granted ones in the catalog's order."""
    key_field = stored.spec.primary_key
    granted = [f.name for f in stored.spec.fields if f.name != key_field and (fields is None or f.name in fields)]
    return [key_field, *granted]


def project(row: dict[str, Any] | None, fields: list[str] | None, key_field: str) -> dict[str, Any] | None:
    """Only the granted fields of a row; the primary key always, since it names the row."""
    if row is None or fields is None:
        return row
    return {name: row[name] for name in (key_field, *fields) if name in row}
