"""The sharing rules on real PostgreSQL: a grant's life (revocation, expiry, reclassification,
amendment), the coordination of requests with each jurisdiction's timers, and the catalog review."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest

from gdx.workdays import WorkCalendar, today
from tests.support.exchange import RunningExchange
from tests.support.samples import batch, population_entry, resident_id, unique_code, upsert

PURPOSE = "低保资格审核"


def register(exchange: RunningExchange, provider: str, share_type: str) -> str:
    code = unique_code(provider)
    client = exchange.client(provider)
    assert client.post("/v1/resources", json=population_entry(code, share_type)).status_code == 201
    client.post(f"/v1/resources/{code}/changes", json=batch(upsert(1, 1), upsert(2, 1))).raise_for_status()
    return code


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json())


def file_request(exchange: RunningExchange, code: str, who: str = "zjg-wjw", **extra: object) -> dict[str, Any]:
    return ok(exchange.client(who).post("/v1/requests", json={"resource": code, "purpose": PURPOSE, **extra}), 201)


def granted(exchange: RunningExchange, provider: str, share_type: str = "conditional", **terms: object) -> tuple:
    """A resource of ``provider`` and zjg-wjw's approved grant on it: (code, grant)."""
    code = register(exchange, provider, share_type)
    request = file_request(exchange, code)
    ok(exchange.client(provider).post(f"/v1/requests/{request['id']}/approve", json=terms))
    return code, grant_on(exchange, code)


def grant_on(exchange: RunningExchange, code: str, who: str = "zjg-wjw") -> dict[str, Any]:
    return next(g for g in exchange.client(who).get("/v1/grants").json() if g["resource"] == code)


def reads(exchange: RunningExchange, code: str, who: str = "zjg-wjw") -> dict[str, int]:
    """The status of each read path: pull, lookup, download."""
    client, params = exchange.client(who), {"purpose": PURPOSE}
    return {
        "pull": client.get(f"/v1/resources/{code}/changes", params=params).status_code,
        "lookup": client.get(f"/v1/resources/{code}/records/{resident_id(1)}", params=params).status_code,
        "download": client.get(f"/v1/resources/{code}/records", params=params).status_code,
    }


def audit_of(exchange: RunningExchange, code: str) -> list[dict[str, Any]]:
    return list(exchange.client("bob").get("/v1/audit", params={"resource": code}).json())


# Grant life cycle


def test_a_revoked_grant_is_refused_on_every_read_path_and_audited(exchange: RunningExchange) -> None:
    code, grant = granted(exchange, "zjg-gaj", on_revoke="purge")
    assert reads(exchange, code) == {"pull": 200, "lookup": 200, "download": 200}
    # Only the provider or an administrator revokes; the consumer may not, others do not see it.
    revoke = f"/v1/grants/{grant['id']}/revoke"
    assert exchange.client("zjg-wjw").post(revoke, json={"reason": "x"}).status_code == 403
    assert exchange.client("zjg-scjgj").post(revoke, json={"reason": "x"}).status_code == 404
    revoked = ok(exchange.client("zjg-gaj").post(f"/v1/grants/{grant['id']}/revoke", json={"reason": "超出用途使用"}))
    assert (revoked["status"], revoked["ended_by"], revoked["end_reason"]) == ("revoked", "zjg-gaj", "超出用途使用")
    assert revoked["on_revoke"] == "purge"  # the grant's setting, which the consumer's node carries out

    assert reads(exchange, code) == {"pull": 403, "lookup": 403, "download": 403}
    refusal = exchange.client("zjg-wjw").get(f"/v1/resources/{code}/changes", params={"purpose": PURPOSE}).json()
    assert refusal["error"] == "grant_revoked"
    assert "超出用途使用" in refusal["message"]
    entries = audit_of(exchange, code)
    assert [e["action"] for e in entries if e["action"] == "grant.revoke"] == ["grant.revoke"]
    refused = [e for e in entries if e["outcome"] == "refused" and e["action"] in ("pull", "lookup", "download")]
    assert {e["action"] for e in refused} == {"pull", "lookup", "download"}
    assert exchange.client("zjg-gaj").post(f"/v1/grants/{grant['id']}/revoke", json={"reason": "x"}).status_code == 409


def test_an_administrator_revokes_and_a_new_approval_grants_again(exchange: RunningExchange) -> None:
    code, grant = granted(exchange, "zjg-gaj")
    ok(exchange.client("alice").post(f"/v1/grants/{grant['id']}/revoke", json={"reason": "协调决定收回"}))
    assert reads(exchange, code)["pull"] == 403
    request = file_request(exchange, code)  # a revoked grant does not block a new request
    ok(exchange.client("zjg-gaj").post(f"/v1/requests/{request['id']}/approve", json={}))
    assert grant_on(exchange, code)["status"] == "active"
    assert reads(exchange, code)["pull"] == 200


def test_an_expired_grant_behaves_as_revoked_and_is_counted_before(exchange: RunningExchange) -> None:
    soon = today() + dt.timedelta(days=10)
    code, grant = granted(exchange, "zjg-gaj", expires_on=soon.isoformat())
    assert grant["expires_on"] == soon.isoformat()
    expiring = exchange.client("zjg-wjw").get("/v1/grants", params={"expiring_within_days": 30}).json()
    assert grant["id"] in [g["id"] for g in expiring]
    later = exchange.client("zjg-wjw").get("/v1/grants", params={"expiring_within_days": 5}).json()
    assert grant["id"] not in [g["id"] for g in later]
    summary = exchange.client("carol").get("/v1/monitoring/summary").json()
    wjw = next(d for d in summary["departments"] if d["department"] == "zjg-wjw")
    assert wjw["grants_expiring"] >= 1

    with psycopg.connect(exchange.database_url) as conn:
        conn.execute("UPDATE grants SET expires_on = %s WHERE id = %s", (today() - dt.timedelta(days=1), grant["id"]))
    assert grant_on(exchange, code)["status"] == "expired"
    assert reads(exchange, code) == {"pull": 403, "lookup": 403, "download": 403}
    refusal = exchange.client("zjg-wjw").get(f"/v1/resources/{code}/records", params={"purpose": PURPOSE}).json()
    assert refusal["error"] == "grant_expired"
    # An expired grant is no subscription the monitoring expects data at.
    summary = exchange.client("carol").get("/v1/monitoring/summary").json()
    assert "zjg-wjw" not in next(r for r in summary["resources"] if r["code"] == code)["subscribers"]


def test_reclassifying_a_resource_suspends_or_revokes_its_grants(exchange: RunningExchange) -> None:
    code = register(exchange, "zjg-gaj", "unconditional")
    gaj = exchange.client("zjg-gaj")
    ok(exchange.client("zjg-wjw").post(f"/v1/resources/{code}/subscriptions", json={"purpose": PURPOSE}), 201)
    assert reads(exchange, code)["pull"] == 200

    # Unconditional -> conditional: the subscription is suspended until a request is approved.
    ok(gaj.put(f"/v1/resources/{code}", json=population_entry(code, "conditional")))
    suspended = grant_on(exchange, code)
    assert suspended["status"] == "suspended"
    assert "catalog version 2" in suspended["end_reason"]
    assert reads(exchange, code)["pull"] == 403
    request = file_request(exchange, code, fields=["name"])
    ok(gaj.post(f"/v1/requests/{request['id']}/approve", json={}))
    assert (grant_on(exchange, code)["status"], grant_on(exchange, code)["fields"]) == ("active", ["name"])
    assert reads(exchange, code)["pull"] == 200

    # -> not shared: every grant is revoked, and the audit trail says why.
    ok(gaj.put(f"/v1/resources/{code}", json=population_entry(code, "not_shared")))
    assert grant_on(exchange, code)["status"] == "revoked"
    assert reads(exchange, code)["pull"] == 403
    actions = [e["action"] for e in audit_of(exchange, code)]
    assert actions.count("grant.suspend") == 1
    assert actions.count("grant.revoke") == 1


def test_amending_a_field_limited_grant(exchange: RunningExchange) -> None:
    code = register(exchange, "zjg-gaj", "conditional")
    gaj, wjw = exchange.client("zjg-gaj"), exchange.client("zjg-wjw")
    first = file_request(exchange, code, fields=["name"])
    ok(gaj.post(f"/v1/requests/{first['id']}/approve", json={}))
    grant = grant_on(exchange, code)
    assert grant["fields"] == ["name"]
    again = wjw.post("/v1/requests", json={"resource": code, "purpose": PURPOSE, "fields": ["name", "address"]})
    assert again.status_code == 409
    assert f"/v1/grants/{grant['id']}/amend" in again.json()["message"]

    nothing = wjw.post(f"/v1/grants/{grant['id']}/amend", json={"fields": ["name"], "reason": "核对住址"})
    assert nothing.status_code == 409
    refused = ok(wjw.post(f"/v1/grants/{grant['id']}/amend", json={"fields": ["address"], "reason": "核对住址"}), 201)
    assert (refused["kind"], refused["grant_id"], refused["fields"]) == ("amendment", grant["id"], ["address", "name"])
    ok(gaj.post(f"/v1/requests/{refused['id']}/refuse", json={"reason": "住址不在共享条件内"}))
    assert grant_on(exchange, code)["fields"] == ["name"]  # a refused amendment leaves the grant as it was

    amendment = ok(wjw.post(f"/v1/grants/{grant['id']}/amend", json={"fields": ["address"], "reason": "核对住址"}), 201)
    ok(gaj.post(f"/v1/requests/{amendment['id']}/approve", json={}))
    widened = grant_on(exchange, code)
    assert (widened["id"], widened["fields"], widened["status"]) == (grant["id"], ["address", "name"], "active")
    page = wjw.get(f"/v1/resources/{code}/changes", params={"purpose": PURPOSE}).json()
    assert set(page["changes"][0]["row"]) == {"id_number", "name", "address"}


def test_the_authority_decides_only_escalated_requests(exchange: RunningExchange) -> None:
    code = register(exchange, "zjg-gaj", "conditional")
    request = file_request(exchange, code)
    decision = {"outcome": "refuse", "reason": "不予共享"}
    pending = exchange.client("alice").post(f"/v1/requests/{request['id']}/decision", json=decision)
    assert pending.status_code == 409
    ok(exchange.client("zjg-gaj").post(f"/v1/requests/{request['id']}/approve", json={}))
    approved = exchange.client("alice").post(f"/v1/requests/{request['id']}/decision", json=decision)
    assert approved.status_code == 409
    assert "revoke the grant" in approved.json()["message"]
    assert reads(exchange, code)["pull"] == 200  # the grant stands


# Requests and coordination


def test_a_not_shared_resource_opens_a_negotiation_with_its_window(exchange: RunningExchange) -> None:
    code = register(exchange, "ws-gaj", "not_shared")  # Wushen Art. 21: 5 working days to negotiate
    request = file_request(exchange, code)
    assert (request["kind"], request["status"], request["due_date"]) == ("exception", "negotiating", None)
    assert request["negotiation_due"] == WorkCalendar().add_working_days(today(), 5).due.isoformat()

    provider = exchange.client("ws-gaj")
    bare = provider.post(f"/v1/requests/{request['id']}/approve", json={})
    assert (bare.status_code, bare.json()["error"]) == (422, "legal_basis_required")
    basis = "《社会救助暂行办法》第五十九条"
    approved = ok(provider.post(f"/v1/requests/{request['id']}/approve", json={"legal_basis": basis}))
    assert (approved["status"], approved["legal_basis"]) == ("approved", basis)
    assert reads(exchange, code)["pull"] == 200
    entry = next(e for e in audit_of(exchange, code) if e["action"] == "request.approve")
    assert entry["scope"]["legal_basis"] == basis


def test_either_party_escalates_a_negotiation_and_the_overdue_window_shows(exchange: RunningExchange) -> None:
    code = register(exchange, "ws-gaj", "not_shared")
    request = file_request(exchange, code)
    late = dt.date.fromisoformat(request["negotiation_due"]) + dt.timedelta(days=1)
    overdue = exchange.client("carol").get("/v1/requests/overdue", params={"as_of": late.isoformat()}).json()
    assert next(r for r in overdue if r["id"] == request["id"])["overdue"] == "negotiation"
    escalate = f"/v1/requests/{request['id']}/escalate"
    escalated = ok(exchange.client("ws-gaj").post(escalate, json={"reason": "协商未果"}))
    assert (escalated["status"], escalated["escalated_by"]) == ("escalated", "ws-gaj")
    decided = ok(
        exchange.client("alice").post(
            f"/v1/requests/{request['id']}/decision", json={"outcome": "refuse", "reason": "无法律依据，不予共享"}
        )
    )
    assert decided["status"] == "decided"
    final = exchange.client("alice").post(
        f"/v1/requests/{request['id']}/decision", json={"outcome": "approve", "reason": "改判"}
    )
    assert final.status_code == 409
    assert "final" in final.json()["message"]


def test_hebei_counts_the_explanation_and_the_decision_in_calendar_days(exchange: RunningExchange) -> None:
    code = register(exchange, "hb-gat", "conditional")
    request = file_request(exchange, code)
    assert request["due_date"] is None  # Hebei Art. 13 sets no reply deadline: the parties negotiate
    wjw, hb = exchange.client("zjg-wjw"), exchange.client("hb-gat")
    escalated = ok(wjw.post(f"/v1/requests/{request['id']}/escalate", json={"reason": "协商未达成一致"}))
    start = today()
    assert escalated["explanation_due"] == (start + dt.timedelta(days=15)).isoformat()
    assert escalated["decision_due"] is None  # counted from the explanation's receipt

    def overdue_as_of(day: dt.date) -> str | None:
        found = exchange.client("carol").get("/v1/requests/overdue", params={"as_of": day.isoformat()}).json()
        return next((r["overdue"] for r in found if r["id"] == request["id"]), None)

    assert overdue_as_of(start + dt.timedelta(days=15)) is None
    assert overdue_as_of(start + dt.timedelta(days=16)) == "explanation"
    assert wjw.post(f"/v1/requests/{request['id']}/explanation", json={"text": "x"}).status_code == 403
    explained = ok(hb.post(f"/v1/requests/{request['id']}/explanation", json={"text": "涉及个人隐私，需脱敏后提供"}))
    assert explained["decision_due"] == (start + dt.timedelta(days=30)).isoformat()
    assert overdue_as_of(start + dt.timedelta(days=30)) is None
    assert overdue_as_of(start + dt.timedelta(days=31)) == "decision"
    assert hb.post(f"/v1/requests/{request['id']}/explanation", json={"text": "again"}).status_code == 409


def test_overdue_items_are_counted_per_department_for_the_monitoring(exchange: RunningExchange) -> None:
    code = register(exchange, "ws-gaj", "not_shared")
    request = file_request(exchange, code)
    with psycopg.connect(exchange.database_url) as conn:
        conn.execute(
            "UPDATE share_request SET negotiation_due = %s WHERE id = %s",
            (today() - dt.timedelta(days=1), request["id"]),
        )
    summary = exchange.client("carol").get("/v1/monitoring/summary").json()
    ws = next(d for d in summary["departments"] if d["department"] == "ws-gaj")
    assert ws["overdue"]["negotiation"] >= 1


# The catalog's yearly review


def test_a_review_confirms_an_entry_without_a_new_version(exchange: RunningExchange) -> None:
    code = register(exchange, "zjg-gaj", "conditional")
    with psycopg.connect(exchange.database_url) as conn:
        conn.execute("UPDATE resource SET catalog_updated_at = now() - interval '400 days' WHERE code = %s", (code,))

    def review_overdue() -> bool:
        summary = exchange.client("carol").get("/v1/monitoring/summary").json()
        return bool(next(r for r in summary["resources"] if r["code"] == code)["catalog_review_overdue"])

    assert review_overdue()
    assert exchange.client("zjg-wjw").post(f"/v1/resources/{code}/review", json={}).status_code == 403
    reviewed = ok(exchange.client("zjg-gaj").post(f"/v1/resources/{code}/review", json={"note": "逐项核对无变化"}))
    assert reviewed["schema_version"] == 1
    assert not review_overdue()
    entry = next(e for e in audit_of(exchange, code) if e["action"] == "catalog.review")
    assert entry["scope"]["note"] == "逐项核对无变化"


@pytest.mark.parametrize("body", [{"reason": ""}, {"reason": "x", "on_revoke": "shred"}, {}])
def test_a_bad_revocation_is_refused_with_the_field_named(exchange: RunningExchange, body: dict[str, Any]) -> None:
    _, grant = granted(exchange, "zjg-gaj")
    answer = exchange.client("zjg-gaj").post(f"/v1/grants/{grant['id']}/revoke", json=body)
    assert answer.status_code == 422
    assert "reason" in answer.text or "on_revoke" in answer.text


def test_a_revoked_subscription_is_not_undone_by_subscribing_again(exchange: RunningExchange) -> None:
    code = register(exchange, "zjg-gaj", "unconditional")
    wjw = exchange.client("zjg-wjw")
    grant = ok(wjw.post(f"/v1/resources/{code}/subscriptions", json={"purpose": PURPOSE}), 201)
    ok(exchange.client("zjg-gaj").post(f"/v1/grants/{grant['id']}/revoke", json={"reason": "违规转给第三方"}))
    again = wjw.post(f"/v1/resources/{code}/subscriptions", json={"purpose": PURPOSE})
    assert again.status_code == 403
    assert f"/v1/grants/{grant['id']}/restore" in again.json()["message"]
    assert wjw.post(f"/v1/grants/{grant['id']}/restore", json={"reason": "x"}).status_code == 403
    restored = ok(exchange.client("alice").post(f"/v1/grants/{grant['id']}/restore", json={"reason": "整改完成"}))
    assert restored["status"] == "active"
    assert reads(exchange, code)["pull"] == 200
    entry = [e for e in audit_of(exchange, code) if e["action"] == "grant.resume"][-1]
    assert (entry["actor"], entry["scope"]["was"]) == ("alice", "revoked")


# Catalog deadlines


def test_a_drift_opens_one_catalog_item_due_in_working_days_and_a_new_version_closes_it(
    exchange: RunningExchange,
) -> None:
    code = register(exchange, "zjg-gaj", "conditional")
    gaj = exchange.client("zjg-gaj")
    drift = {"schema_version": 1, "added": ["mobile"], "missing": ["income"]}
    item = ok(gaj.post(f"/v1/resources/{code}/drift", json=drift))
    assert (item["cause"], item["resource"], item["detail"]["added"]) == ("drift", code, ["mobile"])
    assert item["due_date"] == WorkCalendar().add_working_days(today(), 3).due.isoformat()  # ZJG Art. 12
    again = ok(gaj.post(f"/v1/resources/{code}/drift", json={**drift, "retyped": ["income"]}))
    assert again["id"] == item["id"]  # one open item per resource, its detail kept current
    assert again["detail"]["retyped"] == ["income"]
    assert exchange.client("zjg-wjw").post(f"/v1/resources/{code}/drift", json=drift).status_code == 403
    stale = gaj.post(f"/v1/resources/{code}/drift", json={**drift, "schema_version": 7})
    assert stale.status_code == 409

    late = (dt.date.fromisoformat(item["due_date"]) + dt.timedelta(days=1)).isoformat()
    overdue = exchange.client("carol").get("/v1/catalog-items", params={"overdue_as_of": late}).json()
    assert item["id"] in [i["id"] for i in overdue]
    assert item["id"] in [i["id"] for i in gaj.get("/v1/catalog-items").json()]
    assert item["id"] not in [i["id"] for i in exchange.client("zjg-wjw").get("/v1/catalog-items").json()]

    renamed = population_entry(code, "conditional", name="常住人口基本信息（新增手机号）")
    ok(gaj.put(f"/v1/resources/{code}", json=renamed))
    closed = exchange.client("carol").get("/v1/catalog-items", params={"status": "closed"}).json()
    mine = next(i for i in closed if i["id"] == item["id"])
    assert mine["closed_reason"] == "catalog version 2 published"


def test_a_table_matching_again_closes_its_drift_item(exchange: RunningExchange) -> None:
    code = register(exchange, "ws-gaj", "conditional")
    provider = exchange.client("ws-gaj")
    item = ok(provider.post(f"/v1/resources/{code}/drift", json={"schema_version": 1, "dropped": ["remark"]}))
    assert item["due_date"] == WorkCalendar().add_working_days(today(), 15).due.isoformat()  # Wushen Art. 7
    assert provider.post(f"/v1/resources/{code}/drift", json={"schema_version": 1}).json() is None
    assert item["id"] not in [i["id"] for i in provider.get("/v1/catalog-items").json()]


def test_an_administrator_records_a_change_of_duties_and_the_next_version_closes_it(
    exchange: RunningExchange,
) -> None:
    body = {"department": "nx-gat", "cause": "duties", "detail": "机构改革：承接出入境管理职能"}
    assert exchange.client("nx-gat").post("/v1/catalog-items", json=body).status_code == 403
    item = ok(exchange.client("alice").post("/v1/catalog-items", json=body), 201)
    assert item["due_date"] == WorkCalendar().add_working_days(today(), 15).due.isoformat()  # Ningxia Art. 8
    unknown = exchange.client("alice").post("/v1/catalog-items", json={**body, "department": "nx-none"})
    assert unknown.status_code == 404
    with psycopg.connect(exchange.database_url) as conn:
        yesterday = today() - dt.timedelta(days=1)
        conn.execute("UPDATE catalog_item SET due_date = %s WHERE id = %s", (yesterday, item["id"]))
    summary = exchange.client("carol").get("/v1/monitoring/summary").json()
    assert next(d for d in summary["departments"] if d["department"] == "nx-gat")["catalog_updates_overdue"] >= 1
    register(exchange, "nx-gat", "unconditional")  # a new entry for the new duty
    assert item["id"] not in [i["id"] for i in exchange.client("nx-gat").get("/v1/catalog-items").json()]


def test_a_grant_cannot_be_given_already_expired(exchange: RunningExchange) -> None:
    code = register(exchange, "zjg-gaj", "conditional")
    request = file_request(exchange, code)
    yesterday = (today() - dt.timedelta(days=1)).isoformat()
    answer = exchange.client("zjg-gaj").post(f"/v1/requests/{request['id']}/approve", json={"expires_on": yesterday})
    assert (answer.status_code, answer.json()["error"]) == (422, "expired_terms")
    assert exchange.client("zjg-wjw").get(f"/v1/requests/{request['id']}").json()["status"] == "pending"
    last_day = {"expires_on": today().isoformat()}
    ok(exchange.client("zjg-gaj").post(f"/v1/requests/{request['id']}/approve", json=last_day))
    assert grant_on(exchange, code)["status"] == "active"  # its last day is today
