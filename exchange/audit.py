"""The audit trail: every push, pull, lookup, download, grant decision and refusal.

Entries are canonical JSON; the database chains them (``audit_append``) and refuses
updates and deletes. `verify` walks the chain and names every entry that was edited,
removed or reordered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, TypedDict

import psycopg
from typing_extensions import Unpack

from exchange.identity import Principal

GENESIS = bytes(32)
# Who a refused request came from when it presented no certificate the exchange accepts.
NO_CERTIFICATE = ("(no certificate)", "none")


def canonical(entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


class Details(TypedDict, total=False):
    """What an entry says beside who and what: the resource, the stated purpose, the scope (rows,
    fields, batch...), and the outcome ("ok" unless "refused")."""

    resource: str | None
    purpose: str | None
    scope: dict[str, Any] | None
    outcome: str


def make_entry(who: Principal | None, action: str, **details: Unpack[Details]) -> tuple[dt.datetime, str]:
    at = dt.datetime.now(dt.UTC)
    actor, role = (who.name, who.role.value) if who is not None else NO_CERTIFICATE
    entry = {
        "at": at.isoformat(),
        "actor": actor,
        "role": role,
        "action": action,
        "resource": details.get("resource"),
        "purpose": details.get("purpose"),
        "scope": details.get("scope") or {},
        "outcome": details.get("outcome", "ok"),
    }
    return at, canonical(entry)


async def record(
    conn: psycopg.AsyncConnection[Any], who: Principal | None, action: str, **details: Unpack[Details]
) -> None:
    """Append one entry inside the caller's transaction; it commits or rolls back with it. No
    result is read, so in pipeline mode the entry goes out with the commit."""
    at, text = make_entry(who, action, **details)
    await conn.execute("SELECT audit_append(%s, %s)", (at, text))


@dataclass
class Verification:
    entries: int = 0
    head_id: int = 0
    head_hash: str = GENESIS.hex()
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(conninfo: str, *, anchor: tuple[int, str] | None = None, max_problems: int = 50) -> Verification:
    """Recompute the chain from the first entry; ``anchor`` is an (id, hash) recorded earlier
    outside the database, which also catches a rewritten tail."""
    result = Verification()
    expected_prev, expected_id = GENESIS, 1
    with psycopg.connect(conninfo) as conn:
        head = conn.execute("SELECT last_id, hash FROM audit_head").fetchone()
        with conn.cursor(name="audit_verify") as cur:
            cur.itersize = 5000
            cur.execute("SELECT id, at, entry, prev_hash, hash FROM audit_log ORDER BY id")
            for entry_id, at, text, prev_hash, stored_hash in cur:
                result.entries += 1
                if entry_id != expected_id:
                    result.problems.append(
                        f"entries {expected_id}..{entry_id - 1} are missing (deleted)"
                        if entry_id > expected_id
                        else f"entry {entry_id} is out of order"
                    )
                if bytes(prev_hash) != expected_prev:
                    result.problems.append(f"entry {entry_id}: its link to the previous entry is broken")
                recomputed = hashlib.sha256(expected_prev + text.encode()).digest()
                if recomputed != bytes(stored_hash):
                    result.problems.append(f"entry {entry_id}: its content was changed after it was written")
                try:
                    written_at = dt.datetime.fromisoformat(json.loads(text)["at"])
                except (ValueError, KeyError, TypeError):
                    result.problems.append(f"entry {entry_id}: its content is not a valid audit entry")
                else:
                    if written_at != at:
                        result.problems.append(f"entry {entry_id}: its time column was changed")
                if anchor and entry_id == anchor[0] and bytes(stored_hash).hex() != anchor[1]:
                    result.problems.append(f"entry {entry_id}: does not match the anchor recorded earlier")
                # Chain on the stored hash so one edit is reported once, not for every later entry.
                expected_prev, expected_id = bytes(stored_hash), entry_id + 1
                if len(result.problems) >= max_problems:
                    result.problems.append("... stopped after too many problems")
                    break
        last_id, last_hash = (head[0], bytes(head[1])) if head else (0, GENESIS)
        if result.ok and (last_id != expected_id - 1 or last_hash != expected_prev):
            result.problems.append(
                f"the chain ends at entry {expected_id - 1} but the head says {last_id}: entries were removed"
            )
        if anchor and anchor[0] > expected_id - 1:
            result.problems.append(f"the anchored entry {anchor[0]} is gone: the log was truncated")
    result.head_id, result.head_hash = expected_id - 1, expected_prev.hex()
    return result
