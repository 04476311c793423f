"""The resource catalog (资源目录): providers register and update entries; everyone reads it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter
from psycopg.types.json import Jsonb

from exchange import audit, catalog_items, grants, resources
from exchange.deps import Calendar, Pool
from exchange.errors import conflict, forbidden
from exchange.identity import Anyone, Department
from exchange.strict_json import StrictJsonRoute
from gdx.protocol import CatalogCause, CatalogItem, DepartmentId, Drift, Resource, ResourceSpec, Review

router = APIRouter(prefix="/v1/resources", tags=["catalog"], route_class=StrictJsonRoute)


def _spec_json(spec: ResourceSpec) -> Jsonb:
    return Jsonb(spec.model_dump(mode="json"))


@router.post("", status_code=201, response_model=Resource, summary="Register a resource in the catalog")
async def register(spec: ResourceSpec, who: Department, pool: Pool) -> Resource:
    if not spec.code.startswith(f"{who.name}."):
        raise forbidden(f"your resource codes must start with your department id: {who.name}.<name>")
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            """
            INSERT INTO resource (code, provider, spec, share_type) VALUES (%s, %s, %s, %s)
            ON CONFLICT (code) DO NOTHING RETURNING id
            """,
            (spec.code, who.name, _spec_json(spec), spec.share_type.value),
        )
        row = await cur.fetchone()
        if row is None:
            raise conflict(f"resource {spec.code!r} is already in the catalog; update it with PUT")
        await conn.execute(
            "INSERT INTO resource_version (resource_id, version, spec, changed_by) VALUES (%s, 1, %s, %s)",
            (row[0], _spec_json(spec), who.name),
        )
        await audit.record(conn, who, "catalog.register", resource=spec.code, scope={"version": 1})
        await catalog_items.followed(conn, who, row[0], who.name, 1)
        stored = await resources.load(conn, spec.code)
    return stored.public()


@router.put("/{code}", response_model=Resource, summary="Update a catalog entry (a new schema version)")
async def update(code: str, spec: ResourceSpec, who: Department, pool: Pool) -> Resource:
    if spec.code != code:
        raise conflict(f"the body's code {spec.code!r} differs from the URL's {code!r}; codes never change")
    async with pool.connection() as conn, conn.transaction():
        current = await resources.load(conn, code, for_update=True)
        if current.provider != who.name:
            raise forbidden(f"resource {code!r} is provided by {current.provider}, not by you")
        old = current.spec
        if (old.primary_key, old.key_kind) != (spec.primary_key, spec.key_kind):
            raise conflict(
                "the primary key and key kind of a resource cannot change (its change log is keyed by them); "
                "register a new resource instead"
            )
        if spec == old:
            return current.public()
        version = current.schema_version + 1
        await conn.execute(
            """
            UPDATE resource SET spec = %s, share_type = %s, schema_version = %s, catalog_updated_at = now()
            WHERE id = %s
            """,
            (_spec_json(spec), spec.share_type.value, version, current.id),
        )
        await conn.execute(
            "INSERT INTO resource_version (resource_id, version, spec, changed_by) VALUES (%s, %s, %s, %s)",
            (current.id, version, _spec_json(spec), who.name),
        )
        await audit.record(conn, who, "catalog.update", resource=code, scope={"version": version})
        if spec.share_type is not old.share_type:
            await grants.reclassified(conn, who, current.id, old.share_type, spec.share_type, version)
        await catalog_items.followed(conn, who, current.id, who.name, version)
        stored = await resources.load(conn, code)
    return stored.public()


@router.post(
    "/{code}/drift",
    response_model=CatalogItem | None,
    summary="Report how the published table differs from the entry (the provider's node)",
)
async def drift(code: str, body: Drift, who: Department, pool: Pool, calendar: Calendar) -> CatalogItem | None:
    """A drift opens a catalog-update item with the deadline of the provider's jurisdiction (or
    updates the open one); a report that the table matches again closes it. None: nothing open."""
    async with pool.connection() as conn, conn.transaction():
        current = await resources.load(conn, code, for_update=True)
        if current.provider != who.name:
            raise forbidden(f"resource {code!r} is provided by {current.provider}, not by you")
        if body.schema_version != current.schema_version:
            raise conflict(
                f"the drift was found against version {body.schema_version} of {code!r}; the catalog is at "
                f"version {current.schema_version}: compare again"
            )
        if body.empty():
            await catalog_items.close(
                conn, who, "i.cause = 'drift' AND i.resource_id = %(resource)s", {"resource": current.id},
                "the table matches the catalog entry again",
            )  # fmt: skip
            return None
        detail = body.model_dump(exclude={"schema_version"}) | {"schema_version": body.schema_version}
        return await catalog_items.open_item(
            conn, who, calendar, who.name, CatalogCause.DRIFT, detail, resource=(current.id, code)
        )


@router.post(
    "/{code}/review",
    response_model=Resource,
    summary="Record the yearly review of an entry that is still right (no new version)",
)
async def review(code: str, body: Review, who: Department, pool: Pool) -> Resource:
    """ZJG Art. 12: every entry is reviewed at least once a year. An entry that needs no change
    is confirmed here; the review deadline counts from this moment, as from an update."""
    async with pool.connection() as conn, conn.transaction():
        current = await resources.load(conn, code, for_update=True)
        if current.provider != who.name:
            raise forbidden(f"resource {code!r} is provided by {current.provider}, not by you")
        await conn.execute("UPDATE resource SET catalog_updated_at = now() WHERE id = %s", (current.id,))
        await audit.record(
            conn, who, "catalog.review", resource=code, scope={"version": current.schema_version, "note": body.note}
        )
        stored = await resources.load(conn, code)
    return stored.public()


@router.get("", response_model=list[Resource], summary="The catalog")
async def list_resources(_: Anyone, pool: Pool, provider: DepartmentId | None = None) -> list[Resource]:
    async with pool.connection() as conn:
        return [r.public() for r in await resources.load_all(conn, provider)]


@router.get("/{code}", response_model=Resource, summary="One catalog entry")
async def get_resource(code: str, _: Anyone, pool: Pool) -> Resource:
    async with pool.connection() as conn:
        return (await resources.load(conn, code)).public()


@router.get("/{code}/versions", summary="Every version of a catalog entry")
async def versions(code: str, _: Anyone, pool: Pool) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        stored = await resources.load(conn, code)
        cur = await conn.execute(
            "SELECT version, changed_by, changed_at, spec FROM resource_version WHERE resource_id = %s "
            "ORDER BY version",
            (stored.id,),
        )
        rows = await cur.fetchall()
    return [
        {"version": v, "changed_by": by, "changed_at": at.astimezone(dt.UTC).isoformat(), "spec": spec}
        for v, by, at, spec in rows
    ]
