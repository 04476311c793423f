"""The OpenAPI document, fuzzed with schemathesis against the running exchange: no 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.support.exchange import RunningExchange

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api_schema(exchange: RunningExchange) -> Any:
    document = exchange.client("zjg-gaj").get("/openapi.json").json()
    return schemathesis.openapi.from_dict(document)


@pytest.fixture(scope="module")
def session(exchange: RunningExchange) -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override verify
        s.verify = str(exchange.pki / "ca.crt")
        s.cert = (str(exchange.pki / "zjg-gaj.crt"), str(exchange.pki / "zjg-gaj.key"))
        # The fuzzer must get past authentication, or it only ever meets the 401 path.
        assert s.get(f"{exchange.url}/v1/whoami").json()["name"] == "zjg-gaj"
        yield s


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
# derandomize: the same examples every run, so CI's verdict does not depend on luck.
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_server_fail(case: Any, exchange: RunningExchange, session: requests.Session) -> None:
    case.call_and_validate(
        base_url=exchange.url,
        session=session,
        verify=session.verify,
        cert=session.cert,
        checks=[not_a_server_error],
    )
