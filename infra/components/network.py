"""NetworkPolicies: nothing moves in the namespace unless a policy here says so.

Allowed: the ingress controller -> exchange; exchange and migration Job -> database; the exchange ->
the departments' inbox webhooks (their networks a stack setting, their ports from the inventory); the monitor ->
exchange and -> the front-end nodes' health ports; Prometheus -> monitor, exchange and the database's
exporters; the database (CloudNativePG) -> the API server and the backup store only; DNS for all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components.common import child, metadata, selector
from infra.components.database import Database

DNS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
DATABASE_METRICS_PORT = 9187  # CloudNativePG's exporter in every instance


@dataclass
class NetworkPoliciesArgs:
    namespace: pulumi.Input[str]
    database: Database
    exchange_port: int
    monitor_port: int
    ingress_namespace: str | None  # None: no ingress, nothing from outside the namespace but Prometheus
    prometheus_namespace: str
    node_networks: list[str]  # CIDRs of the front-end nodes
    node_ports: list[int]  # their agents' health ports
    object_storage_cidr: str | None = None  # the database's backups
    database_operator_namespace: str | None = None
    api_server_cidr: str | None = None  # cloudnative-pg: where its instance managers reach the API server
    webhook_cidrs: list[str] | None = None  # the departments' inbox webhooks (the exchange posts to them)
    webhook_ports: list[int] | None = None
    file_store: tuple[str, int] | None = None  # the attachments' object store: its network and port


def _namespace(name: str) -> dict[str, Any]:
    return {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": name}}}


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


class NetworkPolicies(pulumi.ComponentResource):
    names: pulumi.Output[list[str]]

    def __init__(self, name: str, args: NetworkPoliciesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gdx:component:NetworkPolicies", name, None, opts)
        self._prefix = name
        self._ns = args.namespace
        self._created: list[k8s.networking.v1.NetworkPolicy] = []
        db = args.database
        exchange, migrate, monitor = selector("exchange"), selector("exchange-migrate"), selector("monitor")

        self._policy("default-deny", {}, ingress=None, egress=None)
        self._policy("allow-dns", {}, egress=[{"to": [_namespace("kube-system")], "ports": DNS}])

        exchange_from = [{"pod_selector": {"match_labels": monitor}}, _namespace(args.prometheus_namespace)]
        if args.ingress_namespace:
            exchange_from.append(_namespace(args.ingress_namespace))
        to_database = (
            [{"pod_selector": {"match_labels": db.pod_selector}}]
            if db.pod_selector
            else [{"ip_block": {"cidr": db.cidr}}]
        )
        exchange_to: list[dict[str, Any]] = [{"to": to_database, "ports": _tcp(db.port)}]
        if args.webhook_cidrs and args.webhook_ports:
            webhooks = [{"ip_block": {"cidr": cidr}} for cidr in args.webhook_cidrs]
            exchange_to.append({"to": webhooks, "ports": _tcp(*args.webhook_ports)})
        if args.file_store:
            cidr, port = args.file_store
            exchange_to.append({"to": [{"ip_block": {"cidr": cidr}}], "ports": _tcp(port)})
        self._policy(
            "exchange",
            exchange,
            ingress=[{"from": exchange_from, "ports": _tcp(args.exchange_port)}],
            egress=exchange_to,
        )
        self._policy("exchange-migrate", migrate, egress=[{"to": to_database, "ports": _tcp(db.port)}])
        if db.pod_selector:
            self._database_policy(args, db.pod_selector, [exchange, migrate])

        node_egress = [
            {"to": [{"ip_block": {"cidr": cidr}} for cidr in args.node_networks], "ports": _tcp(*args.node_ports)}
        ]
        self._policy(
            "monitor",
            monitor,
            ingress=[{"from": [_namespace(args.prometheus_namespace)], "ports": _tcp(args.monitor_port)}],
            egress=[
                {"to": [{"pod_selector": {"match_labels": exchange}}], "ports": _tcp(args.exchange_port)},
                *(node_egress if args.node_networks and args.node_ports else []),
            ],
        )
        self.names = pulumi.Output.all(*[p.metadata.name for p in self._created])
        self.register_outputs({"names": self.names})

    def _database_policy(self, args: NetworkPoliciesArgs, pods: dict[str, str], clients: list[dict[str, str]]) -> None:
        port = args.database.port
        ingress: list[dict[str, Any]] = [
            {"from": [{"pod_selector": {"match_labels": c}} for c in clients], "ports": _tcp(port)},
        ]
        egress: list[dict[str, Any]] = []
        if args.database_operator_namespace:
            # CloudNativePG: the operator reaches each instance's status port, instances replicate among
            # themselves, and the instance manager talks to the API server and the backup store.
            ingress += [
                {"from": [_namespace(args.database_operator_namespace)], "ports": _tcp(8000, port)},
                {"from": [{"pod_selector": {"match_labels": pods}}], "ports": _tcp(port, 8000)},
                # Prometheus reads each instance's exporter (the PodMonitor).
                {"from": [_namespace(args.prometheus_namespace)], "ports": _tcp(DATABASE_METRICS_PORT)},
            ]
            egress.append({"to": [{"pod_selector": {"match_labels": pods}}], "ports": _tcp(port, 8000)})
            if args.api_server_cidr:
                egress.append({"to": [{"ip_block": {"cidr": args.api_server_cidr}}], "ports": _tcp(443, 6443)})
            if args.object_storage_cidr:
                egress.append({"to": [{"ip_block": {"cidr": args.object_storage_cidr}}], "ports": _tcp(443)})
        self._policy("database", pods, ingress=ingress, egress=egress or None)

    def _policy(
        self,
        name: str,
        pods: dict[str, str],
        *,
        ingress: list[dict[str, Any]] | None = None,
        egress: list[dict[str, Any]] | None = None,
    ) -> None:
        types = ["Ingress", "Egress"] if name == "default-deny" else []
        if ingress is not None:
            types.append("Ingress")
        if egress is not None:
            types.append("Egress")
        spec: dict[str, Any] = {"pod_selector": {"match_labels": pods} if pods else {}, "policy_types": types}
        if ingress:
            spec["ingress"] = ingress
        if egress:
            spec["egress"] = egress
        self._created.append(
            k8s.networking.v1.NetworkPolicy(
                f"{self._prefix}-{name}",
                metadata=metadata(f"gdx-{name}", self._ns, "network"),
                spec=spec,
                opts=child(self),
            )
        )
