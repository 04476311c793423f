"""The catalog entries of the node's resources, as the exchange has them, and the node's rows
kept in step with them.

A publication's rows are made with its catalog entry's fields. When the provider publishes a
schema version that adds or drops fields, the node follows it without a restart (see
store.follow_fields): it looks at the catalog every `catalog_check_interval_s`, and at once
when the exchange refuses rows.
"""

from __future__ import annotations

import structlog

from front_end_node import store
from front_end_node.errors import Waiting
from front_end_node.exchange_client import ExchangeClient, ExchangeError
from gdx.protocol import ResourceSpec

log = structlog.get_logger("gdx.node")

# How long a catalog check waits for the exchange when the node keeps an entry to go on with: a
# network cut must not hold extraction up for the client's whole timeout (30 s) at every check.
CHECK_WITH_KEPT_ENTRY_S = 3.0


async def resource_spec(conn: store.Conn, client: ExchangeClient, code: str, department: str) -> ResourceSpec:
    """The catalog entry from the exchange (kept in the front-end DB), or the kept one while
    the exchange is unreachable or slow to answer, so extraction goes on without it."""
    spec, _ = await entry(conn, client, code, department)
    return spec


async def entry(
    conn: store.Conn, client: ExchangeClient, code: str, department: str
) -> tuple[ResourceSpec, int | None]:
    """As resource_spec, with the entry's version: None when the kept entry stood in."""
    cached = await store.cached_spec(conn, code)
    try:
        resource = await client.resource(code, timeout_s=CHECK_WITH_KEPT_ENTRY_S if cached else None)
    except ExchangeError as exc:
        if not exc.retryable:
            raise Waiting(f"{code}: {exc}; register the resource in the exchange's catalog first") from None
        if cached is None:
            raise Waiting(f"{code}: the exchange has never been reached and no catalog entry is kept: {exc}") from None
        return cached, None
    if resource.provider != department:
        raise Waiting(f"{code} is provided by {resource.provider}, not by this node's department {department}")
    spec = ResourceSpec.model_validate(resource.model_dump(include=set(ResourceSpec.model_fields)))
    await store.cache_spec(conn, code, spec)
    return spec, resource.schema_version


async def follow(
    conn: store.Conn, client: ExchangeClient, code: str, department: str
) -> tuple[ResourceSpec, int | None]:
    """The catalog entry of a resource this node publishes (and its version, None when the kept
    entry stood in), with the node's rows of it made to follow its fields."""
    spec, version = await entry(conn, client, code, department)
    change = await store.follow_fields(conn, code, spec)
    if change is not None:
        log.warning(
            "the resource's fields changed; the node's rows follow the catalog",
            resource=code,
            added=change.added,
            dropped_from_waiting_rows=change.dropped,
            read_again=bool(change.added),
        )
    return spec, version
