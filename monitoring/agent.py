"""The monitoring agent (`gdx monitor run`): every interval, probe all nodes at once and read
the exchange's summary; keep what was seen for /metrics, the status page and the alerts.

Scrapes read the last cycle's results from memory, so a slow node never slows a scrape.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import structlog

from gdx.aio import pause
from gdx.inventory import InventoryError
from gdx.protocol import MonitoringSummary
from monitoring.exchange_client import ExchangeClient, ExchangeUnavailable
from monitoring.lag import HopKey, LagTracker
from monitoring.probes import ProbeResult, client_context, probe
from monitoring.reconciler import Reconciler
from monitoring.settings import Settings, Target, reloaded
from monitoring.sharing import Sharing, sharing_of

log = structlog.get_logger("gdx.monitor")


@dataclass
class Snapshot:
    """What the last cycle saw."""

    probes: dict[str, ProbeResult] = field(default_factory=dict)
    summary: MonitoringSummary | None = None
    exchange_error: str = ""
    finished_at: float | None = None
    seconds: float = 0.0
    cycles: int = 0


class Monitor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The monitoring's identity: the nodes show their health and tallies to it alone.
        self.context = client_context(settings.ca, settings.cert, settings.key)
        self.exchange = ExchangeClient(settings)
        self.lag = LagTracker(settings.heartbeat_interval_s, settings.stall_after_s, settings.interval_s)
        self.reconciler = Reconciler(settings, self.exchange, self.context)
        self.snapshot = Snapshot()
        self._limit = asyncio.Semaphore(settings.max_concurrent_probes)

    @property
    def targets(self) -> tuple[Target, ...]:
        return self.settings.targets

    def sharing(self) -> Sharing:
        return sharing_of(self.snapshot.summary)

    async def cycle(self) -> Snapshot:
        started = time.monotonic()

        async def limited(target: Target) -> ProbeResult:
            async with self._limit:
                return await probe(target, self.context, self.settings.probe_timeout_s)

        summary_task = asyncio.create_task(self._summary())
        results = await asyncio.gather(*(limited(t) for t in self.targets))
        summary, exchange_error = await summary_task
        previous = self.snapshot
        snapshot = Snapshot(
            probes={r.department: r for r in results},
            summary=summary or previous.summary,
            exchange_error=exchange_error,
            finished_at=time.time(),
            seconds=time.monotonic() - started,
            cycles=previous.cycles + 1,
        )
        self._track_heartbeats(snapshot, fresh_summary=summary)
        self.snapshot = snapshot
        return snapshot

    async def _summary(self) -> tuple[MonitoringSummary | None, str]:
        try:
            return await self.exchange.summary(), ""
        except ExchangeUnavailable as exc:
            return None, str(exc)

    def hop_keys(self, summary: MonitoringSummary | None) -> set[HopKey]:
        """Every hop the inventory and the catalog say should carry heartbeats."""
        sharing = sharing_of(summary)
        providers = sharing.providers
        keys = set()
        for target in self.targets:
            for code in target.publishes:
                keys.add(HopKey(code, target.department, "extract", target.department))
                keys.add(HopKey(code, target.department, "central", "central"))
            for code in target.subscribes:
                if sharing.granted(code, target.department):
                    keys.add(HopKey(code, providers[code], "subscriber", target.department))
        return keys

    def _track_heartbeats(self, snapshot: Snapshot, fresh_summary: MonitoringSummary | None) -> None:
        self.lag.expect(self.hop_keys(snapshot.summary))
        sharing = sharing_of(snapshot.summary)
        providers = sharing.providers
        for target in self.targets:
            result = snapshot.probes.get(target.department)
            if result is None or not result.answered:
                continue
            beats = result.health.get("heartbeats") or {}
            for code in target.publishes:
                beat = beats.get(f"extract/{code}")
                if beat:
                    key = HopKey(code, target.department, "extract", target.department)
                    self.lag.observe(key, beat["seq"], beat["source_time"], beat["seen_at"])
            for code in target.subscribes:
                beat = beats.get(f"pull/{code}")
                if beat and sharing.granted(code, target.department):
                    key = HopKey(code, providers[code], "subscriber", target.department)
                    self.lag.observe(key, beat["seq"], beat["source_time"], beat["seen_at"])
        if fresh_summary is not None:
            for resource in fresh_summary.resources:
                hb = resource.heartbeat
                if hb is not None:
                    key = HopKey(resource.code, resource.provider, "central", "central")
                    self.lag.observe(key, hb.seq, hb.source_time.timestamp(), hb.received_at.timestamp())

    async def run_cycles(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            snapshot = await self.cycle()
            down = [d for d, r in snapshot.probes.items() if not r.up]
            log.info("cycle", seconds=round(snapshot.seconds, 3), nodes=len(snapshot.probes), down=down)
            wait = max(0.0, self.settings.interval_s - (time.monotonic() - started))
            await pause(stop, wait)

    def reload(self) -> None:
        """Re-read the inventory (SIGHUP): departments added are probed from the next cycle, and
        the series of departments removed disappear."""
        try:
            settings = reloaded(self.settings)
        except InventoryError as exc:
            log.error("inventory not reloaded, keeping the previous targets", problems=exc.problems)
            return
        self.settings = self.reconciler.settings = settings
        self.snapshot.probes = {
            d: r for d, r in self.snapshot.probes.items() if d in {t.department for t in self.targets}
        }
        log.info("inventory reloaded", targets=len(settings.targets))

    async def close(self) -> None:
        await self.exchange.close()
