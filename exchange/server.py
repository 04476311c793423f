"""Running the exchange under uvicorn with mutual TLS."""

from __future__ import annotations

import ssl

import uvicorn

from exchange.app import create_app
from exchange.settings import Settings
from exchange.tls import MutualTlsHttpTools


def uvicorn_config(settings: Settings, host: str, port: int, *, log_level: str = "info") -> uvicorn.Config:
    # CERT_OPTIONAL, not REQUIRED: the kubelet's probes reach /healthz and /readyz without a
    # certificate. A certificate that is presented must still chain to the platform CA (the
    # handshake fails otherwise), and every other route refuses a caller without one.
    return uvicorn.Config(
        create_app(settings),
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
    )


def serve(settings: Settings, host: str, port: int) -> None:
    uvicorn.Server(uvicorn_config(settings, host, port)).run()
