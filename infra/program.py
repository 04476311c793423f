"""The central exchange's deployment, composed from its components for one stack."""

from __future__ import annotations

import ipaddress
from typing import Any

import pulumi

from gdx.inventory import Inventory, central_view, load_inventory
from infra import pki
from infra.components.database import KINDS, DatabaseArgs
from infra.components.exchange import Exchange, ExchangeArgs
from infra.components.foundation import Foundation, FoundationArgs
from infra.components.ingress import IngressArgs, MutualTlsIngress
from infra.components.monitoring import Monitoring, MonitoringArgs
from infra.components.network import NetworkPolicies, NetworkPoliciesArgs
from infra.settings import NAMESPACE, StackSettings


def declare(settings: StackSettings) -> dict[str, pulumi.Output[Any]]:
    """Declare every resource of the stack and its outputs: exchange_url, ca_bundle, dashboards."""
    identities = pki.load(settings.pki_dir)
    inventory = load_inventory(settings.inventory, require_secrets=False)
    foundation = Foundation(
        "platform",
        FoundationArgs(settings.namespace, identities.ca, central_view(settings.inventory)),
    )
    secrets = pulumi.Config(NAMESPACE)
    kind = settings.database.kind
    database = KINDS[kind](
        "database",
        DatabaseArgs(
            namespace=foundation.namespace,
            settings=settings.database,
            host_network=settings.host_network,
            password=secrets.require_secret("databasePassword") if kind == "statefulset" else None,
            url=secrets.require_secret("databaseUrl") if kind == "external" else None,
        ),
    )
    exchange = Exchange(
        "exchange",
        ExchangeArgs(
            namespace=foundation.namespace,
            image=settings.image,
            image_pull_policy=settings.image_pull_policy,
            settings=settings.exchange,
            server_identity=identities["exchange"],
            ca_certificate=identities.ca,
            inventory=foundation.inventory,
            database=database,
            host_network=settings.host_network,
        ),
    )
    exchange_url = pulumi.Output.from_input(f"https://127.0.0.1:{settings.exchange.port}/")
    if settings.ingress.enabled:
        ingress = MutualTlsIngress(
            "ingress",
            IngressArgs(
                namespace=foundation.namespace,
                settings=settings.ingress,
                ca_bundle=foundation.ca_bundle,
                ingress_identity=identities["ingress"],
                ca_certificate=identities.ca,
                exchange_service=exchange.service,
                exchange_port=exchange.port,
                server_tls_secret="gdx-exchange-tls",
            ),
        )
        exchange_url = ingress.url
    dashboards: pulumi.Output[list[str]] = pulumi.Output.from_input([])
    if settings.monitoring.enabled:
        monitoring = Monitoring(
            "monitoring",
            MonitoringArgs(
                namespace=foundation.namespace,
                image=settings.image,
                image_pull_policy=settings.image_pull_policy,
                settings=settings.monitoring,
                monitor_identity=identities["monitor"],
                prometheus_identity=identities["prometheus"],
                ca_certificate=identities.ca,
                inventory=inventory,
                inventory_config_map=foundation.inventory,
                exchange_host=settings.service_host("gdx-exchange"),
                exchange_port=exchange.port,
                host_network=settings.host_network,
            ),
        )
        dashboards = monitoring.dashboards
    NetworkPolicies(
        "network",
        NetworkPoliciesArgs(
            namespace=foundation.namespace,
            database=database,
            exchange_port=exchange.port,
            monitor_port=settings.monitoring.port,
            ingress_namespace=settings.ingress.controller_namespace if settings.ingress.enabled else None,
            prometheus_namespace=settings.monitoring.prometheus_namespace,
            node_networks=settings.monitoring.node_cidrs or node_networks(inventory),
            node_ports=sorted({node.agent_port for node in inventory.nodes}),
            object_storage_cidr=settings.database.backup.object_storage_cidr if settings.database.backup else None,
            database_operator_namespace=settings.database.operator_namespace if kind == "cloudnative-pg" else None,
        ),
    )
    outputs = {"exchange_url": exchange_url, "ca_bundle": foundation.ca_bundle, "dashboards": dashboards}
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs


def node_networks(inventory: Inventory) -> list[str]:
    """The front-end nodes' addresses as /32 networks, when the inventory gives addresses."""
    networks = []
    for node in inventory.nodes:
        try:
            networks.append(str(ipaddress.ip_network(node.address)))
        except ValueError:
            continue  # a host name: set gdx:monitoring.nodeCidrs
    return sorted(set(networks))
