"""The departments' business on the exchange, done as they would do it through its API with their
own certificates: the providers register their catalog entries (资源目录), the health commission
subscribes to the unconditional one and files a request for the conditional one, which the market
regulation bureau approves for some of the fields asked for. Then the governance the sharing rules
ask for, once each, so that the platform shows it: the health commission asks for a not-shared
entry of the public security bureau, which opens a negotiation; and the bureau revokes a
subscription the market regulation bureau took for a purpose outside its duties.

Idempotent: an entry, a grant or a request that exists already is left as it is.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from local_platform.sample_catalog import legal_entity_entry, population_entry
from local_platform.topology import DEPARTMENTS, LEGAL_ENTITY, POPULATION, provider_of

Progress = Callable[[str], None]

# The sample catalog's entries, with the fields the sample tables hold, updated as they change.
RESOURCES: dict[str, dict[str, Any]] = {
    POPULATION: population_entry(POPULATION, leave_out=("income", "is_resident", "remark"), update_period="realtime"),
    LEGAL_ENTITY: legal_entity_entry(LEGAL_ENTITY, update_period="realtime"),
}
# Not shared (ZJG Art. 10): a catalog entry only, no data; asking for it opens a negotiation.
NOT_SHARED = "zjg-gaj.population-sensitive"
NOT_SHARED_ENTRY = population_entry(NOT_SHARED, "not_shared", name="人口敏感信息", update_period="yearly")
ASKED_FOR = ("zjg-wjw", "严重精神障碍患者医疗救助核验")  # who asks for the not-shared entry, and why
REVOKED = ("zjg-scjgj", "企业住所登记核验", "用途超出登记职责，违反 ZJG 第二十一条")  # whose grant, purpose, reason


def client(exchange_url: str, pki: Path, department: str) -> httpx.Client:
    """An HTTPS client of the exchange presenting ``department``'s certificate."""
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(pki / f"{department}.crt", pki / f"{department}.key")
    return httpx.Client(base_url=exchange_url, verify=context, timeout=30, trust_env=False)


def share(exchange_url: str, pki: Path, progress: Progress = print) -> None:
    for code, spec in RESOURCES.items():
        with client(exchange_url, pki, provider_of(code).id) as provider:
            _register(provider, spec, progress)
    for consumer in DEPARTMENTS:
        if not consumer.subscribes:
            continue
        with client(exchange_url, pki, consumer.id) as http:
            granted = {g["resource"] for g in _ok(http.get("/v1/grants")) if g.get("consumer") == consumer.id}
            for sub in consumer.subscribes:
                if sub.resource in granted:
                    progress(f"{consumer.id} holds a grant for {sub.resource} already")
                elif not sub.requested:
                    _ok(http.post(f"/v1/resources/{sub.resource}/subscriptions", json={"purpose": sub.purpose}))
                    progress(f"{consumer.id} subscribed to {sub.resource} (unconditional: granted at once)")
                else:
                    _request_and_approve(exchange_url, pki, http, consumer.id, sub, progress)
    _negotiation(exchange_url, pki, progress)
    _revocation(exchange_url, pki, progress)


def _negotiation(exchange_url: str, pki: Path, progress: Progress) -> None:
    with client(exchange_url, pki, provider_of(POPULATION).id) as provider:
        _register(provider, NOT_SHARED_ENTRY, progress)
    consumer, purpose = ASKED_FOR
    with client(exchange_url, pki, consumer) as http:
        asked = [r for r in _ok(http.get("/v1/requests", params={"side": "consumer"})) if r["resource"] == NOT_SHARED]
        if asked:
            progress(f"{consumer}'s request for {NOT_SHARED} is {asked[0]['status']} already")
            return
        request = _ok(http.post("/v1/requests", json={"resource": NOT_SHARED, "purpose": purpose}))
    progress(f"{consumer} asked for {NOT_SHARED} (not shared): request {request['id']} is {request['status']}")


def _revocation(exchange_url: str, pki: Path, progress: Progress) -> None:
    consumer, purpose, reason = REVOKED
    with client(exchange_url, pki, consumer) as http:
        held = [g for g in _ok(http.get("/v1/grants")) if g["resource"] == POPULATION and g["purpose"] == purpose]
        if held and held[0]["status"] == "revoked":
            progress(f"{consumer}'s grant {held[0]['id']} on {POPULATION} is revoked already")
            return
        grant = (
            held[0] if held else _ok(http.post(f"/v1/resources/{POPULATION}/subscriptions", json={"purpose": purpose}))
        )
    with client(exchange_url, pki, provider_of(POPULATION).id) as provider:
        _ok(provider.post(f"/v1/grants/{grant['id']}/revoke", json={"reason": reason}))
    progress(f"{provider_of(POPULATION).id} revoked {consumer}'s grant {grant['id']} on {POPULATION}: {reason}")


def governance(exchange_url: str, pki: Path) -> dict[str, list[dict[str, Any]]]:
    """What waits on the coordination, and the grants ended, as the operator sees them."""
    with client(exchange_url, pki, "monitor") as http:
        negotiating = _ok(http.get("/v1/requests", params={"status": "negotiating"}))
        revoked = _ok(http.get("/v1/grants", params={"status": "revoked"}))
    return {
        "in negotiation": [
            {"request": r["id"], "resource": r["resource"], "consumer": r["consumer"], "provider": r["provider"]}
            for r in negotiating
        ],
        "revoked grants": [
            {"grant": g["id"], "resource": g["resource"], "consumer": g["consumer"], "reason": g["end_reason"]}
            for g in revoked
        ],
    }


def _register(provider: httpx.Client, spec: dict[str, Any], progress: Progress) -> None:
    answer = provider.get(f"/v1/resources/{spec['code']}")
    if answer.status_code == 200:
        progress(f"catalog: {spec['code']} is registered already")
        return
    _ok(provider.post("/v1/resources", json=spec))
    progress(f"catalog: {spec['code']} registered ({spec['name']}, {spec['share_type']})")


def _request_and_approve(exchange_url: str, pki: Path, http: httpx.Client, consumer: str, sub: Any,
                         progress: Progress) -> None:  # fmt: skip
    pending = [
        r
        for r in _ok(http.get("/v1/requests", params={"side": "consumer", "status": "pending"}))
        if r["resource"] == sub.resource
    ]
    if pending:
        request = pending[0]
    else:
        request = _ok(
            http.post(
                "/v1/requests",
                json={"resource": sub.resource, "purpose": sub.purpose, "fields": list(sub.requested)},
            )
        )
        progress(f"{consumer} requested {sub.resource} ({', '.join(sub.requested)}); reply due {request['due_date']}")
    with client(exchange_url, pki, provider_of(sub.resource).id) as provider:
        _ok(provider.post(f"/v1/requests/{request['id']}/approve", json={"fields": list(sub.approved)}))
    progress(f"{provider_of(sub.resource).id} approved request {request['id']} for {', '.join(sub.approved)}")


def _ok(answer: httpx.Response) -> Any:
    if answer.status_code >= 400:
        raise CatalogError(f"{answer.request.method} {answer.request.url.path}: {answer.status_code} {answer.text}")
    return answer.json()


class CatalogError(Exception):
    pass
