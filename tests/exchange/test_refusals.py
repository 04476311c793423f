"""Refusals: one canonical key per person or company, strict JSON, one error shape, and an
audit entry for every refused request."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest

from gdx.protocol import MAX_BATCH_CHANGES
from tests.support.exchange import RunningExchange
from tests.support.samples import batch, population_entry, resident_id, unique_code, upsert

PURPOSE = "就医结算身份核验"
USCC = "91350100M000100Y43"
FULL_WIDTH = str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")


def _resident_id_with_x() -> str:
    return next(rid for n in range(200) if (rid := resident_id(n)).endswith("X"))


RESIDENT_ID = _resident_id_with_x()
RESIDENT_ID_VARIANTS = {
    "lower-case x": RESIDENT_ID.lower(),
    "surrounding spaces": f" {RESIDENT_ID} ",
    "no-break space": f"{RESIDENT_ID}\u00a0",
    "ideographic space": f"\u3000{RESIDENT_ID}",
    "full-width digits": RESIDENT_ID.translate(FULL_WIDTH),
    "a space inside": f"{RESIDENT_ID[:6]} {RESIDENT_ID[6:]}",
    "a tab": f"{RESIDENT_ID}\t",
}
USCC_VARIANTS = {
    "lower case": USCC.lower(),
    "a hyphen": f"{USCC[:8]}-{USCC[8:]}",
    "a space": f"{USCC[:8]} {USCC[8:]}",
    "surrounding spaces": f" {USCC} ",
}


def company_spec(code: str) -> dict[str, Any]:
    return population_entry(
        code,
        fields=[
            {"name": "credit_code", "type": "string", "nullable": False},
            {"name": "name", "type": "string", "nullable": False},
        ],
        primary_key="credit_code",
        key_kind="uscc",
    )


@pytest.fixture(scope="module")
def people(exchange: RunningExchange) -> str:
    code = unique_code("zjg-gaj")
    assert exchange.client("zjg-gaj").post("/v1/resources", json=population_entry(code)).status_code == 201
    exchange.client("zjg-wjw").post(f"/v1/resources/{code}/subscriptions", json={"purpose": PURPOSE})
    pushed = exchange.client("zjg-gaj").post(f"/v1/resources/{code}/changes", json=batch(_person(RESIDENT_ID)))
    assert pushed.status_code == 200, pushed.text
    return code


def _person(key: str) -> dict[str, Any]:
    change = upsert(1, 1)
    change["key"] = change["row"]["id_number"] = key
    return change


def _last_seq(exchange: RunningExchange, code: str) -> int:
    with psycopg.connect(exchange.database_url) as conn:
        row = conn.execute("SELECT last_seq FROM resource WHERE code = %s", (code,)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("variant", RESIDENT_ID_VARIANTS.values(), ids=RESIDENT_ID_VARIANTS.keys())
def test_a_resident_id_variant_is_refused_naming_the_canonical_form(
    exchange: RunningExchange, people: str, variant: str
) -> None:
    before = _last_seq(exchange, people)
    pushed = exchange.client("zjg-gaj").post(f"/v1/resources/{people}/changes", json=batch(_person(variant)))
    assert pushed.status_code == 422
    assert f"send {RESIDENT_ID!r}" in pushed.json()["message"]
    assert _last_seq(exchange, people) == before  # nothing applied

    looked_up = exchange.client("zjg-wjw").get(
        f"/v1/resources/{people}/records/{quote(variant, safe='')}", params={"purpose": PURPOSE}
    )
    assert looked_up.status_code == 422
    assert f"send {RESIDENT_ID!r}" in looked_up.json()["message"]

    disputed = exchange.client("zjg-wjw").post(
        "/v1/disputes", json={"resource": people, "key": variant, "reason": "住址不一致"}
    )
    assert disputed.status_code == 422
    assert f"send {RESIDENT_ID!r}" in disputed.json()["message"]


def test_the_canonical_resident_id_is_found(exchange: RunningExchange, people: str) -> None:
    found = exchange.client("zjg-wjw").get(f"/v1/resources/{people}/records/{RESIDENT_ID}", params={"purpose": PURPOSE})
    assert found.status_code == 200
    assert found.json()["key"] == RESIDENT_ID


@pytest.mark.parametrize("variant", USCC_VARIANTS.values(), ids=USCC_VARIANTS.keys())
def test_a_credit_code_variant_is_refused_naming_the_canonical_form(exchange: RunningExchange, variant: str) -> None:
    code = unique_code("zjg-scjgj", "companies")
    assert exchange.client("zjg-scjgj").post("/v1/resources", json=company_spec(code)).status_code == 201

    def company(key: str) -> dict[str, Any]:
        return {**upsert(1, 1), "key": key, "row": {"credit_code": key, "name": "张家港某某有限公司"}}

    refused = exchange.client("zjg-scjgj").post(f"/v1/resources/{code}/changes", json=batch(company(variant)))
    assert refused.status_code == 422
    assert f"send {USCC!r}" in refused.json()["message"]
    applied = exchange.client("zjg-scjgj").post(f"/v1/resources/{code}/changes", json=batch(company(USCC)))
    assert applied.json()["applied"] == 1


def test_a_dispute_needs_a_key_of_the_resource(exchange: RunningExchange, people: str) -> None:
    for key in ("", "   ", 42, "not a number"):
        response = exchange.client("zjg-wjw").post(
            "/v1/disputes", json={"resource": people, "key": key, "reason": "住址不一致"}
        )
        assert response.status_code == 422, (key, response.text)
        assert response.json()["error"] == "invalid_key"


@pytest.mark.parametrize(
    "body",
    [
        '{"resource": "%s", "key": "x", "key": "%s", "reason": "住址不一致"}',
        '{"resource": "%s", "key": "%s", "reason": "住址不一致", "reason": "住址不一致"}',
    ],
    ids=["a bad key behind a good one", "the same value twice"],
)
def test_a_json_member_named_twice_is_refused(exchange: RunningExchange, people: str, body: str) -> None:
    response = exchange.client("zjg-wjw").post(
        "/v1/disputes",
        content=(body % (people, RESIDENT_ID)).encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"
    assert "twice" in response.json()["message"]


def test_a_pushed_batch_naming_a_member_twice_is_refused(exchange: RunningExchange, people: str) -> None:
    good = json.dumps(batch(_person(RESIDENT_ID)), separators=(",", ":"))
    doubled = good.replace('"op":"upsert",', '"op":"upsert","source_version":99,', 1)
    response = exchange.client("zjg-gaj").post(
        f"/v1/resources/{people}/changes", content=doubled.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "twice" in response.json()["message"]


def _newest_entry(exchange: RunningExchange) -> tuple[int, dict[str, Any]]:
    with psycopg.connect(exchange.database_url) as conn:
        row = conn.execute("SELECT id, entry FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    assert row is not None
    return int(row[0]), json.loads(row[1])


def _other_provider_update(exchange: RunningExchange, code: str) -> httpx.Response:
    return exchange.client("zjg-wjw").put(f"/v1/resources/{code}", json=population_entry(code))


def _too_many(exchange: RunningExchange, code: str) -> httpx.Response:
    changes = [upsert(n, 1) for n in range(MAX_BATCH_CHANGES + 1)]
    return exchange.client("zjg-gaj").post(f"/v1/resources/{code}/changes", json=batch(*changes))


# Each: (what is tried, the request, the status, the actor the audit entry names).
REFUSED: list[tuple[str, Callable[[RunningExchange, str], httpx.Response], int, str]] = [
    ("no certificate", lambda x, c: x.anonymous().get("/v1/resources"), 401, "(no certificate)"),
    ("unregistered department", lambda x, c: x.client("ghost").get("/v1/resources"), 403, "ghost"),
    ("operator doing an admin's work", lambda x, c: x.client("carol").get("/v1/audit"), 403, "carol"),
    ("catalog change by another department", _other_provider_update, 403, "zjg-wjw"),
    (
        "dispute without a grant",
        lambda x, c: x.client("zjg-scjgj").post(
            "/v1/disputes", json={"resource": c, "key": RESIDENT_ID, "reason": "住址不一致"}
        ),
        403,
        "zjg-scjgj",
    ),
    (
        "push that is not JSON",
        lambda x, c: x.client("zjg-gaj").post(
            f"/v1/resources/{c}/changes", content=b"{", headers={"content-type": "application/json"}
        ),
        400,
        "zjg-gaj",
    ),
    ("push of too many changes", _too_many, 413, "zjg-gaj"),
    (
        "push without a batch id",
        lambda x, c: x.client("zjg-gaj").post(f"/v1/resources/{c}/changes", json={}),
        422,
        "zjg-gaj",
    ),
    ("unknown route", lambda x, c: x.client("zjg-gaj").get("/v1/nothing-here"), 404, "zjg-gaj"),
    ("wrong method", lambda x, c: x.client("zjg-gaj").delete(f"/v1/resources/{c}"), 405, "zjg-gaj"),
    (
        "cursor beyond 64 bits",
        lambda x, c: x.client("zjg-wjw").get(f"/v1/resources/{c}/changes", params={"purpose": PURPOSE, "after": 2**64}),
        422,
        "zjg-wjw",
    ),
]


@pytest.mark.parametrize(("request_", "status", "actor"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_every_refusal_is_one_audit_entry_in_the_documented_shape(
    exchange: RunningExchange,
    people: str,
    request_: Callable[[RunningExchange, str], httpx.Response],
    status: int,
    actor: str,
) -> None:
    before, _ = _newest_entry(exchange)
    response = request_(exchange, people)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "details"}, body
    assert body["message"]
    after, entry = _newest_entry(exchange)
    assert after == before + 1, "one refusal, one entry"
    assert entry["outcome"] == "refused"
    assert entry["actor"] == actor
    assert entry["scope"]["status"] == status
    assert entry["scope"]["reason"]
    assert "route" in entry["scope"] or "path" in entry["scope"]
