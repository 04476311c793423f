"""Share requests, replies within N working days, escalation, grants limited to fields."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from gdx.workdays import WorkCalendar, today
from tests.support.exchange import RunningExchange
from tests.support.samples import batch, population_entry, resident_id, unique_code, upsert

PURPOSE = "低保资格审核"


@pytest.fixture
def conditional(exchange: RunningExchange) -> str:
    code = unique_code("zjg-gaj")
    assert (
        exchange.client("zjg-gaj").post("/v1/resources", json=population_entry(code, "conditional")).status_code == 201
    )
    exchange.client("zjg-gaj").post(f"/v1/resources/{code}/changes", json=batch(upsert(1, 1), upsert(2, 1)))
    return code


def file_request(exchange: RunningExchange, code: str, who: str = "zjg-wjw", **extra: object) -> dict:
    response = exchange.client(who).post("/v1/requests", json={"resource": code, "purpose": PURPOSE, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def test_subscription_is_immediate_only_for_unconditional(exchange: RunningExchange, conditional: str) -> None:
    response = exchange.client("zjg-wjw").post(f"/v1/resources/{conditional}/subscriptions", json={"purpose": PURPOSE})
    assert response.status_code == 409
    assert "file a request" in response.json()["message"]


def test_a_not_shared_resource_cannot_be_subscribed_to(exchange: RunningExchange) -> None:
    code = unique_code("zjg-gaj")
    exchange.client("zjg-gaj").post("/v1/resources", json=population_entry(code, "not_shared"))
    response = exchange.client("zjg-wjw").post(f"/v1/resources/{code}/subscriptions", json={"purpose": PURPOSE})
    assert response.status_code == 403
    assert "居民身份证法" in response.json()["message"]
    assert "negotiation" in response.json()["message"]


def test_the_due_date_is_n_working_days_in_the_providers_jurisdiction(
    exchange: RunningExchange, conditional: str
) -> None:
    request = file_request(exchange, conditional)
    expected = WorkCalendar().add_working_days(today(), 5)
    assert request["due_date"] == expected.due.isoformat()
    assert request["status"] == "pending"

    ningxia = unique_code("nx-gat")
    exchange.client("nx-gat").post("/v1/resources", json=population_entry(ningxia, "conditional"))
    request = file_request(exchange, ningxia)
    assert request["due_date"] == WorkCalendar().add_working_days(today(), 10).due.isoformat()


def test_approval_limited_to_fields_grants_only_those(exchange: RunningExchange, conditional: str) -> None:
    request = file_request(exchange, conditional, fields=["name", "address", "income"])
    approved = exchange.client("zjg-gaj").post(
        f"/v1/requests/{request['id']}/approve", json={"fields": ["name", "address"]}
    )
    assert approved.json()["status"] == "approved"
    assert approved.json()["approved_fields"] == ["name", "address"]

    page = exchange.client("zjg-wjw").get(f"/v1/resources/{conditional}/changes", params={"purpose": PURPOSE}).json()
    assert [set(c["row"]) for c in page["changes"]] == [{"id_number", "name", "address"}] * 2
    record = (
        exchange.client("zjg-wjw")
        .get(f"/v1/resources/{conditional}/records/{resident_id(2)}", params={"purpose": PURPOSE})
        .json()
    )
    assert set(record["row"]) == {"id_number", "name", "address"}
    lines = exchange.client("zjg-wjw").get(f"/v1/resources/{conditional}/records", params={"purpose": PURPOSE})
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    assert len(lines.text.splitlines()) == 2
    assert "income" not in lines.text


def test_approval_cannot_widen_the_request(exchange: RunningExchange, conditional: str) -> None:
    request = file_request(exchange, conditional, fields=["name"])
    response = exchange.client("zjg-gaj").post(f"/v1/requests/{request['id']}/approve", json={"fields": ["income"]})
    assert response.status_code == 422


def test_refusal_needs_a_reason_and_only_the_provider_answers(exchange: RunningExchange, conditional: str) -> None:
    request = file_request(exchange, conditional)
    assert (
        exchange.client("zjg-wjw").post(f"/v1/requests/{request['id']}/refuse", json={"reason": "x"}).status_code == 403
    )
    assert exchange.client("zjg-gaj").post(f"/v1/requests/{request['id']}/refuse", json={}).status_code == 422
    refused = (
        exchange.client("zjg-gaj")
        .post(f"/v1/requests/{request['id']}/refuse", json={"reason": "用途超出共享条件"})
        .json()
    )
    assert (refused["status"], refused["reply_reason"]) == ("refused", "用途超出共享条件")
    again = exchange.client("zjg-gaj").post(f"/v1/requests/{request['id']}/approve", json={})
    assert again.status_code == 409


def test_escalation_and_the_authoritys_decision(exchange: RunningExchange, conditional: str) -> None:
    request = file_request(exchange, conditional)
    not_yet = exchange.client("zjg-wjw").post(f"/v1/requests/{request['id']}/escalate", json={"reason": "急需"})
    assert not_yet.status_code == 409  # pending and not overdue
    exchange.client("zjg-gaj").post(f"/v1/requests/{request['id']}/refuse", json={"reason": "不符合条件"})
    escalated = exchange.client("zjg-wjw").post(
        f"/v1/requests/{request['id']}/escalate", json={"reason": "社会救助法规定可以共享"}
    )
    assert escalated.json()["status"] == "escalated"
    decided = (
        exchange.client("alice")
        .post(
            f"/v1/requests/{request['id']}/decision",
            json={"outcome": "approve", "reason": "经协调，依据社会救助暂行办法共享", "fields": ["name"]},
        )
        .json()
    )
    assert (decided["status"], decided["decision"], decided["decided_by"]) == ("decided", "approve", "alice")
    grants = exchange.client("zjg-wjw").get("/v1/grants").json()
    assert any(g["resource"] == conditional and g["fields"] == ["name"] for g in grants)
    entries = exchange.client("bob").get("/v1/audit", params={"resource": conditional}).json()
    assert [e["action"] for e in entries][-3:] == ["request.refuse", "request.escalate", "request.decision"]


def test_overdue_requests_are_queryable(exchange: RunningExchange, conditional: str) -> None:
    request = file_request(exchange, conditional)
    due = dt.date.fromisoformat(request["due_date"])
    on_time = exchange.client("carol").get("/v1/requests/overdue", params={"as_of": due.isoformat()}).json()
    assert request["id"] not in [r["id"] for r in on_time]
    late = (due + dt.timedelta(days=1)).isoformat()
    overdue = exchange.client("carol").get("/v1/requests/overdue", params={"as_of": late}).json()
    assert request["id"] in [r["id"] for r in overdue]
    # A department sees only its own; an unrelated one sees none of these.
    mine = exchange.client("zjg-gaj").get("/v1/requests/overdue", params={"as_of": late}).json()
    assert request["id"] in [r["id"] for r in mine]
    theirs = exchange.client("zjg-scjgj").get("/v1/requests/overdue", params={"as_of": late}).json()
    assert request["id"] not in [r["id"] for r in theirs]


def test_a_truly_overdue_request_can_be_escalated(exchange: RunningExchange, conditional: str) -> None:
    request = file_request(exchange, conditional)
    with psycopg.connect(exchange.database_url) as conn:
        conn.execute(
            "UPDATE share_request SET due_date = %s WHERE id = %s", (today() - dt.timedelta(days=1), request["id"])
        )
    escalated = exchange.client("zjg-wjw").post(f"/v1/requests/{request['id']}/escalate", json={"reason": "逾期未答复"})
    assert escalated.json()["status"] == "escalated"
