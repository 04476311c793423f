"""Running the exchange under uvicorn with mutual TLS, in one process or several."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from exchange import metrics
from exchange.app import create_app
from exchange.settings import Settings
from exchange.tls import MutualTlsHttpTools
from gdx import aio
from gdx.peer_tls import ALERTING_LOOP, TlsServerConfig

KEEP_ALIVE_S = 75

# Worker processes are started afresh (spawn) and build their app from this variable.
_SETTINGS_ENV = "GDX_EXCHANGE_SETTINGS"


def uvicorn_config(
    settings: Settings, host: str, port: int, *, log_level: str = "info", workers: int = 1
) -> uvicorn.Config:
    # CERT_OPTIONAL, not REQUIRED: the kubelet's probes reach /healthz and /readyz without a
    # certificate. A certificate that is presented must still chain to the platform CA (the
    # handshake fails otherwise), and every other route refuses a caller without one.
    app: FastAPI | str = create_app(settings) if workers == 1 else f"{__name__}:app_from_environment"
    return TlsServerConfig(
        app,
        # asyncio's loop with TLS servers that send the alert of a refused client certificate
        # (gdx.peer_tls): a client then learns why, where uvloop's reset told it nothing.
        loop=ALERTING_LOOP if settings.tls_alerts else "auto",
        factory=workers > 1,
        workers=workers,
        host=host,
        port=port,
        http=MutualTlsHttpTools,
        ssl_certfile=str(settings.tls_cert),
        ssl_keyfile=str(settings.tls_key),
        ssl_ca_certs=str(settings.ca_cert),
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        # Longer than any client keeps an idle connection (httpx: 5 s; nginx upstream keepalive:
        # 60 s): with uvicorn's own 5 s, the server closed connections just as a client reused
        # them, and the request failed with "Server disconnected without sending a response".
        timeout_keep_alive=KEEP_ALIVE_S,
    )


def app_from_environment() -> FastAPI:
    """The app of one worker process, from the settings its parent left in the environment."""
    fields: dict[str, Any] = json.loads(os.environ[_SETTINGS_ENV])
    for name in ("tls_cert", "tls_key", "ca_cert", "calendar_file", "upload_dir", "s3_ca_file"):
        if fields[name] is not None:
            fields[name] = Path(fields[name])
    app = create_app(Settings(**fields))
    aio.tune_gc()
    return app


def serve(settings: Settings, host: str, port: int, *, workers: int = 1) -> None:
    config = uvicorn_config(settings, host, port, workers=workers)
    if workers == 1:
        aio.tune_gc()
        uvicorn.Server(config).run()
        return
    # Several processes share one listening socket; each has its own connection pool.
    os.environ[_SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings), default=str)
    with _shared_metrics_dir():
        Multiprocess(config, sockets=[config.bind_socket()]).run()


@contextlib.contextmanager
def _shared_metrics_dir() -> Iterator[None]:
    """Where the worker processes write their Prometheus figures (prometheus_client's multiprocess
    mode): the directory an operator names in PROMETHEUS_MULTIPROC_DIR, emptied of an earlier
    run's figures, or a temporary one, removed at the end."""
    given = os.environ.get(metrics.MULTIPROCESS_DIR_ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    with tempfile.TemporaryDirectory(prefix="gdx-exchange-metrics-") as made:
        os.environ[metrics.MULTIPROCESS_DIR_ENV] = made
        try:
            yield
        finally:
            del os.environ[metrics.MULTIPROCESS_DIR_ENV]
