"""What the exchange reads of a request and how long it waits: bodies too large, bodies and
headers that stop arriving, clients that go away."""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from exchange.tls import MutualTlsHttpTools
from tests.support.exchange import RunningExchange, start_exchange
from tests.support.postgres import PostgresServer
from tests.support.promtool import lint_metrics
from tests.support.samples import population_entry, resident_id, unique_code

MAX_BODY = 64 * 1024
MAX_UPLOAD = 4 * MAX_BODY
MAX_UPLOAD_ROWS = 1000
IDLE_S = 0.5


@pytest.fixture(scope="module")
def strict(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningExchange]:
    running = start_exchange(
        pg, tmp_path_factory.mktemp("limits"), "exchange_limits", max_body_bytes=MAX_BODY, body_idle_s=IDLE_S,
        upload_max_bytes=MAX_UPLOAD, upload_max_rows=MAX_UPLOAD_ROWS, upload_max_workbook_rows=2,
    )  # fmt: skip
    yield running
    running.stop()


def _connect(exchange: RunningExchange, name: str = "zjg-gaj") -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=exchange.pki / "ca.crt")
    context.load_cert_chain(exchange.pki / f"{name}.crt", exchange.pki / f"{name}.key")
    raw = socket.create_connection(("127.0.0.1", exchange.port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _answer(sock: ssl.SSLSocket) -> tuple[int, dict[str, object]]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def _length(data: bytes) -> int:
    found = re.search(rb"content-length: (\d+)", data.split(b"\r\n\r\n", 1)[0], re.IGNORECASE)
    return int(found.group(1)) if found else 0


def _post_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: exchange\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    ).encode()


def _refusals(exchange: RunningExchange) -> int:
    with psycopg.connect(exchange.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM audit_log WHERE entry::jsonb ->> 'outcome' = 'refused'").fetchone()
    assert row is not None
    return int(row[0])


def test_a_body_shorter_than_announced_is_refused_in_time(strict: RunningExchange) -> None:
    before = _refusals(strict)
    with _connect(strict) as sock:
        started = time.monotonic()
        sock.sendall(_post_head("/v1/disputes", 1000) + b'{"resource"')
        status, body = _answer(sock)
        took = time.monotonic() - started
    assert status == 408
    assert "stalled" in str(body["message"])
    assert took < 10 * IDLE_S, f"answered after {took:.1f} s"
    assert _refusals(strict) == before + 1


def test_a_body_announced_too_large_is_refused_before_it_is_read(strict: RunningExchange) -> None:
    before = _refusals(strict)
    with _connect(strict) as sock:
        sock.sendall(_post_head("/v1/resources/zjg-gaj.x/changes", 50 * 1024 * 1024))
        status, body = _answer(sock)
    assert status == 413
    assert body["error"] == "body_too_large"
    assert _refusals(strict) == before + 1


def test_a_chunked_body_growing_too_large_is_refused(strict: RunningExchange) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"resource": "' + b"x" * MAX_BODY
        yield b'"}'

    response = strict.client("zjg-wjw").post(
        "/v1/disputes", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


def test_headers_that_stop_arriving_are_answered_and_the_connection_closed(
    strict: RunningExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MutualTlsHttpTools, "headers_s", IDLE_S)
    with _connect(strict) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v1/whoami HTTP/1.1\r\nhost: exch")
        status, body = _answer(sock)
        took = time.monotonic() - started
        assert sock.recv(1) == b""  # closed
    assert status == 408
    assert body["error"] == "request_timeout"
    assert took < 10 * IDLE_S


def _metric(exchange: RunningExchange, name: str, **labels: str) -> float:
    text = exchange.client("carol").get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        named = line.startswith((name + "{", name + " "))
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_client_going_away_mid_body_is_no_server_error(strict: RunningExchange, tmp_path: Path) -> None:
    route = "/v1/resources/{code}/changes"
    errors = _metric(strict, "gdx_exchange_errors_total")
    gone = _metric(strict, "gdx_exchange_client_disconnects_total", route=route)
    with _connect(strict) as sock:
        sock.sendall(_post_head("/v1/resources/zjg-gaj.x/changes", 1000) + b'{"batch_id"')
        time.sleep(IDLE_S / 5)
    deadline = time.monotonic() + 5
    while _metric(strict, "gdx_exchange_client_disconnects_total", route=route) == gone:
        assert time.monotonic() < deadline, "the disconnect was not counted"
        time.sleep(0.05)
    assert _metric(strict, "gdx_exchange_errors_total") == errors


def test_the_exchange_metrics_pass_promtool(strict: RunningExchange) -> None:
    strict.client("zjg-gaj").get("/v1/nothing-here")  # a refusal counted, so its series exist
    assert lint_metrics(strict.client("carol").get("/metrics").text) == []


def test_a_file_may_be_larger_than_a_batch_up_to_its_own_limits(strict: RunningExchange) -> None:
    code = unique_code("zjg-gaj")
    gaj = strict.client("zjg-gaj")
    assert gaj.post("/v1/resources", json=population_entry(code)).status_code == 201
    template = gaj.get(f"/v1/resources/{code}/template.csv").content
    header = template.split(b"\r\n")[0]
    row = ",".join([resident_id(1), "居民", "", "", "x" * 200, "", "", "", "", ""]).encode()
    larger_than_a_batch = b"\r\n".join([header, row])
    padded = larger_than_a_batch + b"\r\n" * (MAX_BODY + 1)  # the row's end, then blank rows: skipped, counted
    answer = gaj.post(f"/v1/resources/{code}/uploads", content=padded, headers={"content-type": "text/csv"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["counts"]["blank"] == MAX_BODY
    too_large = gaj.post(f"/v1/resources/{code}/uploads", content=b"x" * (MAX_UPLOAD + 1))
    assert too_large.status_code == 413
    assert too_large.json()["error"] == "body_too_large"
    many = b"\r\n".join([header, *(row.replace(resident_id(1).encode(), resident_id(n).encode())
                                     for n in range(MAX_UPLOAD_ROWS + 1))])  # fmt: skip
    assert len(many) <= MAX_UPLOAD
    refused = gaj.post(f"/v1/resources/{code}/uploads", content=many, headers={"content-type": "text/csv"})
    assert refused.status_code == 413
    assert refused.json()["error"] == "too_many_rows"
    assert f"{MAX_UPLOAD_ROWS:,}" in refused.json()["message"]
    # A batch keeps the batch's limit.
    batch_body = b"{" + b" " * MAX_BODY + b"}"
    pushed = gaj.post(f"/v1/resources/{code}/changes", content=batch_body, headers={"content-type": "application/json"})
    assert pushed.status_code == 413
