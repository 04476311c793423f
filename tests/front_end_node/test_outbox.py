"""The outbox's batches: fixed before sending, resent whole after a crash, and converted when
an earlier agent had marked the rows of a batch in the outbox itself; its rows following the
catalog's fields."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest

from front_end_node import store
from gdx.protocol import ResourceSpec
from tests.support.aio import run
from tests.support.postgres import PostgresServer
from tests.support.samples import person, population_entry

CODE = "zjg-gaj.population"


def test_a_fixed_batch_is_sent_again_whole_and_an_earlier_agents_batch_is_converted(pg: PostgresServer) -> None:
    url = pg.create_database(f"outbox_{uuid.uuid4().hex[:8]}")
    now = dt.datetime.now(dt.UTC)

    async def scenario() -> None:
        conn = await store.connect(url)
        async with conn:
            await store.migrate(conn)
            await conn.execute(
                "INSERT INTO gdx.outbox (resource, op, key, row, source_version, source_commit_time) "
                "SELECT %s, 'u', n::text, jsonb_build_object('n', n), 1, %s FROM generate_series(1, 10) n",
                (CODE, now),
            )
            first = await store.next_batch(conn, CODE, 4)
            assert first is not None
            assert [r[2] for r in first.rows] == ["1", "2", "3", "4"]
            again = await store.next_batch(conn, CODE, 4)  # not acknowledged: the same batch
            assert again is not None
            assert (again.batch_id, again.ids) == (first.batch_id, first.ids)
            await store.acknowledge(conn, CODE, first, None)
            second = await store.next_batch(conn, CODE, 4)
            assert second is not None
            assert second.batch_id != first.batch_id
            assert [r[2] for r in second.rows] == ["5", "6", "7", "8"]

            # An earlier agent fixed a batch by writing its id into the outbox rows, then stopped.
            await conn.execute("DELETE FROM gdx.push_batch")
            legacy = uuid.uuid4()
            await conn.execute("UPDATE gdx.outbox SET batch_id = %s WHERE key IN ('6', '7')", (legacy,))
            await store.migrate(conn)
            resent = await store.next_batch(conn, CODE, 4)
            assert resent is not None
            assert resent.batch_id == legacy
            assert [r[2] for r in resent.rows] == ["6", "7"]
            cur = await conn.execute("SELECT count(*) FROM gdx.outbox WHERE batch_id IS NOT NULL")
            assert await cur.fetchone() == (0,)
            await store.acknowledge(conn, CODE, resent, None)
            rest = await store.next_batch(conn, CODE, 10)
            assert rest is not None
            assert [r[2] for r in rest.rows] == ["5", "8", "9", "10"]

    run(scenario())
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM gdx.push_batch").fetchone() == (1,)


def test_the_rows_follow_the_catalogs_fields_and_rows_of_old_fields_are_not_recorded(pg: PostgresServer) -> None:
    url = pg.create_database(f"outbox_{uuid.uuid4().hex[:8]}")
    now = dt.datetime.now(dt.UTC)
    first = ResourceSpec.model_validate(population_entry(CODE, leave_out=("income",)))
    second = ResourceSpec.model_validate(population_entry(CODE, leave_out=("address",)))

    async def scenario() -> None:
        conn = await store.connect(url)
        async with conn:
            await store.migrate(conn)
            assert await store.follow_fields(conn, CODE, first) is None, "the first record is no change"
            async with conn.transaction():
                rows = [(person(n), now) for n in range(3)]
                for row, _ in rows:
                    del row["income"]
                await store.record_rows(conn, CODE, first.row_schema(), rows, store.field_record(first))
                await conn.execute(
                    "UPDATE gdx.extract_state SET watermark = '{\"int\": 7}' WHERE resource = %s", (CODE,)
                )

            change = await store.follow_fields(conn, CODE, second)
            assert change == store.FieldsChange(added=["income"], dropped=["address"])
            cur = await conn.execute("SELECT count(*) FILTER (WHERE row ? 'address'), count(*) FROM gdx.outbox")
            assert await cur.fetchone() == (0, 3), "waiting rows lost the dropped field, and stayed"
            cur = await conn.execute("SELECT watermark FROM gdx.extract_state WHERE resource = %s", (CODE,))
            assert await cur.fetchone() == (None,), "a field added: the table is read again"
            assert await store.follow_fields(conn, CODE, second) is None
            with pytest.raises(store.FieldsChanged):  # an extractor of the old fields is not heard
                await store.save_watermark(conn, CODE, {"int": 9}, store.field_record(first))
            await store.save_watermark(conn, CODE, {"int": 1}, store.field_record(second))

            # Rows read with the fields of before are not recorded, and nothing of them stays.
            with pytest.raises(store.FieldsChanged):
                async with conn.transaction():
                    await store.record_rows(
                        conn, CODE, first.row_schema(), [(rows[0][0], now)], store.field_record(first)
                    )
            cur = await conn.execute("SELECT count(*) FROM gdx.outbox")
            assert await cur.fetchone() == (3,)

    run(scenario())
