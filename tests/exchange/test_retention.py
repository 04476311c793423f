"""Change-log retention: superseded versions leave the log after the retention period; the newest
version of every key, deletions included, stays, so a subscriber however far behind still reaches
the provider's state; heartbeats and the rows within the period are not touched."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from exchange.retention import compact
from tests.support.exchange import RunningExchange, start_exchange
from tests.support.postgres import PostgresServer
from tests.support.samples import (
    PURPOSE,
    batch,
    credit_code,
    delete,
    licence_scan_entry,
    population_entry,
    unique_code,
    upsert,
)

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def own(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningExchange]:
    running = start_exchange(pg, tmp_path_factory.mktemp("retention"), "exchange_retention")
    yield running
    running.stop()


def _push(exchange: RunningExchange, code: str, *changes: dict[str, Any], beat: int | None = None) -> None:
    body = batch(*changes)
    if beat is not None:
        body["heartbeat"] = {"seq": beat, "source_time": "2026-11-01T08:00:00+08:00"}
    answer = exchange.client("zjg-gaj").post(f"/v1/resources/{code}/changes", json=body)
    assert answer.status_code == 200, answer.text


def _state(exchange: RunningExchange, code: str, after: int = 0) -> tuple[dict[str, Any], int]:
    """What a subscriber holds after reading on from ``after``: key -> row, and the pages' rows."""
    client = exchange.client("zjg-wjw")
    held: dict[str, Any] = {}
    read = 0
    while True:
        page = client.get(f"/v1/resources/{code}/changes", params={"purpose": PURPOSE, "after": after}).json()
        for change in page["changes"]:
            read += 1
            if change["op"] == "upsert":
                held[change["key"]] = change["row"]
            elif change["op"] == "delete":
                held.pop(change["key"], None)
        after = page["next_after"]
        if not page["has_more"]:
            return held, read


def _log(exchange: RunningExchange, code: str) -> list[tuple[str, str | None]]:
    with psycopg.connect(exchange.database_url) as conn:
        rows = conn.execute(
            "SELECT c.op, c.key FROM change c JOIN resource r ON r.id = c.resource_id WHERE r.code = %s ORDER BY c.seq",
            (code,),
        ).fetchall()
    return [(str(op), key) for op, key in rows]


def test_superseded_versions_go_after_the_retention_and_every_subscriber_still_converges(
    own: RunningExchange,
) -> None:
    code = unique_code("zjg-gaj")
    assert own.client("zjg-gaj").post("/v1/resources", json=population_entry(code)).status_code == 201
    assert (
        own.client("zjg-wjw").post(f"/v1/resources/{code}/subscriptions", json={"purpose": PURPOSE}).status_code == 201
    )
    for version in range(1, 6):  # one key, five versions
        _push(own, code, upsert(1, version, name=f"第{version}版"), beat=version)
    _push(own, code, upsert(2, 1), upsert(3, 1))
    _push(own, code, delete(2, 2))  # a deletion: its tombstone must stay
    middle_cursor = 3
    before, _ = _state(own, code)
    from_middle, _ = _state(own, code, after=middle_cursor)
    logged = _log(own, code)

    start = dt.datetime.now(dt.UTC)
    assert compact(own.database_url, 30 * DAY, now=start) is not None  # the first round only marks
    assert _log(own, code) == logged, "nothing is older than the retention yet"
    _push(own, code, upsert(3, 2))  # after the mark: a newer version of key 3
    _push(own, code, upsert(4, 1))  # and two versions of key 4, both within the period
    _push(own, code, upsert(4, 2))
    done = compact(own.database_url, 30 * DAY, now=start + 31 * DAY)
    assert done is not None

    after_compaction = _log(own, code)
    data = [entry for entry in after_compaction if entry[0] != "h"]
    # Key 1: only its newest version; key 2: only its deletion; key 3: its version after the mark
    # (the old one was replaced); key 4: both versions, the period has not passed over them.
    key = {n: upsert(n, 1)["key"] for n in (1, 2, 3, 4)}
    assert data == [("u", key[1]), ("d", key[2]), ("u", key[3]), ("u", key[4]), ("u", key[4])], after_compaction
    assert sum(1 for op, _ in after_compaction if op == "h") == 5, "heartbeats are not this compactor's"
    assert done.removed == 6  # four old versions of key 1, the upsert of key 2, the first of key 3
    assert done.through[code] == len(logged)

    now_from_zero, read = _state(own, code)
    assert now_from_zero.keys() == {key[1], key[3], key[4]}
    assert now_from_zero[key[1]] == before[key[1]], "the newest version of key 1, as before"
    assert read < len(logged) + 1, "a new subscriber reads fewer changes"
    caught_up, _ = _state(own, code, after=middle_cursor)
    assert caught_up.keys() == (from_middle.keys() | {key[3], key[4]}) - {key[2]}
    assert key[2] not in caught_up, "the deletion reached a subscriber that was behind"

    again = compact(own.database_url, 30 * DAY, now=start + 31 * DAY)
    assert again is not None
    assert again.removed == 0
    assert _log(own, code) == after_compaction


def test_a_round_waits_for_another_compactor(own: RunningExchange) -> None:
    with psycopg.connect(own.database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (0x6764_7802,))
        assert compact(own.database_url, 30 * DAY) is None
        holder.execute("SELECT pg_advisory_unlock(%s)", (0x6764_7802,))
    assert compact(own.database_url, 30 * DAY) is not None


def test_the_command_compacts_once_and_says_what_it_did(own: RunningExchange, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gdx.cli import app

    result = CliRunner().invoke(
        app, ["exchange", "compact", "--retention-days", "30", "--database-url", own.database_url]
    )
    assert result.exit_code == 0, result.output
    assert "superseded versions removed" in result.output


def test_files_no_change_names_go_with_their_changes(own: RunningExchange) -> None:
    code = unique_code("zjg-scjgj", "licence-scan")
    provider = own.client("zjg-scjgj")
    assert provider.post("/v1/resources", json=licence_scan_entry(code, "unconditional")).status_code == 201
    scans = {name: b"%PDF-1.4\n" + name.encode() * 2000 for name in ("old", "new", "other", "never named")}
    digest = {name: hashlib.sha256(data).hexdigest() for name, data in scans.items()}
    for data in scans.values():
        assert provider.put(f"/v1/resources/{code}/files/{hashlib.sha256(data).hexdigest()}", content=data).is_success

    def record(n: int, version: int, scan: str) -> dict[str, Any]:
        row = {"credit_code": credit_code(n), "licence_no": f"L{n}", "issued": None, "scan": digest[scan]}
        return {"op": "upsert", "key": row["credit_code"], "row": row, "source_version": version,
                "source_commit_time": "2026-11-01T08:00:00+08:00"}  # fmt: skip

    for change in (record(1, 1, "old"), record(1, 2, "new"), record(2, 1, "other")):
        assert provider.post(f"/v1/resources/{code}/changes", json=batch(change)).status_code == 200
    start = dt.datetime.now(dt.UTC)
    assert compact(own.database_url, 30 * DAY, now=start) is not None
    done = compact(own.database_url, 30 * DAY, now=start + 31 * DAY)
    assert done is not None

    # The replaced scan went with the version that named it, and the one never named went too.
    assert done.files_unlinked == 2
    assert sorted(done.files_deleted) == sorted((digest[name], "postgresql") for name in ("old", "never named"))
    for name, status in (("old", 404), ("never named", 404), ("new", 200), ("other", 200)):
        assert provider.get(f"/v1/resources/{code}/files/{digest[name]}").status_code == status, name
    with psycopg.connect(own.database_url) as conn:
        chunks = conn.execute("SELECT count(*) FROM file_chunk WHERE sha256 = %s", (digest["old"],)).fetchone()
    assert chunks == (0,)
