"""The exchange's TLS protocol: the shared one (gdx.peer_tls), counting the connections whose
headers did not arrive in time."""

from __future__ import annotations

from exchange import metrics
from gdx.peer_tls import PeerCertHttpTools


class MutualTlsHttpTools(PeerCertHttpTools):
    def headers_timed_out(self) -> None:
        metrics.HEADER_TIMEOUTS.inc()
