"""Does the published table still match its catalog entry? (ZJG Art. 12: the catalog follows a
change of the data within 3 working days; Ningxia Art. 8, Wushen Art. 7: 15.)

At each catalog check the node compares the table's columns with the entry's fields and with the
columns the table had when the node first saw that catalog version: a field the table lacks, or
a column added, dropped or retyped since, is a drift. The node reports each new finding to the
exchange, which opens a catalog-update item with its deadline; a report that all matches again
closes it, and so does the provider's next catalog version (a new baseline).

Columns the table had from the start and the entry leaves out (not shared) are no drift.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import structlog

from front_end_node import store
from front_end_node.exchange_client import ExchangeClient
from front_end_node.sources import Source
from gdx.protocol import Drift, ResourceSpec

log = structlog.get_logger("gdx.node")


def compare(spec: ResourceSpec, version: int, baseline: dict[str, str], now: dict[str, str]) -> Drift:
    return Drift(
        schema_version=version,
        missing=[f.name for f in spec.fields if f.name not in now],
        added=sorted(set(now) - set(baseline)),
        dropped=sorted(set(baseline) - set(now)),
        retyped=sorted(c for c in set(now) & set(baseline) if now[c] != baseline[c]),
    )


async def check(
    conn: store.Conn, client: ExchangeClient, source: Source, code: str, table: str, spec: ResourceSpec, version: int
) -> Drift | None:
    """Compare, and report a finding that differs from the last one reported; the drift found."""
    now = await asyncio.to_thread(source.columns, table)
    if not now:
        return None  # the extraction says what is wrong with a table it cannot see
    cur = await conn.execute(
        "SELECT schema_version, columns, reported FROM gdx.source_columns WHERE resource = %s", (code,)
    )
    row = await cur.fetchone()
    if row is None or row[0] != version:
        baseline, reported = now, None
        await conn.execute(
            "INSERT INTO gdx.source_columns (resource, schema_version, columns) VALUES (%s, %s, %s) "
            "ON CONFLICT (resource) DO UPDATE SET schema_version = EXCLUDED.schema_version, "
            "columns = EXCLUDED.columns, reported = NULL",
            (code, version, orjson.dumps(now).decode()),
        )
    else:
        baseline, reported = dict(row[1]), row[2]
    found = compare(spec, version, baseline, now)
    as_json: dict[str, Any] = found.model_dump(mode="json")
    # A first look that finds nothing has nothing to tell; any change of finding is told.
    if as_json == reported or (reported is None and found.empty()):
        return found
    await client.report_drift(code, found)
    await conn.execute(
        "UPDATE gdx.source_columns SET reported = %s WHERE resource = %s", (orjson.dumps(as_json).decode(), code)
    )
    if found.empty():
        log.info("the published table matches its catalog entry again", resource=code, table=table)
    else:
        log.warning(
            "the published table differs from its catalog entry: reported to the exchange, which expects a "
            "new catalog version by the deadline",
            resource=code, table=table, missing=found.missing, added=found.added, dropped=found.dropped,
            retyped=found.retyped,
        )  # fmt: skip
    return found
