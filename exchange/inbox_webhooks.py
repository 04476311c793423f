"""Inbox notices: each new item of a department's inbox is posted once to the webhook the
inventory names for it (gdx_department.inbox_webhook), as JSON, and retried with backoff until
the webhook answers 2xx. Undelivered notices stay visible (GET /v1/inbox/notices, the
monitoring's gdx_governance_webhook_failing and GdxInboxWebhookFailing).

One process at a time (an advisory lock), in a thread off the request path, every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import httpx
import orjson
import psycopg
import structlog
from psycopg.types.json import Jsonb

from exchange import inbox
from exchange.metrics import INBOX_NOTICES

log = structlog.get_logger("gdx.exchange.inbox")

_LOCK_ID = 0x6764_7803  # "gdx" + 3
RETRY_BASE_S = 10.0  # the first retry after 10 s, then 20, 40, ... up to an hour
RETRY_MAX_S = 3600.0
TIMEOUT_S = 5.0
BATCH = 100


@dataclass
class Round:
    queued: int = 0
    delivered: int = 0
    failed: int = 0


def notify(conninfo: str, http: httpx.Client, *, retry_base_s: float = RETRY_BASE_S) -> Round | None:
    """Queue the new items of every department with a webhook, then post the notices due; None
    when another process is at it."""
    done = Round()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_ID,)).fetchone()
        if not locked or not locked[0]:
            return None
        try:
            hooked = conn.execute(
                "SELECT id FROM department WHERE active AND inbox_webhook IS NOT NULL ORDER BY id"
            ).fetchall()
            for (department,) in hooked:
                for item in inbox.items(conn.execute(inbox.DEPARTMENT_SQL, inbox.params(department)).fetchall()):
                    payload = {"department": department, "item": item.model_dump(mode="json"), "inbox": "/v1/inbox"}
                    cur = conn.execute(
                        "INSERT INTO inbox_notice (department, item, payload) VALUES (%s, %s, %s) "
                        "ON CONFLICT DO NOTHING",
                        (department, item.key, Jsonb(payload)),
                    )
                    done.queued += cur.rowcount
            due = conn.execute(
                """
                SELECT n.department, n.item, n.payload, n.attempts, d.inbox_webhook
                FROM inbox_notice n JOIN department d ON d.id = n.department
                WHERE n.delivered_at IS NULL AND n.next_attempt_at <= now() AND d.inbox_webhook IS NOT NULL
                ORDER BY n.next_attempt_at LIMIT %s
                """,
                (BATCH,),
            ).fetchall()
            for department, item, payload, attempts, url in due:
                error = _post(http, url, payload)
                if error is None:
                    conn.execute(
                        "UPDATE inbox_notice SET delivered_at = now(), attempts = attempts + 1, last_error = NULL "
                        "WHERE department = %s AND item = %s",
                        (department, item),
                    )
                    done.delivered += 1
                    continue
                wait_s = min(retry_base_s * 2**attempts, RETRY_MAX_S)
                conn.execute(
                    "UPDATE inbox_notice SET attempts = attempts + 1, last_error = %s, "
                    "next_attempt_at = now() + make_interval(secs => %s) WHERE department = %s AND item = %s",
                    (error, wait_s, department, item),
                )
                done.failed += 1
                log.warning("inbox webhook failed; retrying later", department=department, item=item, error=error,
                            retry_in_s=wait_s)  # fmt: skip
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return done


def _post(http: httpx.Client, url: str, payload: object) -> str | None:
    """None when the webhook took the notice, else what went wrong."""
    try:
        answer = http.post(url, content=orjson.dumps(payload), headers={"content-type": "application/json"})
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= answer.status_code < 300:
        return None
    return f"HTTP {answer.status_code}: {answer.text[:200]}"


async def keep_notifying(conninfo: str, every_s: float, stop: asyncio.Event) -> None:
    """The exchange's background task: a round every ``every_s``, never failing the process."""
    with httpx.Client(timeout=TIMEOUT_S, trust_env=False) as http:
        while not stop.is_set():
            try:
                done = await asyncio.to_thread(notify, conninfo, http)
                if done is not None:
                    INBOX_NOTICES.labels("delivered").inc(done.delivered)
                    INBOX_NOTICES.labels("failed").inc(done.failed)
            except psycopg.Error as exc:
                log.warning("inbox notices failed; next round later", error=str(exc).strip())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
