"""Running the exchange under uvicorn with mutual TLS."""

from __future__ import annotations

import ssl

import uvicorn

from exchange.app import create_app
from exchange.settings import Settings
from exchange.tls import MutualTlsHttpTools

KEEP_ALIVE_S = 75


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
        # Longer than any client keeps an idle connection (httpx: 5 s; nginx upstream keepalive:
        # 60 s): with uvicorn's own 5 s, the server closed connections just as a client reused
        # them, and the request failed with "Server disconnected without sending a response".
        timeout_keep_alive=KEEP_ALIVE_S,
    )


def serve(settings: Settings, host: str, port: int) -> None:
    uvicorn.Server(uvicorn_config(settings, host, port)).run()
