"""Online lookup, bulk download, share methods, and doubtful-data disputes."""

from __future__ import annotations

import pytest

from tests.support.exchange import RunningExchange
from tests.support.samples import batch, delete, population_entry, resident_id, unique_code, upsert

PURPOSE = "就医结算身份核验"


@pytest.fixture
def shared(exchange: RunningExchange) -> str:
    code = unique_code("zjg-gaj")
    exchange.client("zjg-gaj").post("/v1/resources", json=population_entry(code))
    exchange.client("zjg-wjw").post(f"/v1/resources/{code}/subscriptions", json={"purpose": PURPOSE})
    exchange.client("zjg-gaj").post(
        f"/v1/resources/{code}/changes", json=batch(*(upsert(n, 1) for n in range(10)), delete(9, 2))
    )
    return code


def test_lookup_by_key(exchange: RunningExchange, shared: str) -> None:
    wjw = exchange.client("zjg-wjw")
    found = wjw.get(f"/v1/resources/{shared}/records/{resident_id(3)}", params={"purpose": PURPOSE})
    assert found.json()["row"]["address"] == "张家港市杨舍镇3号"
    deleted = wjw.get(f"/v1/resources/{shared}/records/{resident_id(9)}", params={"purpose": PURPOSE})
    assert deleted.status_code == 404
    bad = wjw.get(f"/v1/resources/{shared}/records/110105194912310021", params={"purpose": PURPOSE})
    assert bad.status_code == 422
    assert "resident_id" in bad.json()["message"]
    no_purpose = wjw.get(f"/v1/resources/{shared}/records/{resident_id(3)}")
    assert no_purpose.status_code == 422
    assert "purpose" in no_purpose.json()["message"]


def test_download_streams_current_records(exchange: RunningExchange, shared: str) -> None:
    lines = exchange.client("zjg-wjw").get(f"/v1/resources/{shared}/records", params={"purpose": PURPOSE})
    assert lines.status_code == 200
    assert len(lines.text.splitlines()) == 9  # ten inserted, one deleted


def test_a_method_the_catalog_does_not_offer_is_refused(exchange: RunningExchange) -> None:
    code = unique_code("zjg-gaj")
    exchange.client("zjg-gaj").post("/v1/resources", json=population_entry(code, share_methods=["front_end"]))
    exchange.client("zjg-wjw").post(f"/v1/resources/{code}/subscriptions", json={"purpose": PURPOSE})
    response = exchange.client("zjg-wjw").get(f"/v1/resources/{code}/records", params={"purpose": PURPOSE})
    assert response.status_code == 403
    assert "not shared by download" in response.json()["message"]


def test_staff_do_not_read_department_data(exchange: RunningExchange, shared: str) -> None:
    response = exchange.client("alice").get(f"/v1/resources/{shared}/changes", params={"purpose": PURPOSE})
    assert response.status_code == 403


def test_a_dispute_is_opened_by_a_consumer_and_resolved_by_the_provider(exchange: RunningExchange, shared: str) -> None:
    opened = exchange.client("zjg-wjw").post(
        "/v1/disputes", json={"resource": shared, "key": resident_id(2), "reason": "住址与医保登记不一致"}
    )
    assert opened.status_code == 201
    dispute = opened.json()
    assert dispute["status"] == "open"
    assert dispute["provider"] == "zjg-gaj"
    assert (
        exchange.client("zjg-scjgj")
        .post("/v1/disputes", json={"resource": shared, "key": resident_id(2), "reason": "x"})
        .status_code
        == 403
    )
    open_ids = [d["id"] for d in exchange.client("carol").get("/v1/disputes", params={"status": "open"}).json()]
    assert dispute["id"] in open_ids
    assert (
        exchange.client("zjg-wjw").post(f"/v1/disputes/{dispute['id']}/resolve", json={"resolution": "x"}).status_code
        == 403
    )
    resolved = (
        exchange.client("zjg-gaj")
        .post(f"/v1/disputes/{dispute['id']}/resolve", json={"resolution": "已核实并更正住址"})
        .json()
    )
    assert resolved["status"] == "resolved"
    open_ids = [d["id"] for d in exchange.client("carol").get("/v1/disputes", params={"status": "open"}).json()]
    assert dispute["id"] not in open_ids
