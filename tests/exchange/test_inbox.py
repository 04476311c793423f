"""A department's inbox: what waits for it with deadlines, read from the records; the authority's
inbox; the webhook notices, retried until taken, their failures visible."""

from __future__ import annotations

import datetime as dt
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from exchange.inbox_webhooks import notify
from exchange.migrate import migrate
from exchange.registry import sync_from_inventory
from gdx.cli import app
from gdx.inventory import InventoryError, load_inventory
from gdx.workdays import today
from tests.exchange.test_sharing_rules import PURPOSE, file_request, granted, ok, register
from tests.support.exchange import INVENTORY, RunningExchange
from tests.support.nodes import write_agent
from tests.support.postgres import PostgresServer
from tests.support.samples import resident_id


def inbox_of(exchange: RunningExchange, who: str) -> dict[str, dict[str, Any]]:
    answer = exchange.client(who).get("/v1/inbox")
    assert answer.status_code == 200, answer.text
    return {item["key"]: item for item in answer.json()}


def test_the_inbox_shows_each_party_what_waits_for_it_with_its_deadline(exchange: RunningExchange) -> None:
    # A request to answer (the provider), a negotiation (both parties), a dispute (the provider),
    # a catalog update due (the provider), a grant that ends soon (the consumer).
    conditional = register(exchange, "zjg-gaj", "conditional")
    request = file_request(exchange, conditional)
    not_shared = register(exchange, "ws-gaj", "not_shared")
    negotiation = file_request(exchange, not_shared)
    soon = today() + dt.timedelta(days=20)
    expiring, grant = granted(exchange, "zjg-scjgj", expires_on=soon.isoformat())
    drift = ok(exchange.client("zjg-gaj").post(f"/v1/resources/{conditional}/drift",
                                               json={"schema_version": 1, "added": ["mobile"]}))  # fmt: skip

    gaj = inbox_of(exchange, "zjg-gaj")
    reply = gaj[f"reply:{request['id']}"]
    assert (reply["resource"], reply["counterpart"], reply["deadline"]) == (conditional, "zjg-wjw", request["due_date"])
    assert reply["action"] == f"POST /v1/requests/{request['id']}/approve or /refuse"
    assert gaj[f"catalog:{drift['id']}"]["deadline"] == drift["due_date"]

    ws = inbox_of(exchange, "ws-gaj")
    assert ws[f"negotiation:{negotiation['id']}"]["deadline"] == negotiation["negotiation_due"]
    wjw = inbox_of(exchange, "zjg-wjw")
    assert wjw[f"negotiation:{negotiation['id']}"]["counterpart"] == "ws-gaj"
    assert wjw[f"grant_expiring:{grant['id']}"]["deadline"] == soon.isoformat()
    assert f"reply:{request['id']}" not in wjw  # the consumer waits; the provider answers
    assert not any(k.endswith(f":{request['id']}") for k in inbox_of(exchange, "zjg-scjgj"))
    doubt = {"resource": expiring, "key": resident_id(1), "reason": "地址与实际不符"}
    dispute = ok(exchange.client("zjg-wjw").post("/v1/disputes", json=doubt), 201)
    flagged = inbox_of(exchange, "zjg-scjgj")[f"dispute:{dispute['id']}"]
    assert (flagged["counterpart"], flagged["deadline"], flagged["about"]) == ("zjg-wjw", None, "地址与实际不符")

    # The authority's inbox: what was escalated to it, with the decision's deadline.
    ok(exchange.client("ws-gaj").post(f"/v1/requests/{negotiation['id']}/escalate", json={"reason": "协商未果"}))
    assert f"decision:{negotiation['id']}" in inbox_of(exchange, "alice")
    assert f"negotiation:{negotiation['id']}" not in inbox_of(exchange, "ws-gaj")
    assert exchange.client("carol").get("/v1/inbox").status_code == 403
    # Answered, an item leaves the inbox.
    ok(exchange.client("zjg-gaj").post(f"/v1/requests/{request['id']}/refuse", json={"reason": "不符合共享条件"}))
    assert f"reply:{request['id']}" not in inbox_of(exchange, "zjg-gaj")


def test_an_overdue_item_is_marked(exchange: RunningExchange) -> None:
    code = register(exchange, "zjg-gaj", "conditional")
    request = file_request(exchange, code)
    with psycopg.connect(exchange.database_url) as conn:
        conn.execute(
            "UPDATE share_request SET due_date = %s WHERE id = %s", (today() - dt.timedelta(days=2), request["id"])
        )
    item = inbox_of(exchange, "zjg-gaj")[f"reply:{request['id']}"]
    assert item["overdue"] is True
    first = exchange.client("zjg-gaj").get("/v1/inbox").json()[0]
    assert first["overdue"] is True  # the most pressing first


class Webhook:
    """A department's webhook: answers 500 to the first ``fail`` posts of each item, then 204."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                post = orjson.loads(body)
                hook.received.append(post)
                tries = sum(1 for p in hook.received if p["item"]["key"] == post["item"]["key"])
                self.send_response(500 if tries <= hook.fail else 204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/gdx-inbox"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook(exchange: RunningExchange) -> Iterator[Webhook]:
    hook = Webhook(fail=2)
    with psycopg.connect(exchange.database_url) as conn:
        conn.execute("UPDATE department SET inbox_webhook = %s WHERE id = 'zjg-scjgj'", (hook.url,))
    yield hook
    with psycopg.connect(exchange.database_url) as conn:
        conn.execute("UPDATE department SET inbox_webhook = NULL WHERE id = 'zjg-scjgj'")
    hook.server.shutdown()


def test_each_new_item_is_posted_to_the_webhook_once_retried_until_taken(
    exchange: RunningExchange, webhook: Webhook
) -> None:
    code = register(exchange, "zjg-scjgj", "conditional")
    request = file_request(exchange, code)
    key = f"reply:{request['id']}"
    with httpx.Client(timeout=5) as http:
        for _ in range(50):
            notify(exchange.database_url, http, retry_base_s=0.05)
            mine = [n for n in exchange.client("zjg-scjgj").get("/v1/inbox/notices").json() if n["item"] == key]
            if mine and mine[0]["delivered_at"]:
                break
            if mine and mine[0]["attempts"] == 1:
                # Failed once: the monitoring sees the webhook failing.
                summary = exchange.client("carol").get("/v1/monitoring/summary").json()
                scjgj = next(d for d in summary["departments"] if d["department"] == "zjg-scjgj")
                assert scjgj["webhook_failing"] >= 1
                assert "HTTP 500" in mine[0]["last_error"]
            threading.Event().wait(0.1)
        notify(exchange.database_url, http, retry_base_s=0.05)  # another round sends nothing again
    posts = [p for p in webhook.received if p["item"]["key"] == key]
    assert len(posts) == 3  # refused twice, taken the third time
    assert posts[-1]["department"] == "zjg-scjgj"
    assert (posts[-1]["item"]["kind"], posts[-1]["item"]["deadline"]) == ("reply", request["due_date"])
    notice = next(n for n in exchange.client("zjg-scjgj").get("/v1/inbox/notices").json() if n["item"] == key)
    assert (notice["attempts"], notice["last_error"]) == (3, None)
    assert PURPOSE in posts[-1]["item"]["about"]


def test_the_inventory_names_the_webhook_and_refuses_a_bad_one(pg: PostgresServer, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yml"
    host = "          gdx_department: {id: zjg-gaj, name: 公安局, jurisdiction: zhangjiagang, inbox_webhook: %s}\n"
    base = INVENTORY.format(hosts="        fe-gaj:\n          ansible_host: 192.0.2.9\n" + host)
    inventory.write_text(base % "ftp://oa.zjg.gov.cn/inbox", encoding="utf-8")
    with pytest.raises(InventoryError) as caught:
        load_inventory(inventory, require_secrets=False)
    assert "gdx_department.inbox_webhook" in "\n".join(caught.value.problems)

    inventory.write_text(base % "https://oa.zjg.gov.cn/gdx-inbox", encoding="utf-8")
    url = pg.create_database("exchange_webhook_registry")
    migrate(url)
    sync_from_inventory(url, load_inventory(inventory, require_secrets=False))
    with psycopg.connect(url) as conn:
        named = conn.execute("SELECT inbox_webhook FROM department WHERE id = 'zjg-gaj'").fetchone()
    assert named == ("https://oa.zjg.gov.cn/gdx-inbox",)


def test_gdx_inbox_shows_the_department_what_waits_and_exits_1_when_overdue(
    exchange: RunningExchange, tmp_path: Path
) -> None:
    code = register(exchange, "ws-gaj", "conditional")
    request = file_request(exchange, code)
    node = write_agent(tmp_path, "ws-gaj", exchange, "postgresql://unused@127.0.0.1/none")
    shown = CliRunner().invoke(app, ["inbox", "--config", str(node.config_path)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert f"reply {request['id']}" in shown.output
    assert request["due_date"] in shown.output

    with psycopg.connect(exchange.database_url) as conn:
        late = today() - dt.timedelta(days=1)
        conn.execute("UPDATE share_request SET due_date = %s WHERE id = %s", (late, request["id"]))
    as_json = CliRunner().invoke(app, ["inbox", "--config", str(node.config_path), "--json"])
    assert as_json.exit_code == 1, as_json.output  # something is overdue
    item = next(i for i in orjson.loads(as_json.stdout) if i["key"] == f"reply:{request['id']}")
    assert item["overdue"] is True

    unreachable = write_agent(tmp_path / "other", "ws-gaj", exchange, "postgresql://unused@127.0.0.1/none")
    config = unreachable.config_path.read_text(encoding="utf-8").replace(exchange.url, "https://127.0.0.1:9")
    unreachable.config_path.write_text(config, encoding="utf-8")
    failed = CliRunner().invoke(app, ["inbox", "--config", str(unreachable.config_path)])
    assert failed.exit_code == 2
    assert "cannot reach the exchange" in failed.output
