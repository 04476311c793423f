"""The monitor's calls to the central exchange, as an operator (mutual TLS)."""

from __future__ import annotations

from typing import Any

import httpx

from gdx.protocol import MonitoringSummary
from gdx.reconcile import Tally
from monitoring.probes import client_context
from monitoring.settings import Settings


class ExchangeUnavailable(Exception):
    pass


class ExchangeClient:
    def __init__(self, settings: Settings) -> None:
        self._http = httpx.AsyncClient(
            base_url=settings.exchange_url,
            verify=client_context(settings.ca, settings.cert, settings.key),
            timeout=settings.probe_timeout_s,
            trust_env=False,  # a proxy or CA bundle from the environment must not redirect the probe
        )

    async def summary(self) -> MonitoringSummary:
        return MonitoringSummary.model_validate(await self._get("/v1/monitoring/summary"))

    async def tally(self, code: str, params: dict[str, Any], timeout: float) -> Tally:
        return Tally.model_validate(await self._get(f"/v1/monitoring/tally/{code}", params, timeout))

    async def _get(self, path: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        try:
            response = await self._http.get(path, params=params, timeout=timeout or httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            raise ExchangeUnavailable(f"{path}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise ExchangeUnavailable(f"{path}: {response.status_code} {response.text[:200]}")
        return response.json()

    async def close(self) -> None:
        await self._http.aclose()
