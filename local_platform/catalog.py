"""The departments' business on the exchange, done as they would do it through its API with their
own certificates: the providers register their catalog entries (资源目录), the health commission
subscribes to the unconditional one and files a request for the conditional one, which the market
regulation bureau approves for some of the fields asked for.

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
