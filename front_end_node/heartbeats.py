"""The heartbeat a publication's extract hop sends after its reads: how fresh the source was read.

Where the department allowed it, the agent writes a row of the business database's heartbeat
table and reads it back (its number and the database's clock); else it takes the database's
clock alone. The exchange and the subscribers measure lag by it (docs/front-end-node.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

from front_end_node.sources import Source
from front_end_node.wire import aware


class SourceHeartbeat:
    def __init__(self, source: Source, table: str | None, resource: str, zone: ZoneInfo, interval_s: float) -> None:
        self.source = source
        self.table = table
        self.resource = resource
        self.zone = zone
        self.interval_s = interval_s

    async def __call__(self, last_seq: int) -> tuple[int, dt.datetime] | None:
        """(seq, source time) of a new beat, or None when the heartbeat row did not move on."""
        if self.table is None:
            return last_seq + 1, await asyncio.to_thread(self.source.now)
        read = await asyncio.to_thread(self._write_and_read, self.table)
        if read is None or read[0] <= last_seq:
            return None
        return read[0], aware(read[1], self.zone)

    def _write_and_read(self, table: str) -> tuple[int, dt.datetime] | None:
        self.source.write_heartbeat(table, self.resource)
        return self.source.read_heartbeat(table, self.resource)
