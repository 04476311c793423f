"""The agent's Prometheus metrics, read from its state at each scrape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from front_end_node.state import AgentState
from gdx import __version__


class AgentCollector(Collector):
    def __init__(self, state: AgentState) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        s = self.state
        info = GaugeMetricFamily("gdx_node_build_info", "The agent's version (always 1)", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        labels = ["hop", "resource"]
        heartbeat_seq = GaugeMetricFamily(
            "gdx_node_heartbeat_seq", "Newest heartbeat sequence seen at the hop", labels=labels
        )
        heartbeat_time = GaugeMetricFamily(
            "gdx_node_heartbeat_timestamp_seconds",
            "Source time of the newest heartbeat seen at the hop (lag = now - this)",
            labels=labels,
        )
        for (hop, resource), (seq, at, _seen) in sorted(s.db.heartbeats.items()):
            heartbeat_seq.add_metric([hop, resource], seq)
            heartbeat_time.add_metric([hop, resource], at)
        yield heartbeat_seq
        yield heartbeat_time

        rows = CounterMetricFamily("gdx_node_rows", "Rows moved by the hop since the agent started", labels=labels)
        batches = CounterMetricFamily("gdx_node_batches", "Batches or cycles that moved rows", labels=labels)
        errors = CounterMetricFamily("gdx_node_errors", "Failed attempts of the hop", labels=labels)
        read = CounterMetricFamily(
            "gdx_node_source_rows_read",
            "Rows read from the business database (settled ranges checked again for late commits included)",
            labels=["resource"],
        )
        tidied = CounterMetricFamily(
            "gdx_node_keys_tidied",
            "Source rows read whose key the agent put into its canonical form (case, surrounding white space, "
            "full-width characters) before sending it",
            labels=["resource"],
        )
        success = GaugeMetricFamily(
            "gdx_node_last_success_timestamp_seconds", "When the hop last completed a cycle", labels=labels
        )
        up = GaugeMetricFamily("gdx_node_hop_up", "1 when the hop's last attempt succeeded", labels=labels)
        for (hop, resource), status in sorted(s.loops.items()):
            rows.add_metric([hop, resource], status.rows)
            batches.add_metric([hop, resource], status.batches)
            errors.add_metric([hop, resource], status.errors)
            if hop == "extract":
                read.add_metric([resource], status.read)
                tidied.add_metric([resource], status.tidied)
            if status.last_success is not None:
                success.add_metric([hop, resource], status.last_success)
            up.add_metric([hop, resource], 1 if status.state == "ok" else 0)
        yield from (rows, batches, errors, read, tidied, success, up)

        pending = GaugeMetricFamily("gdx_node_pending_rows", "Changes waiting for the exchange", labels=["resource"])
        for resource, count in sorted(s.db.pending.items()):
            pending.add_metric([resource], count)
        yield pending
        quarantined = GaugeMetricFamily(
            "gdx_node_quarantined_rows", "Source rows held back for failing the resource's checks", labels=["resource"]
        )
        for resource, count in sorted(s.db.quarantined.items()):
            quarantined.add_metric([resource], count)
        yield quarantined
        ahead = GaugeMetricFamily(
            "gdx_node_source_rows_ahead",
            "Rows whose change column is ahead of the business database's clock: held back until it passes them",
            labels=["resource"],
        )
        for resource, count in sorted(s.rows_ahead.items()):
            ahead.add_metric([resource], count)
        yield ahead
        cursor = GaugeMetricFamily("gdx_node_pull_cursor", "Last change sequence applied", labels=["resource"])
        refilling = GaugeMetricFamily(
            "gdx_node_pull_refilling",
            "1 while the subscription reads its resource again for fields its table gained",
            labels=["resource"],
        )
        for resource, seq in sorted(s.db.cursors.items()):
            cursor.add_metric([resource], seq)
            refilling.add_metric([resource], int(resource in s.db.refilling))
        yield cursor
        yield refilling
        withdrawn = GaugeMetricFamily(
            "gdx_node_subscription_withdrawn",
            "1 while a subscription is stopped because its grant was revoked, suspended or has expired",
            labels=["resource", "grant", "rows"],
        )
        for resource, why in sorted(s.withdrawn.items()):
            withdrawn.add_metric([resource, why["grant"], why["rows"]], 1)
        yield withdrawn
        yield GaugeMetricFamily("gdx_node_front_end_db_up", "1 when the front-end database answers", value=int(s.db.up))
        expiry = s.cert_expiry()
        if expiry is not None:
            yield GaugeMetricFamily(
                "gdx_node_certificate_expiry_timestamp_seconds",
                "When the node's client certificate expires",
                value=expiry,
            )
        info = GaugeMetricFamily("gdx_node_info", "The agent", labels=["department"])
        info.add_metric([s.department], 1)
        yield info
