"""The change log: batches applied whole or not at all, idempotent, numbered per resource."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.types.json import Jsonb

from exchange.change_log import HEARTBEATS_KEPT_FOR
from gdx.protocol import MAX_BATCH_CHANGES, ResourceSpec
from tests.support.exchange import RunningExchange
from tests.support.samples import batch, delete, person, population_entry, resident_id, unique_code, upsert

PURPOSE = "城乡居民医保参保登记核验"


@pytest.fixture
def resource(exchange: RunningExchange) -> str:
    code = unique_code("zjg-gaj")
    assert exchange.client("zjg-gaj").post("/v1/resources", json=population_entry(code)).status_code == 201
    subscribed = exchange.client("zjg-wjw").post(f"/v1/resources/{code}/subscriptions", json={"purpose": PURPOSE})
    assert subscribed.status_code == 201
    return code


def pull_all(exchange: RunningExchange, code: str, who: str = "zjg-wjw", after: int = 0) -> list[dict]:
    changes: list[dict] = []
    while True:
        page = (
            exchange.client(who)
            .get(f"/v1/resources/{code}/changes", params={"after": after, "purpose": PURPOSE, "limit": 7})
            .json()
        )
        changes += page["changes"]
        after = page["next_after"]
        if not page["has_more"]:
            return changes


def test_changes_get_gapless_sequence_numbers_and_reach_the_consumer(exchange: RunningExchange, resource: str) -> None:
    gaj = exchange.client("zjg-gaj")
    receipt = gaj.post(f"/v1/resources/{resource}/changes", json=batch(*(upsert(n, 1) for n in range(20)))).json()
    assert (receipt["applied"], receipt["first_seq"], receipt["last_seq"]) == (20, 1, 20)
    receipt = gaj.post(f"/v1/resources/{resource}/changes", json=batch(upsert(3, 2, name="改名"), delete(4, 2))).json()
    assert (receipt["first_seq"], receipt["last_seq"]) == (21, 22)

    changes = pull_all(exchange, resource)
    assert [c["seq"] for c in changes] == list(range(1, 23))
    assert changes[20]["row"]["name"] == "改名"
    assert changes[21] == {**changes[21], "op": "delete", "key": resident_id(4), "row": None}


def test_a_repeated_batch_changes_nothing(exchange: RunningExchange, resource: str) -> None:
    gaj = exchange.client("zjg-gaj")
    body = batch(*(upsert(n, 1) for n in range(5)))
    first = gaj.post(f"/v1/resources/{resource}/changes", json=body).json()
    second = gaj.post(f"/v1/resources/{resource}/changes", json=body).json()
    assert second["duplicate"] is True
    assert first["duplicate"] is False
    assert (second["first_seq"], second["last_seq"]) == (first["first_seq"], first["last_seq"])
    assert len(pull_all(exchange, resource)) == 5


def test_stale_and_superseded_changes_are_skipped(exchange: RunningExchange, resource: str) -> None:
    gaj = exchange.client("zjg-gaj")
    # A row updated many times in one batch: only its newest version is logged.
    many = batch(*(upsert(1, v, income=float(v)) for v in range(1, 51)))
    assert gaj.post(f"/v1/resources/{resource}/changes", json=many).json()["applied"] == 1
    # An old version arriving late (a new batch id) is stale.
    late = gaj.post(f"/v1/resources/{resource}/changes", json=batch(upsert(1, 7, income=7.0))).json()
    assert (late["applied"], late["stale"]) == (0, 1)
    # Deleted, then inserted again.
    gaj.post(f"/v1/resources/{resource}/changes", json=batch(delete(1, 60)))
    gaj.post(f"/v1/resources/{resource}/changes", json=batch(upsert(1, 61, name="回来了")))
    changes = pull_all(exchange, resource)
    assert [(c["op"], c["source_version"]) for c in changes] == [("upsert", 50), ("delete", 60), ("upsert", 61)]
    record = exchange.client("zjg-wjw").get(
        f"/v1/resources/{resource}/records/{resident_id(1)}", params={"purpose": PURPOSE}
    )
    assert record.json()["row"]["name"] == "回来了"


def test_a_bad_check_digit_rejects_the_whole_batch_naming_the_record(exchange: RunningExchange, resource: str) -> None:
    bad = upsert(3, 1)
    bad["key"] = bad["row"]["id_number"] = resident_id(3)[:-1] + ("0" if resident_id(3)[-1] != "0" else "1")
    response = exchange.client("zjg-gaj").post(
        f"/v1/resources/{resource}/changes", json=batch(upsert(1, 1), upsert(2, 1), bad, upsert(4, 1))
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_changes"
    assert body["details"][0]["index"] == 2
    assert "resident_id" in body["details"][0]["problem"]
    assert "nothing in this batch was applied" in body["message"]
    assert pull_all(exchange, resource) == []


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"household_size": "three"}, "field 'household_size': expected an integer"),
        ({"birth_date": "1980-13-40"}, "expected a date"),
        ({"updated_at": "2026-11-01T08:00:00"}, "has no UTC offset"),
        ({"name": None}, "field 'name' is required"),
        ({"shoe_size": 42}, "unknown field(s) shoe_size"),
    ],
)
def test_rows_must_fit_the_schema(exchange: RunningExchange, resource: str, row: dict, problem: str) -> None:
    response = exchange.client("zjg-gaj").post(f"/v1/resources/{resource}/changes", json=batch(upsert(1, 1, **row)))
    assert response.status_code == 422
    assert problem in response.json()["details"][0]["problem"]


def test_malformed_json_and_oversized_batches(exchange: RunningExchange, resource: str) -> None:
    gaj = exchange.client("zjg-gaj")
    malformed = gaj.post(
        f"/v1/resources/{resource}/changes", content=b'{"batch_id": ', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"] == "malformed_json"
    as_text = gaj.post(
        f"/v1/resources/{resource}/changes",
        content=json.dumps(batch(upsert(1, 1))),
        headers={"content-type": "text/plain"},
    )
    assert as_text.status_code == 422
    assert "must be JSON" in as_text.json()["message"]
    change = upsert(1, 1)
    huge = {"batch_id": str(uuid.uuid4()), "changes": [change] * (MAX_BATCH_CHANGES + 1)}
    too_big = gaj.post(f"/v1/resources/{resource}/changes", json=huge)
    assert too_big.status_code == 413
    assert str(MAX_BATCH_CHANGES) in too_big.json()["message"]


def test_only_the_provider_pushes_and_unknown_resources_are_named(exchange: RunningExchange, resource: str) -> None:
    foreign = exchange.client("zjg-wjw").post(f"/v1/resources/{resource}/changes", json=batch(upsert(1, 1)))
    assert foreign.status_code == 403
    assert "provided by zjg-gaj" in foreign.json()["message"]
    missing = exchange.client("zjg-gaj").post("/v1/resources/zjg-gaj.nope/changes", json=batch(upsert(1, 1)))
    assert missing.status_code == 404
    assert "zjg-gaj.nope" in missing.json()["message"]


def test_consumers_read_only_granted_resources_and_the_refusal_is_audited(
    exchange: RunningExchange, resource: str
) -> None:
    exchange.client("zjg-gaj").post(f"/v1/resources/{resource}/changes", json=batch(upsert(1, 1)))
    scjgj = exchange.client("zjg-scjgj")
    refused = scjgj.get(f"/v1/resources/{resource}/changes", params={"purpose": PURPOSE})
    assert refused.status_code == 403
    wrong_purpose = exchange.client("zjg-wjw").get(f"/v1/resources/{resource}/changes", params={"purpose": "营销"})
    assert wrong_purpose.status_code == 403
    assert "new purpose needs a new request" in wrong_purpose.json()["message"]
    entries = exchange.client("bob").get("/v1/audit", params={"resource": resource, "action": "pull"}).json()
    assert [(e["actor"], e["outcome"]) for e in entries] == [("zjg-scjgj", "refused"), ("zjg-wjw", "refused")]


def test_concurrent_batches_interleave_without_gaps(exchange: RunningExchange, resource: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def push(start: int) -> int:
        body = batch(*(upsert(n, 1) for n in range(start, start + 50)))
        response = exchange.client("zjg-gaj", headers={"x-test": str(start)}).post(
            f"/v1/resources/{resource}/changes", json=body
        )
        return int(response.json()["applied"])

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(push, range(0, 800, 50))) == 800
    seqs = [c["seq"] for c in pull_all(exchange, resource)]
    assert seqs == list(range(1, 801))
    with psycopg.connect(exchange.database_url) as conn:
        row = conn.execute("SELECT last_seq FROM resource WHERE code = %s", (resource,)).fetchone()
    assert row == (800,)


def test_concurrent_batches_of_the_same_keys_keep_only_newer_versions(exchange: RunningExchange, resource: str) -> None:
    # Batches are checked and staged outside the resource's lock; under it, only a version newer
    # than the key's current one may be logged, whatever order the batches get the lock in.
    from concurrent.futures import ThreadPoolExecutor

    def push(version: int) -> int:
        body = batch(*(upsert(n, version, household_size=version) for n in range(40)))
        response = exchange.client("zjg-gaj", headers={"x-test": str(version)}).post(
            f"/v1/resources/{resource}/changes", json=body
        )
        assert response.status_code == 200, response.text
        return int(response.json()["applied"])

    with ThreadPoolExecutor(8) as pool:
        applied = sum(pool.map(push, range(1, 9)))
    changes = pull_all(exchange, resource)
    assert [c["seq"] for c in changes] == list(range(1, applied + 1))
    versions: dict[str, list[int]] = {}
    for change in changes:
        versions.setdefault(change["key"], []).append(change["source_version"])
    assert len(versions) == 40
    for logged in versions.values():
        assert logged == sorted(set(logged)), "a version no newer than the key's current one was logged"
        assert logged[-1] == 8
    assert all(c["row"]["household_size"] == c["source_version"] for c in changes)


def test_person_fixture_rows_are_valid() -> None:
    from stdnum.cn import ric

    assert all(ric.is_valid(person(n)["id_number"]) for n in range(100))


def test_nul_characters_are_refused_not_a_server_error(exchange: RunningExchange, resource: str) -> None:
    # Found by the fuzzer: PostgreSQL cannot store NUL in text; the caller gets a 422 naming it.
    response = exchange.client("zjg-gaj").post(
        f"/v1/resources/{resource}/changes", json=batch(upsert(1, 1, name="a\x00b"))
    )
    assert response.status_code == 422
    assert "NUL" in response.json()["details"][0]["problem"]
    listing = exchange.client("zjg-gaj").get("/v1/resources", params={"provider": "a\x00b"})
    assert listing.status_code == 422
    subscribe = exchange.client("zjg-wjw").post(f"/v1/resources/{resource}/subscriptions", json={"purpose": "x\x00y"})
    assert subscribe.status_code == 422
    assert subscribe.json()["error"] == "invalid_value"


def test_heartbeats_travel_the_change_log_after_the_batch_they_close(exchange: RunningExchange, resource: str) -> None:
    gaj = exchange.client("zjg-gaj")
    beat = {"seq": 7, "source_time": "2026-11-22T10:00:00+08:00"}
    receipt = gaj.post(
        f"/v1/resources/{resource}/changes", json={**batch(upsert(1, 1), upsert(2, 1)), "heartbeat": beat}
    ).json()
    assert (receipt["applied"], receipt["last_seq"]) == (2, 2)
    idle = gaj.post(f"/v1/resources/{resource}/changes", json={**batch(), "heartbeat": {**beat, "seq": 8}})
    assert idle.status_code == 200, idle.text
    assert idle.json()["applied"] == 0

    changes = pull_all(exchange, resource)
    assert [(c["seq"], c["op"]) for c in changes] == [(1, "upsert"), (2, "upsert"), (3, "heartbeat"), (4, "heartbeat")]
    assert changes[2]["heartbeat"]["seq"] == 7
    assert changes[2]["key"] is None
    assert changes[2]["row"] is None
    # the next data change is numbered after the heartbeats
    receipt = gaj.post(f"/v1/resources/{resource}/changes", json=batch(upsert(3, 1))).json()
    assert receipt["first_seq"] == 5

    with psycopg.connect(exchange.database_url) as conn:
        row = conn.execute("SELECT heartbeat_seq FROM resource WHERE code = %s", (resource,)).fetchone()
        pushes = conn.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'push' AND resource = %s", (resource,)
        ).fetchone()
    assert row == (8,)
    assert pushes == (2,), "a heartbeat-only push is not a data access and is not audited"


def test_an_empty_batch_without_heartbeat_is_refused(exchange: RunningExchange, resource: str) -> None:
    response = exchange.client("zjg-gaj").post(f"/v1/resources/{resource}/changes", json=batch())
    assert response.status_code == 422
    assert "changes, a heartbeat, or both" in response.text


def _figures(exchange: RunningExchange) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = exchange.client("carol").get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_requests_batches_and_changes_by_route_and_outcome(
    exchange: RunningExchange, resource: str
) -> None:
    route = "/v1/resources/{code}/changes"
    applied = ("gdx_exchange_requests_total", (("method", "POST"), ("route", route), ("status", "200")))
    refused = ("gdx_exchange_requests_total", (("method", "POST"), ("route", route), ("status", "422")))
    unmatched = ("gdx_exchange_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))
    timed = ("gdx_exchange_request_seconds_count", (("route", route),))
    changes = ("gdx_exchange_changes_total", (("result", "applied"),))
    before = _figures(exchange)

    gaj = exchange.client("zjg-gaj")
    assert gaj.post(f"/v1/resources/{resource}/changes", json=batch(upsert(1, 1), upsert(2, 1))).status_code == 200
    bad = batch(upsert(3, 1, household_size="many"))
    assert gaj.post(f"/v1/resources/{resource}/changes", json=bad).status_code == 422
    assert gaj.get("/v1/no-such-thing").status_code == 404

    after = _figures(exchange)
    grew = {name: after.get(name, 0) - before.get(name, 0) for name in (applied, refused, unmatched, timed, changes)}
    assert grew == {applied: 1, refused: 1, unmatched: 1, timed: 2, changes: 2}


def test_heartbeats_stay_in_the_change_log_for_a_period(exchange: RunningExchange, resource: str) -> None:
    gaj = exchange.client("zjg-gaj")
    gaj.post(f"/v1/resources/{resource}/changes", json=batch(upsert(1, 1))).raise_for_status()
    # Two idle hours, a heartbeat a minute, written straight into the log, and one beat dated a
    # day ahead (a clock since set back).
    beat_time = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
    with psycopg.connect(exchange.database_url) as conn:
        resource_id = conn.execute("SELECT id FROM resource WHERE code = %s", (resource,)).fetchone()[0]
        conn.execute(
            "INSERT INTO change (resource_id, seq, op, source_version, source_commit_time) "
            "SELECT %(r)s, 1 + n, 'h', n, %(t)s - (121 - n) * interval '1 minute' FROM generate_series(1, 120) AS n",
            {"r": resource_id, "t": beat_time},
        )
        conn.execute(
            "INSERT INTO change (resource_id, seq, op, source_version, source_commit_time) "
            "VALUES (%s, 122, 'h', 121, %s)",
            (resource_id, beat_time + dt.timedelta(days=1)),
        )
        conn.execute("UPDATE resource SET last_seq = 122 WHERE id = %s", (resource_id,))

    beat = {"seq": 122, "source_time": beat_time.isoformat()}
    gaj.post(f"/v1/resources/{resource}/changes", json={**batch(), "heartbeat": beat}).raise_for_status()

    with psycopg.connect(exchange.database_url) as conn:
        kept = conn.execute(
            "SELECT count(*), min(source_commit_time), max(source_version) FROM change "
            "WHERE resource_id = %s AND op = 'h'",
            (resource_id,),
        ).fetchone()
        data = conn.execute(
            "SELECT count(*) FROM change WHERE resource_id = %s AND op = 'u'", (resource_id,)
        ).fetchone()
    # The last hour's 60 beats before the new one, and the new one: the hour's edge stays.
    assert kept == (61, beat_time - HEARTBEATS_KEPT_FOR, 122)
    assert data == (1,)
    # A consumer still reads the data change and the heartbeats left, in order.
    changes = pull_all(exchange, resource)
    assert [c["op"] for c in changes] == ["upsert"] + ["heartbeat"] * 61
    assert changes[-1]["heartbeat"]["seq"] == 122


def test_reading_only_the_latest_changes_skips_superseded_ones_and_heartbeats(
    exchange: RunningExchange, resource: str
) -> None:
    gaj = exchange.client("zjg-gaj")
    beat = {"seq": 1, "source_time": "2026-11-22T10:00:00+08:00"}
    gaj.post(f"/v1/resources/{resource}/changes", json={**batch(upsert(1, 1), upsert(2, 1)), "heartbeat": beat})
    gaj.post(f"/v1/resources/{resource}/changes", json=batch(upsert(1, 2, name="改名"), delete(2, 2), upsert(3, 1)))

    everything = pull_all(exchange, resource)
    page = (
        exchange.client("zjg-wjw")
        .get(f"/v1/resources/{resource}/changes", params={"after": 0, "purpose": PURPOSE, "latest": True})
        .json()
    )
    assert len(everything) == 6
    latest = [(c["op"], c["key"], c["source_version"]) for c in page["changes"]]
    assert latest == [("upsert", resident_id(1), 2), ("delete", resident_id(2), 2), ("upsert", resident_id(3), 1)]
    assert page["changes"][0]["row"]["name"] == "改名"
    assert (page["next_after"], page["has_more"]) == (everything[-1]["seq"], False)


def _push_while_the_schema_changes(exchange: RunningExchange, code: str, body: dict, new_spec: dict) -> httpx.Response:
    """Push ``body`` while another writer holds the resource's lock, and have that writer
    change the schema before it lets go: the push was checked against the old schema."""
    with psycopg.connect(exchange.database_url) as conn:
        conn.execute("SELECT FROM resource WHERE code = %s FOR NO KEY UPDATE", (code,))
        with ThreadPoolExecutor(1) as pool:
            pushed = pool.submit(exchange.client("zjg-gaj").post, f"/v1/resources/{code}/changes", json=body)
            deadline = time.monotonic() + 20
            while not conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone()[0]:
                assert time.monotonic() < deadline, "the push never waited for the resource's lock"
                time.sleep(0.05)
            spec = ResourceSpec.model_validate(new_spec)
            conn.execute(
                "UPDATE resource SET spec = %s, schema_version = schema_version + 1 WHERE code = %s",
                (Jsonb(spec.model_dump(mode="json")), code),
            )
            conn.commit()
            return pushed.result(timeout=30)


def test_a_batch_checked_against_a_schema_replaced_meanwhile_is_checked_again(
    exchange: RunningExchange, resource: str
) -> None:
    # The new schema drops a field the batch's rows carry: refused, naming it, nothing applied.
    refused = _push_while_the_schema_changes(
        exchange, resource, batch(upsert(1, 1), upsert(2, 1)), population_entry(resource, leave_out=["remark"])
    )
    assert refused.status_code == 422, refused.text
    assert "unknown field(s) remark" in refused.json()["details"][0]["problem"]
    assert pull_all(exchange, resource) == []
    # The next schema adds a field: the rows still fit it, and are applied under it.
    wider = population_entry(resource, leave_out=["remark"])
    wider["fields"].append({"name": "district", "type": "string"})
    rows = [upsert(n, 1) for n in (3, 4)]
    for change in rows:
        del change["row"]["remark"]
    applied = _push_while_the_schema_changes(exchange, resource, batch(*rows), wider)
    assert applied.status_code == 200, applied.text
    assert (applied.json()["applied"], applied.json()["first_seq"]) == (2, 1)
    assert [c["key"] for c in pull_all(exchange, resource)] == [rows[0]["key"], rows[1]["key"]]


def test_a_value_the_database_cannot_take_is_refused_and_the_next_batch_goes_through(
    exchange: RunningExchange, resource: str
) -> None:
    # 2**63 passes the protocol models (any non-negative integer) but not PostgreSQL's bigint.
    gaj = exchange.client("zjg-gaj")
    for _ in range(3):  # more times than the pool has spare connections
        too_new = gaj.post(f"/v1/resources/{resource}/changes", json=batch(upsert(1, 2**63)))
        assert too_new.status_code == 422, too_new.text
        assert too_new.json()["error"] == "invalid_value"
    assert gaj.post(f"/v1/resources/{resource}/changes", json=batch(upsert(1, 1))).json()["applied"] == 1
    assert len(pull_all(exchange, resource)) == 1
