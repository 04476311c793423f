"""Reconciliation: per resource, the provider's business table and its front-end copy against
the exchange, and the exchange against each subscriber's copy (its granted fields), range by
range (gdx.reconcile). With the business table in, a subscriber's copy is checked end to end:
source = exchange and exchange = copy, and a difference names the hop where it arose.

Copies are read one at a time and each read is paced (rows_per_s), so a round never loads a
database. Data in flight makes a range differ for a moment; a range counts as mismatched
only when it differed in two rounds in a row by the same difference (gdx.reconcile.differences),
which changes from round to round while rows are on their way.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from gdx.aio import pause
from gdx.reconcile import Tally, differences
from monitoring.exchange_client import ExchangeClient
from monitoring.probes import https_get
from monitoring.settings import Settings, Target
from monitoring.sharing import Sharing

log = structlog.get_logger("gdx.monitor.reconcile")


@dataclass(frozen=True)
class Pair:
    resource: str
    department: str  # the copy compared with the exchange's
    copy: str  # source (the provider's business table) | provider (its front-end copy) | subscriber


@dataclass
class PairResult:
    rows: int | None = None  # in the department's copy
    central_rows: int | None = None
    suspect: dict[int, str] = field(default_factory=dict)  # differed in the last round: how
    mismatched: list[int] = field(default_factory=list)  # differed in the last two rounds
    error: str = ""
    checked_at: float | None = None


class Reconciler:
    def __init__(self, settings: Settings, exchange: ExchangeClient, context: ssl.SSLContext) -> None:
        self.settings = settings
        self.exchange = exchange
        self.context = context
        self.results: dict[Pair, PairResult] = {}
        self.rounds = 0

    def pairs(self, sharing: Sharing) -> list[tuple[Pair, Target]]:
        """The copies to compare: the providers and the live grants come from the exchange."""
        found = []
        for target in self.settings.targets:
            for code in target.publishes:
                if sharing.providers.get(code) == target.department:
                    found.append((Pair(code, target.department, "source"), target))
                    found.append((Pair(code, target.department, "provider"), target))
            for code in target.subscribes:
                if sharing.granted(code, target.department):
                    found.append((Pair(code, target.department, "subscriber"), target))
        return found

    async def round(self, sharing: Sharing) -> None:
        wanted = self.pairs(sharing)
        for pair in set(self.results) - {p for p, _ in wanted}:
            del self.results[pair]
        for pair, target in wanted:
            result = self.results.setdefault(pair, PairResult())
            try:
                copy, central = await self._tallies(pair, target)
            except Exception as exc:
                result.error = f"{type(exc).__name__}: {exc}"
                log.warning("reconcile failed", resource=pair.resource, department=pair.department, error=result.error)
                continue
            differing = differences(copy, central)
            result.mismatched = sorted(i for i, how in differing.items() if result.suspect.get(i) == how)
            result.suspect = differing
            result.rows, result.central_rows = copy.rows, central.rows
            result.error, result.checked_at = "", time.time()
            if result.mismatched:
                log.warning(
                    "copies differ", resource=pair.resource, department=pair.department, ranges=result.mismatched
                )
        self.rounds += 1

    async def _tallies(self, pair: Pair, target: Target) -> tuple[Tally, Tally]:
        s = self.settings
        timeout = max(60.0, 4 * s.reconcile_interval_s)
        params = {"side": pair.copy, "ranges": s.reconcile_ranges, "rows_per_s": s.reconcile_rows_per_s}
        raw = await https_get(target, f"/v1/tally/{pair.resource}", self.context, timeout=timeout, params=params)
        copy = Tally.model_validate(raw)
        central = await self.exchange.tally(
            pair.resource,
            {"ranges": s.reconcile_ranges, "rows_per_s": s.reconcile_rows_per_s, "fields": ",".join(copy.fields)},
            timeout,
        )
        return copy, central

    async def run(self, sharing_now: Callable[[], Sharing], stop: asyncio.Event) -> None:
        while not stop.is_set():
            sharing = sharing_now()
            if sharing.providers:
                await self.round(sharing)
            await pause(stop, self.settings.reconcile_interval_s)
