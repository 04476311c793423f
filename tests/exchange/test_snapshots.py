"""GET /v1/resources/{code}/snapshot: a subscriber's first load, key range by key range."""

from __future__ import annotations

import csv
import io
from urllib.parse import unquote

from tests.support.exchange import RunningExchange
from tests.support.samples import PURPOSE, batch, delete, population_entry, resident_id, unique_code, upsert


def test_chunks_of_current_rows_with_granted_fields_and_the_position_they_are_at(exchange: RunningExchange) -> None:
    code = unique_code("zjg-gaj")
    gaj, wjw = exchange.client("zjg-gaj"), exchange.client("zjg-wjw")
    assert gaj.post("/v1/resources", json=population_entry(code, "conditional")).status_code == 201
    pushed = gaj.post(f"/v1/resources/{code}/changes", json=batch(*(upsert(n, 1) for n in range(25))))
    assert pushed.status_code == 200
    gaj.post(f"/v1/resources/{code}/changes", json=batch(delete(3, 2), delete(4, 2), upsert(5, 2, name="改名")))
    filed = wjw.post("/v1/requests", json={"resource": code, "purpose": PURPOSE, "fields": ["name", "birth_date"]})
    gaj.post(f"/v1/requests/{filed.json()['id']}/approve", json={})

    rows: list[list[str]] = []
    after = None
    seqs = []
    while True:
        params = {"purpose": PURPOSE, "limit": 10, **({"after_key": after} if after else {})}
        chunk = wjw.get(f"/v1/resources/{code}/snapshot", params=params)
        assert chunk.status_code == 200, chunk.text
        assert chunk.headers["content-encoding"] == "gzip"
        assert chunk.headers["x-gdx-columns"] == "id_number,name,birth_date"
        got = list(csv.reader(io.StringIO(chunk.text)))
        assert int(chunk.headers["x-gdx-rows"]) == len(got)
        rows += got
        seqs.append(int(chunk.headers["x-gdx-seq"]))
        if chunk.headers["x-gdx-more"] == "false":
            assert "x-gdx-last-key" not in chunk.headers
            break
        after = unquote(chunk.headers["x-gdx-last-key"])
        assert after == got[-1][0]
        if len(seqs) == 1:  # a change between two chunks: the later chunk is at a later position
            gaj.post(f"/v1/resources/{code}/changes", json=batch(upsert(24, 3, name="后来的")))
    assert [len(rows), seqs[0]] == [23, 28]
    assert seqs[1] == 29
    expected = {resident_id(n): f"居民{n}" for n in range(25) if n not in (3, 4)} | {resident_id(5): "改名"}
    expected[resident_id(24)] = "后来的" if resident_id(24) > rows[9][0] else "居民24"
    assert {r[0]: r[1] for r in rows} == expected
    assert [r[0] for r in rows] == sorted(expected)
    assert {r[2] for r in rows} == {"1980-05-17"}

    entries = exchange.client("bob").get("/v1/audit", params={"resource": code, "action": "snapshot"}).json()
    assert [e["scope"]["rows"] for e in entries] == [10, 10, 3]
    assert entries[0]["scope"]["fields"] == ["name", "birth_date"]
    assert entries[0]["purpose"] == PURPOSE


def test_a_snapshot_needs_the_grant_a_pull_needs(exchange: RunningExchange) -> None:
    code = unique_code("zjg-gaj")
    assert exchange.client("zjg-gaj").post("/v1/resources", json=population_entry(code)).status_code == 201
    refused = exchange.client("zjg-wjw").get(f"/v1/resources/{code}/snapshot", params={"purpose": PURPOSE})
    assert refused.status_code == 403
    assert "subscribe" in refused.json()["message"]
    entries = exchange.client("bob").get("/v1/audit", params={"resource": code, "action": "snapshot"}).json()
    assert [e["outcome"] for e in entries] == ["refused"]
    empty = exchange.client("zjg-gaj").get(f"/v1/resources/{code}/snapshot", params={"purpose": PURPOSE})
    assert empty.status_code == 200
    assert (empty.text, empty.headers["x-gdx-more"], empty.headers["x-gdx-seq"]) == ("", "false", "0")


def test_a_subscriber_waits_for_the_providers_full_load_then_loads_once(exchange: RunningExchange) -> None:
    code = unique_code("zjg-gaj")
    gaj, wjw = exchange.client("zjg-gaj"), exchange.client("zjg-wjw")
    assert gaj.post("/v1/resources", json=population_entry(code)).status_code == 201
    assert wjw.post(f"/v1/resources/{code}/subscriptions", json={"purpose": PURPOSE}).status_code == 201
    opened = gaj.post(f"/v1/resources/{code}/loads")
    assert opened.status_code == 201
    load = opened.json()
    assert gaj.post(f"/v1/resources/{code}/loads").json()["id"] == load["id"]  # resumed, not a second one
    assert wjw.post(f"/v1/resources/{code}/loads").status_code == 403
    gaj.post(f"/v1/resources/{code}/changes", json=batch(*(upsert(n, 1) for n in range(5))))
    gaj.post(f"/v1/resources/{code}/loads/{load['id']}", json={"rows": 5})

    waiting = wjw.get(f"/v1/resources/{code}/snapshot", params={"purpose": PURPOSE})
    assert waiting.status_code == 409
    assert waiting.json()["error"] == "load_in_progress"
    assert "5 rows sent" in waiting.json()["message"]
    own = gaj.get(f"/v1/resources/{code}/snapshot", params={"purpose": PURPOSE})
    assert own.status_code == 200  # the provider reads its own rows whenever it likes

    finished = gaj.post(f"/v1/resources/{code}/loads/{load['id']}", json={"rows": 5, "finished": True}).json()
    assert finished["position"] == 5
    assert finished["finished_at"] is not None
    assert gaj.post(f"/v1/resources/{code}/loads/{load['id']}", json={"rows": 6}).status_code == 404
    loaded = wjw.get(f"/v1/resources/{code}/snapshot", params={"purpose": PURPOSE})
    assert loaded.status_code == 200
    assert (loaded.headers["x-gdx-rows"], loaded.headers["x-gdx-seq"]) == ("5", "5")
    assert "x-gdx-heartbeat-seq" not in loaded.headers  # none sent yet
    beat = {"seq": 41, "source_time": "2026-12-07T08:00:00+08:00"}
    assert gaj.post(f"/v1/resources/{code}/changes", json={**batch(), "heartbeat": beat}).status_code == 200
    beaten = wjw.get(f"/v1/resources/{code}/snapshot", params={"purpose": PURPOSE})
    assert (beaten.headers["x-gdx-seq"], beaten.headers["x-gdx-heartbeat-seq"]) == ("6", "41")
    assert beaten.headers["x-gdx-heartbeat-time"] == "2026-12-07T00:00:00+00:00"
    steps = exchange.client("bob").get("/v1/audit", params={"resource": code, "action": "load"}).json()
    assert [(e["scope"].get("step"), e["outcome"]) for e in steps] == [("open", "ok"), (None, "refused"),
                                                                        ("finish", "ok")]  # fmt: skip
