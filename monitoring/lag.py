"""Lag per hop from heartbeats (the pt-heartbeat technique), and the stalled signal.

A heartbeat leaves the business database with its source time and is recorded at every hop
with the time it arrived. The lag at a hop is how late that hop is behind the source:

    lag = max(arrived - source, now - source - slack)

The first term is the newest heartbeat's own delay, exact while heartbeats flow; the second
grows with the clock when they stop, so that a blocked link never reads as fresh (nor as 0).
The slack is how stale the newest heartbeat may be while the hop works: one heartbeat period
(the configured interval, or the period observed at the hop when heartbeats come slower),
plus the agent's refresh of its figures and the monitor's own cycle.
Hops: extract (business DB -> provider front-end DB), central (-> exchange), subscriber
(-> a subscriber's front-end DB, which is also the end-to-end lag).

Stalled is separate from late (Burrow's lesson): a hop whose heartbeat sequence has not moved
for stall_after_s is stopped, whatever its lag figure; a hop never seen since the monitor
started counts as stalled once stall_after_s have passed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class HopKey:
    resource: str
    provider: str
    hop: str  # extract | central | subscriber
    department: str  # where the hop ends: the provider, "central", or the subscriber


@dataclass
class Beat:
    seq: int
    source_time: float
    arrived: float


@dataclass
class HopState:
    beat: Beat | None = None
    advanced_at: float = 0.0  # monotonic, when seq last grew (or when first expected)
    period: float = 0.0  # observed seconds between heartbeats at the source


AGENT_REFRESH_S = 2.0  # how often an agent re-reads its heartbeat figures (front_end_node.agent)


class LagTracker:
    def __init__(self, heartbeat_interval_s: float, stall_after_s: float, cycle_s: float = 0.0) -> None:
        self.interval = heartbeat_interval_s
        self.stall_after = stall_after_s
        self.cycle = cycle_s
        self.hops: dict[HopKey, HopState] = {}

    def expect(self, keys: set[HopKey]) -> None:
        """The hops the inventory says exist; the others are forgotten (their series disappear)."""
        now = time.monotonic()
        for key in keys - self.hops.keys():
            self.hops[key] = HopState(advanced_at=now)
        for key in self.hops.keys() - keys:
            del self.hops[key]

    def observe(self, key: HopKey, seq: int, source_time: float, arrived: float) -> None:
        state = self.hops.get(key)
        if state is None:
            return
        if state.beat is None or seq > state.beat.seq:
            if state.beat is not None:
                state.period = (source_time - state.beat.source_time) / (seq - state.beat.seq)
            state.advanced_at = time.monotonic()
            state.beat = Beat(seq, source_time, arrived)

    def lag(self, key: HopKey, now: float) -> float | None:
        """Seconds, or None when the hop has never been seen (unknown is not 0)."""
        state = self.hops[key]
        beat = state.beat
        if beat is None:
            return None
        slack = max(self.interval, state.period) + AGENT_REFRESH_S + self.cycle
        return max(beat.arrived - beat.source_time, now - beat.source_time - slack, 0.0)

    def stalled(self, key: HopKey) -> bool:
        return time.monotonic() - self.hops[key].advanced_at > self.stall_after

    def seq(self, key: HopKey) -> int | None:
        beat = self.hops[key].beat
        return None if beat is None else beat.seq
