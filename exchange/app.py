"""The central exchange as an ASGI app: create_app() wires routes, pool, registry, metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from cryptography import x509
from fastapi import FastAPI
from psycopg.types.json import set_json_dumps
from pydantic import BaseModel

from exchange import metrics, refusals
from exchange.files import FileStore
from exchange.inbox_webhooks import keep_notifying
from exchange.limits import LargeBodies, RequestLimits
from exchange.object_store import ObjectStore
from exchange.pool import open_pool
from exchange.registry import Registry
from exchange.retention import keep_compacting
from exchange.routes import (
    audit_log,
    catalog,
    catalog_items,
    changes,
    disputes,
    files,
    grants,
    inbox,
    loads,
    monitoring,
    ops,
    records,
    requests,
    snapshots,
    uploads,
)
from exchange.settings import Settings
from exchange.uploads import Limits
from gdx import __version__
from gdx.protocol import ChangeBatch
from gdx.workdays import WorkCalendar

DESCRIPTION = """
The central exchange of the GDX government data sharing platform (政务数据共享交换平台).

Every call but `/healthz` and `/readyz` needs a client certificate issued by the platform CA
(`gdx ca issue`): its CN names the department or person, its OU the role
(`department`, `admin`, `auditor`, `operator`). Errors have one shape:
`{"error": code, "message": text, "details": [...]}`.
"""


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store: FileStore = app.state.file_store
        if store.objects is not None:
            await asyncio.to_thread(store.objects.check)  # a bucket missing or refused stops the start, saying so
        pool = await open_pool(settings)
        app.state.pool = pool
        app.state.registry = Registry(pool)
        stop = asyncio.Event()
        compactor = None
        if settings.change_retention_days > 0:
            retention = dt.timedelta(days=settings.change_retention_days)
            compactor = asyncio.create_task(
                keep_compacting(settings.database_url, retention, settings.compact_every_s, stop, store.objects)
            )
        notifier = asyncio.create_task(keep_notifying(settings.database_url, settings.inbox_notify_every_s, stop))
        try:
            yield
        finally:
            stop.set()
            if compactor is not None:
                await compactor
            await notifier
            await pool.close()

    set_json_dumps(orjson.dumps)
    # The API's documents are routes of ours (exchange.routes.ops), behind a client certificate
    # like every route but the probes: FastAPI's own would answer anyone.
    app = FastAPI(
        title="GDX central exchange", version=__version__, description=DESCRIPTION, lifespan=lifespan,
        openapi_url=None, docs_url=None, redoc_url=None,
    )  # fmt: skip
    app.state.ca_cert = x509.load_pem_x509_certificate(settings.ca_cert.read_bytes())
    app.state.calendar = WorkCalendar.from_file(settings.calendar_file) if settings.calendar_file else WorkCalendar()
    app.state.upload_limits = Limits(
        settings.upload_max_bytes, settings.upload_max_rows, settings.upload_max_workbook_rows
    )
    app.state.upload_dir = settings.upload_dir
    objects = settings.object_store()
    app.state.file_store = FileStore(ObjectStore(objects) if objects else None, settings.upload_dir)
    refusals.install(app)
    routers = (
        catalog,
        catalog_items,
        grants,
        requests,
        inbox,
        changes,
        loads,
        snapshots,
        records,
        uploads,
        files,
        disputes,
        audit_log,
        monitoring,
        ops,
    )
    for module in routers:
        app.include_router(module.router)

    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_body_bytes,
        idle_s=settings.body_idle_s,
        total_s=settings.body_total_s,
        # Files (uploaded templates, attachments) come larger and slower than batches (their limit is
        # settings.upload_max_bytes).
        large=LargeBodies(
            f"{uploads.UPLOAD_PATH}|{files.FILE_PATH}", settings.upload_max_bytes, settings.upload_total_s
        ),
    )
    app.add_middleware(metrics.RequestMetrics)
    _document_models(app, ChangeBatch)
    return app


def _document_models(app: FastAPI, *models: type[BaseModel]) -> None:
    """Put into the OpenAPI document's components the models of bodies that routes read
    themselves (the push: exchange.push_body), which FastAPI does not see."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            components = generate().setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, nested in schema.pop("$defs", {}).items():
                    components.setdefault(name, nested)
                components.setdefault(model.__name__, schema)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
