"""Mutual TLS: who may call at all, and as whom."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from gdx.pki import init_ca, issue
from tests.support.exchange import RunningExchange


def test_health_needs_no_certificate_but_the_api_does(exchange: RunningExchange) -> None:
    with exchange.anonymous() as anon:
        assert anon.get("/healthz").json() == {"status": "ok"}
        assert anon.get("/readyz").json()["status"] == "ready"
        refused = anon.get("/v1/resources")
        documents = [anon.get(path).status_code for path in ("/openapi.json", "/docs", "/redoc", "/metrics")]
    assert refused.status_code == 401
    assert "client certificate" in refused.json()["message"]
    assert documents == [401, 401, 404, 401]
    department = exchange.client("zjg-gaj")
    assert department.get("/openapi.json").json()["info"]["title"] == "GDX central exchange"
    assert "swagger" in department.get("/docs").text.lower()


def test_a_certificate_from_another_ca_fails_the_handshake(exchange: RunningExchange, tmp_path: Path) -> None:
    init_ca(tmp_path)
    cert, key = issue(tmp_path, "zjg-gaj")  # same name, wrong CA
    context = ssl.create_default_context(cafile=exchange.pki / "ca.crt")
    context.load_cert_chain(cert, key)
    with (
        httpx.Client(base_url=exchange.url, verify=context) as c,
        pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
    ):
        c.get("/v1/whoami")


def _talk(exchange: RunningExchange, cert: Path, key: Path) -> bytes:
    """A TLS connection with this certificate, a request, and the first bytes of the answer."""
    context = ssl.create_default_context(cafile=exchange.pki / "ca.crt")
    context.load_cert_chain(cert, key)
    with (
        socket.create_connection(("127.0.0.1", exchange.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /v1/whoami HTTP/1.1\r\nhost: exchange\r\n\r\n")
        return tls.recv(1024)


def _refused_certificate(kind: str, exchange: RunningExchange, tmp_path: Path) -> tuple[Path, Path]:
    if kind == "another CA":
        init_ca(tmp_path)
        return issue(tmp_path, "zjg-gaj")
    if kind == "expired":
        made = issue(exchange.pki, "zjg-gaj", days=0, out_dir=tmp_path)
        time.sleep(1.1)  # past its last second of validity
        return made
    # A server certificate (serverAuth only) presented as a client's.
    return issue(exchange.pki, "zjg-gaj", server_names=["zjg-gaj.example"], out_dir=tmp_path)


REFUSED_CERTIFICATES = {
    "another CA": "ALERT_UNKNOWN_CA",
    "expired": "ALERT_CERTIFICATE_EXPIRED",
    "wrong key usage": "ALERT_(UNSUPPORTED|BAD)_CERTIFICATE",
}


@pytest.mark.parametrize("attempt", range(3))
@pytest.mark.parametrize(("kind", "alert"), REFUSED_CERTIFICATES.items(), ids=REFUSED_CERTIFICATES.keys())
def test_a_refused_client_certificate_gets_an_alert_that_says_why(
    exchange: RunningExchange, tmp_path: Path, kind: str, alert: str, attempt: int
) -> None:
    """Not a bare reset: the TLS alert naming the reason reaches the client, every time."""
    cert, key = _refused_certificate(kind, exchange, tmp_path)
    with pytest.raises(ssl.SSLError, match=alert):
        _talk(exchange, cert, key)


def test_the_refusal_is_logged_with_the_subject_and_reason(
    exchange: RunningExchange, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init_ca(tmp_path)
    cert, key = issue(tmp_path, "zjg-wjw")
    with pytest.raises(ssl.SSLError):
        _talk(exchange, cert, key)
    logged = capsys.readouterr()
    line = next(x for x in (logged.out + logged.err).splitlines() if "handshake was refused" in x)
    assert "CN=zjg-wjw" in line
    assert "unable to get local issuer certificate" in line


def test_the_certificate_names_the_caller_and_its_role(exchange: RunningExchange) -> None:
    assert exchange.client("zjg-gaj").get("/v1/whoami").json() == {"name": "zjg-gaj", "role": "department"}
    assert exchange.client("bob").get("/v1/whoami").json() == {"name": "bob", "role": "auditor"}


def test_a_department_missing_from_the_registry_is_refused(exchange: RunningExchange) -> None:
    response = exchange.client("ghost").get("/v1/resources")
    assert response.status_code == 403
    assert "not in the department registry" in response.json()["message"]


def test_a_forwarded_identity_header_from_a_non_ingress_peer_is_ignored(exchange: RunningExchange) -> None:
    forged = quote((exchange.pki / "zjg-scjgj.crt").read_text())
    response = exchange.client("zjg-gaj").get("/v1/whoami", headers={"ssl-client-cert": forged})
    assert response.json()["name"] == "zjg-gaj"


def test_the_ingress_forwards_a_verified_identity(exchange: RunningExchange, tmp_path: Path) -> None:
    ingress = exchange.client("ingress-1")
    forwarded = quote((exchange.pki / "zjg-scjgj.crt").read_text())
    assert ingress.get("/v1/whoami", headers={"ssl-client-cert": forwarded}).json()["name"] == "zjg-scjgj"
    assert ingress.get("/v1/whoami").status_code == 401  # nothing forwarded: no identity

    init_ca(tmp_path)
    foreign, _ = issue(tmp_path, "zjg-scjgj")
    response = ingress.get("/v1/whoami", headers={"ssl-client-cert": quote(foreign.read_text())})
    assert response.status_code == 401
    assert "not issued by the platform CA" in response.json()["message"]


def test_roles_are_separated(exchange: RunningExchange) -> None:
    # The auditor reads the audit trail but records no decisions; the admin the reverse;
    # a department does neither.
    assert exchange.client("bob").get("/v1/audit").status_code == 200
    assert exchange.client("alice").get("/v1/audit").status_code == 403
    assert exchange.client("zjg-gaj").get("/v1/audit").status_code == 403
    decision = {"outcome": "approve", "reason": "x"}
    assert exchange.client("bob").post("/v1/requests/1/decision", json=decision).status_code == 403
    assert exchange.client("zjg-gaj").post("/v1/requests/1/decision", json=decision).status_code == 403
    assert exchange.client("carol").get("/metrics").status_code == 200
    assert exchange.client("zjg-gaj").get("/metrics").status_code == 403


@pytest.mark.slow  # idles past the keep-alive in real time
def test_an_idle_connection_outlives_a_clients_keep_alive(exchange: RunningExchange) -> None:
    """httpx keeps an idle connection 5 s and reuses it; a server that closes at the same moment
    makes that request fail with no response. The exchange keeps idle connections longer."""
    context = ssl.create_default_context(cafile=exchange.pki / "ca.crt")
    connection = http.client.HTTPSConnection("127.0.0.1", exchange.port, context=context, timeout=10)
    try:
        for pause in (0, 6):  # 6 s: past httpx's keepalive_expiry (5 s), which uvicorn's default equals
            time.sleep(pause)
            connection.request("GET", "/healthz")  # on the same connection: http.client reuses it
            answer = connection.getresponse()
            assert answer.status == 200
            assert json.loads(answer.read()) == {"status": "ok"}
    finally:
        connection.close()
