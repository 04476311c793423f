"""Row counts and checksums over key ranges: how the monitoring agent finds out whether the
provider's front-end database, the central exchange and every subscriber hold the same rows.

This is protocol code: the agent (provider mirror, subscriber tables) and the exchange
(current rows) compute their tallies with it, so that equal data gives equal figures
whatever the store. The technique is data-diff's and pt-table-checksum's: split the keys
into ranges, compare a count and an order-independent checksum per range, and look only
at the ranges that differ. Ranges are ranges of a key's hash, not of the key itself,
because the three stores do not sort keys alike (text collations, integer keys kept as text).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from gdx.fields import FieldType

DEFAULT_RANGES = 64
MAX_RANGES = 4096
_MASK = (1 << 64) - 1


class Tally(BaseModel):
    """Per key range: how many rows and the sum (mod 2**64) of their row digests."""

    model_config = ConfigDict(extra="forbid")

    resource: str
    fields: list[str] = Field(description="The fields the digests cover, key first")
    ranges: int
    rows: int
    counts: list[int]
    sums: list[str] = Field(description="Hexadecimal, one per range")
    seconds: float = Field(description="How long the tally took (it is rate-limited)")


def key_range(key: str, ranges: int) -> int:
    """The range a key falls in: the top bits of its SHA-256, so that ranges hold about as many keys."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") * ranges >> 64


def canonical(ftype: FieldType, value: Any) -> Any:
    """The one form of a value, whether it comes from JSON (the wire, the exchange, the
    provider's mirror) or from a typed column (a subscriber's table)."""
    if value is None:
        return None
    if ftype is FieldType.TIMESTAMP:
        moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
        return moment.astimezone(dt.UTC).isoformat()
    if ftype is FieldType.DATE:
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    if ftype is FieldType.NUMBER:
        return float(value)
    return value


def row_digest(values: Sequence[Any]) -> int:
    return int.from_bytes(hashlib.blake2b(orjson.dumps(list(values)), digest_size=8).digest(), "big")


class Counter:
    """Adds rows to a tally; the types say how each field is put in its canonical form."""

    def __init__(self, resource: str, fields: Sequence[tuple[str, FieldType]], ranges: int) -> None:
        if not 1 <= ranges <= MAX_RANGES:
            raise ValueError(f"ranges must be between 1 and {MAX_RANGES}, not {ranges}")
        self.resource = resource
        self.fields = list(fields)
        self.ranges = ranges
        self.counts = [0] * ranges
        self.sums = [0] * ranges
        self.started = time.monotonic()

    def add(self, key: Any, values: Sequence[Any]) -> None:
        """``values`` in the order of ``fields`` (the key's own field among them)."""
        text = str(key)
        slot = key_range(text, self.ranges)
        digest = row_digest([canonical(t, v) for (_, t), v in zip(self.fields, values, strict=True)])
        self.counts[slot] += 1
        self.sums[slot] = (self.sums[slot] + digest) & _MASK

    def tally(self) -> Tally:
        return Tally(
            resource=self.resource,
            fields=[name for name, _ in self.fields],
            ranges=self.ranges,
            rows=sum(self.counts),
            counts=self.counts,
            sums=[f"{s:016x}" for s in self.sums],
            seconds=round(time.monotonic() - self.started, 3),
        )


async def paced(rows: AsyncIterator[Any], rows_per_s: float, chunk: int = 500) -> AsyncIterator[Any]:
    """Yield rows no faster than ``rows_per_s``, pausing every ``chunk`` rows: a tally reads
    a whole table, and must never load the database that also serves the data path."""
    started = time.monotonic()
    done = 0
    async for row in rows:
        yield row
        done += 1
        if done % chunk == 0:
            ahead = done / rows_per_s - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)


def differences(a: Tally, b: Tally) -> dict[int, str]:
    """Per range where two tallies differ, what the difference is: the count and the sum of
    ``a`` less ``b``'s. Rows in flight add to one side and then the other, so the difference of
    a busy range changes from one round to the next; a row lost or changed for good leaves the
    same difference round after round."""
    differing = mismatched(a, b)
    return {
        i: f"{a.counts[i] - b.counts[i]}:{(int(a.sums[i], 16) - int(b.sums[i], 16)) & _MASK:016x}" for i in differing
    }


def mismatched(a: Tally, b: Tally) -> list[int]:
    """The ranges where two tallies of the same fields differ."""
    if a.ranges != b.ranges or a.fields != b.fields:
        raise ValueError(f"tallies of {a.resource} are not comparable ({a.fields} vs {b.fields})")
    return [i for i in range(a.ranges) if a.counts[i] != b.counts[i] or a.sums[i] != b.sums[i]]
