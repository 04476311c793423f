"""The resource catalog (资源目录)."""

from __future__ import annotations

import pytest

from tests.support.exchange import RunningExchange
from tests.support.samples import population_entry, unique_code


def test_register_and_read_back_with_every_catalog_field(exchange: RunningExchange) -> None:
    code = unique_code("zjg-gaj")
    created = exchange.client("zjg-gaj").post("/v1/resources", json=population_entry(code, "conditional"))
    assert created.status_code == 201, created.text
    entry = exchange.client("zjg-wjw").get(f"/v1/resources/{code}").json()
    assert entry["provider"] == "zjg-gaj"
    assert entry["schema_version"] == 1
    assert entry["key_kind"] == "resident_id"
    assert entry["share_conditions"].startswith("仅限")
    for field in (
        "classification",
        "format",
        "fields",
        "primary_key",
        "share_type",
        "share_methods",
        "update_period",
        "usage_requirements",
        "release_date",
    ):
        assert field in entry


def test_not_shared_needs_a_legal_basis(exchange: RunningExchange) -> None:
    spec = population_entry(unique_code("zjg-gaj"), "not_shared", legal_basis=None)
    response = exchange.client("zjg-gaj").post("/v1/resources", json=spec)
    assert response.status_code == 422
    assert "legal_basis" in response.json()["message"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"primary_key": "nope"}, "not one of the fields"),
        (
            {"key_kind": "uscc", "fields": [{"name": "id_number", "type": "integer", "nullable": False}]},
            "needs a primary key of type string",
        ),
        ({"fields": [{"name": "id_number", "type": "string"}]}, "must have nullable: false"),
        ({"share_methods": []}, "share_methods"),
        ({"fields": [{"name": "a", "type": "blob"}]}, "fields.0.type"),
    ],
)
def test_bad_entries_are_refused_with_the_reason(exchange: RunningExchange, change: dict, expected: str) -> None:
    spec = {**population_entry(unique_code("zjg-gaj")), **change}
    response = exchange.client("zjg-gaj").post("/v1/resources", json=spec)
    assert response.status_code == 422
    assert expected in response.json()["message"]


def test_codes_belong_to_their_provider_and_are_unique(exchange: RunningExchange) -> None:
    squatting = exchange.client("zjg-wjw").post("/v1/resources", json=population_entry(unique_code("zjg-gaj")))
    assert squatting.status_code == 403
    code = unique_code("zjg-gaj")
    assert exchange.client("zjg-gaj").post("/v1/resources", json=population_entry(code)).status_code == 201
    again = exchange.client("zjg-gaj").post("/v1/resources", json=population_entry(code))
    assert again.status_code == 409


def test_schema_changes_are_versioned_and_keys_cannot_change(exchange: RunningExchange) -> None:
    gaj = exchange.client("zjg-gaj")
    code = unique_code("zjg-gaj")
    spec = population_entry(code)
    gaj.post("/v1/resources", json=spec)
    spec["fields"] = [*spec["fields"], {"name": "phone", "type": "string"}]
    updated = gaj.put(f"/v1/resources/{code}", json=spec)
    assert updated.json()["schema_version"] == 2
    versions = gaj.get(f"/v1/resources/{code}/versions").json()
    assert [v["version"] for v in versions] == [1, 2]
    assert len(versions[0]["spec"]["fields"]) == 10
    assert len(versions[1]["spec"]["fields"]) == 11

    rekeyed = gaj.put(f"/v1/resources/{code}", json={**spec, "key_kind": "plain"})
    assert rekeyed.status_code == 409
    assert exchange.client("zjg-wjw").put(f"/v1/resources/{code}", json=spec).status_code == 403
