"""The central exchange's deployment, composed from its components for one stack."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import pulumi

from gdx.inventory import Inventory, central_view, load_inventory
from infra import capacity, pki
from infra.components.database import KINDS, DatabaseArgs
from infra.components.exchange import Exchange, ExchangeArgs, checksum
from infra.components.foundation import Foundation, FoundationArgs
from infra.components.ingress import IngressArgs, MutualTlsIngress
from infra.components.monitoring import PROMETHEUS_SECRET_DIR, Monitoring, MonitoringArgs, PrometheusInputs
from infra.components.network import NetworkPolicies, NetworkPoliciesArgs
from infra.settings import NAMESPACE, SettingsError, StackSettings


def declare(settings: StackSettings) -> dict[str, pulumi.Output[Any]]:
    """Declare every resource of the stack and its outputs: exchange_url, ca_bundle, dashboards."""
    identities = pki.load(settings.pki_dir)
    inventory = load_inventory(settings.inventory, require_secrets=False)
    central = central_view(settings.inventory)
    foundation = Foundation(
        "platform",
        FoundationArgs(
            settings.namespace,
            identities.ca,
            central,
            require_image_digests=settings.require_image_digests,
            quota=capacity.namespace_quota(settings),
            container_defaults=capacity.CONTAINER_DEFAULTS,
        ),
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
            pod_monitor=settings.monitoring.enabled and settings.monitoring.prometheus_operator,
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
            inventory_checksum=checksum(central),
            file_store_keys=(secrets.require_secret("s3AccessKey"), secrets.require_secret("s3SecretKey"))
            if settings.exchange.file_store
            else None,
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
                server_tls_secret=exchange.tls_secret,
                request_timeout_s=settings.exchange.request_timeout_s,
                body_max_mib=settings.exchange.upload_max_mib,
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
                inventory_config_map=foundation.inventory,
                exchange_host=settings.service_host("gdx-exchange"),
                exchange_port=exchange.port,
                prometheus=prometheus_inputs(settings, inventory, exchange.port),
                config_checksum=checksum(central, identities["monitor"].cert, identities.ca),
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
            api_server_cidr=settings.database.api_server_cidr,
            webhook_cidrs=settings.exchange.webhook_cidrs,
            webhook_ports=webhook_ports(settings, inventory),
            file_store=(settings.exchange.file_store.cidr, settings.exchange.file_store.port)
            if settings.exchange.file_store
            else None,
        ),
    )
    outputs = {"exchange_url": exchange_url, "ca_bundle": foundation.ca_bundle, "dashboards": dashboards}
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs


def prometheus_inputs(settings: StackSettings, inventory: Inventory, exchange_port: int) -> PrometheusInputs:
    """The monitoring package's rules, dashboards and scrape jobs, for the stack's Prometheus."""
    from monitoring import dashboards, rules, scrape

    s = settings.monitoring
    jobs = scrape.scrape_configs(
        f"{scrape.MONITOR_JOB}.{settings.namespace}.svc:{s.port}",
        exchange=f"{settings.service_host('gdx-exchange')}:{exchange_port}",
        exchange_tls=scrape.ClientTls(
            ca_file=f"{PROMETHEUS_SECRET_DIR}/ca.crt",
            cert_file=f"{PROMETHEUS_SECRET_DIR}/prometheus.crt",
            key_file=f"{PROMETHEUS_SECRET_DIR}/prometheus.key",
        ),
        inventory=inventory,
        node_exporter_port=s.node_exporter_port,
    )
    return PrometheusInputs(
        rule_files=rules.rule_texts(s.runbook_base_url or rules.DEFAULT_RUNBOOK_BASE),
        dashboards=dashboards.render(),
        scrape_jobs=jobs,
        monitor_job=scrape.MONITOR_JOB,
        exchange_job=scrape.EXCHANGE_JOB,
        node_exporter_job=scrape.NODE_EXPORTER_JOB,
    )


def webhook_ports(settings: StackSettings, inventory: Inventory) -> list[int]:
    """The ports of the departments' inbox webhooks, which the exchange's NetworkPolicy opens
    towards gdx:exchange.webhookCidrs; a stack that names none while the inventory names webhooks
    would deploy an exchange whose notices are all blocked, so it is refused."""
    urls = {node.department_id: node.inbox_webhook for node in inventory.nodes if node.inbox_webhook}
    if urls and not settings.exchange.webhook_cidrs:
        named = ", ".join(f"{dept}: {url}" for dept, url in sorted(urls.items()))
        raise SettingsError(
            settings.stack,
            [f"the inventory names inbox webhooks ({named}); set gdx:exchange.webhookCidrs to the networks "
             "they are in, or the exchange's NetworkPolicy blocks every notice"],
        )  # fmt: skip
    return sorted({urlsplit(url).port or (443 if url.startswith("https:") else 80) for url in urls.values()})


def node_networks(inventory: Inventory) -> list[str]:
    """The front-end nodes' addresses as /32 networks, when the inventory gives addresses."""
    networks = []
    for node in inventory.nodes:
        try:
            networks.append(str(ipaddress.ip_network(node.address)))
        except ValueError:
            continue  # a host name: set gdx:monitoring.nodeCidrs
    return sorted(set(networks))
