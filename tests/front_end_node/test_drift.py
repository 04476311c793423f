"""The provider's node finds its table drifting from the catalog entry and tells the exchange,
which opens a catalog-update item; the table matching again closes it."""

from __future__ import annotations

from typing import Any

from tests.support.nodes import exchange_client, wait_for
from tests.support.world import World


def test_a_column_added_at_the_source_opens_a_catalog_item_and_dropping_it_closes_it(world: World) -> None:
    code, source, provider = world.population(catalog_check_interval_s=1)
    source.insert(range(5))
    provider.start()

    def items(status: str = "open") -> list[dict[str, Any]]:
        with exchange_client(world.exchange, "zjg-gaj") as gaj:
            found = gaj.get("/v1/catalog-items", params={"status": status}).json()
        return [i for i in found if i["resource"] == code]

    provider.wait_ready().wait_cycles("extract", code)
    assert items() == []  # the columns the table had from the start are no drift
    source.execute(f"ALTER TABLE {source.table} ADD COLUMN mobile text")
    wait_for(lambda: bool(items()), 30, "a catalog-update item for the new column", on_timeout=provider.log)
    item = items()[0]
    assert (item["cause"], item["detail"]["added"], item["detail"]["missing"]) == ("drift", ["mobile"], [])
    assert item["due_date"] is not None  # zhangjiagang: 3 working days

    source.execute(f"ALTER TABLE {source.table} DROP COLUMN mobile")
    wait_for(lambda: not items(), 30, "the item to close when the table matches again", on_timeout=provider.log)
    closed = [i for i in items("closed") if i["id"] == item["id"]]
    assert closed[0]["closed_reason"] == "the table matches the catalog entry again"
