"""The monitoring agent in the cluster, and what Prometheus and Grafana need to use it.

Rules and scrape targets take the Prometheus Operator's form (PrometheusRule, ServiceMonitor,
ScrapeConfig) where the operator runs, plain ConfigMaps for a hand-run Prometheus otherwise.
Dashboards are ConfigMaps labelled for Grafana's sidecar (``grafana_dashboard: "1"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from gdx.inventory import Inventory
from infra.components.common import (
    child,
    container_security,
    labels,
    metadata,
    pod_security,
    probes,
    resources,
    scratch_volume,
    secret_volume,
    selector,
)
from infra.pki import Pair
from infra.settings import MonitoringSettings, Resources
from monitoring import dashboards, scrape

PKI_DIR = "/etc/gdx/pki"
INVENTORY_DIR = "/etc/gdx/inventory"
SERVICE = "gdx-monitor"
# Where the Prometheus Operator mounts a Secret listed in the Prometheus resource's spec.secrets;
# a hand-run Prometheus mounts it at the same path.
PROMETHEUS_SECRET_DIR = "/etc/prometheus/secrets/gdx-prometheus-identity"


@dataclass
class MonitoringArgs:
    namespace: pulumi.Input[str]
    image: str
    image_pull_policy: str
    settings: MonitoringSettings
    monitor_identity: Pair
    prometheus_identity: Pair
    ca_certificate: str
    inventory: Inventory
    inventory_config_map: pulumi.Input[str]
    exchange_host: str
    exchange_port: int
    host_network: bool = False


class Monitoring(pulumi.ComponentResource):
    service: pulumi.Output[str]
    dashboards: pulumi.Output[list[str]]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gdx:component:Monitoring", name, None, opts)
        s = args.settings
        ns = args.namespace
        identity = k8s.core.v1.Secret(
            f"{name}-identity",
            metadata=metadata("gdx-monitor-identity", ns, "monitor"),
            type="Opaque",
            string_data={
                "ca.crt": args.ca_certificate,
                "monitor.crt": args.monitor_identity.cert,
                "monitor.key": args.monitor_identity.key,
            },
            opts=child(self),
        )
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata(SERVICE, ns, "monitor"),
            spec={
                # One: the monitor holds per-hop history (stall detection); two would double every alert.
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"match_labels": selector("monitor")},
                "template": {
                    "metadata": {"labels": labels("monitor")},
                    "spec": {
                        "automount_service_account_token": False,
                        "host_network": args.host_network,
                        "security_context": pod_security(),
                        "containers": [
                            {
                                "name": "monitor",
                                "image": args.image,
                                "image_pull_policy": args.image_pull_policy,
                                "command": [
                                    "gdx",
                                    "monitor",
                                    "run",
                                    "--inventory",
                                    f"{INVENTORY_DIR}/inventory.yml",
                                    "--identity",
                                    "monitor",
                                    "--pki-dir",
                                    PKI_DIR,
                                    "--exchange-url",
                                    f"https://{args.exchange_host}:{args.exchange_port}",
                                    "--listen",
                                    f"0.0.0.0:{s.port}",
                                    "--interval",
                                    f"{s.interval_seconds:g}",
                                ],
                                "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
                                "ports": [{"name": "http-metrics", "container_port": s.port}],
                                "resources": resources(Resources(memory_request="128Mi", memory_limit="512Mi")),
                                "security_context": container_security(),
                                **probes(s.port, scheme="HTTP", ready="/healthz"),
                                "volume_mounts": [
                                    {"name": "tmp", "mount_path": "/tmp"},
                                    {"name": "pki", "mount_path": PKI_DIR, "read_only": True},
                                    {"name": "inventory", "mount_path": INVENTORY_DIR, "read_only": True},
                                ],
                            }
                        ],
                        "volumes": [
                            scratch_volume(),
                            secret_volume("pki", identity.metadata.name),
                            {"name": "inventory", "config_map": {"name": args.inventory_config_map}},
                        ],
                    },
                },
            },
            opts=child(self),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=metadata(SERVICE, ns, "monitor"),
            spec={
                "selector": selector("monitor"),
                "ports": [{"name": "http-metrics", "port": s.port, "target_port": "http-metrics"}],
            },
            opts=child(self),
        )
        k8s.core.v1.Secret(
            f"{name}-prometheus-identity",
            metadata=metadata("gdx-prometheus-identity", ns, "monitor"),
            type="Opaque",
            string_data={
                "ca.crt": args.ca_certificate,
                "prometheus.crt": args.prometheus_identity.cert,
                "prometheus.key": args.prometheus_identity.key,
            },
            opts=child(self),
        )
        if s.prometheus_operator:
            self._operator_objects(name, args)
        else:
            self._plain_config_maps(name, args)
        boards = [
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{stem}",
                metadata=metadata(f"gdx-dashboard-{stem}", ns, "monitor")
                | {"labels": {**labels("monitor"), "grafana_dashboard": "1"}},
                data={f"{stem}.json": json.dumps(board, indent=1, ensure_ascii=False, sort_keys=True)},
                opts=child(self),
            )
            for stem, board in dashboards.render().items()
        ]
        self.service = service.metadata.name
        self.dashboards = pulumi.Output.all(*[b.metadata.name for b in boards])
        self.register_outputs({"service": self.service, "dashboards": self.dashboards})

    def _scrape_jobs(self, args: MonitoringArgs, namespace: str) -> list[dict[str, Any]]:
        return scrape.scrape_configs(
            f"{SERVICE}.{namespace}.svc:{args.settings.port}",
            exchange=f"{args.exchange_host}:{args.exchange_port}",
            exchange_tls=scrape.ClientTls(
                ca_file=f"{PROMETHEUS_SECRET_DIR}/ca.crt",
                cert_file=f"{PROMETHEUS_SECRET_DIR}/prometheus.crt",
                key_file=f"{PROMETHEUS_SECRET_DIR}/prometheus.key",
            ),
            inventory=args.inventory,
            node_exporter_port=args.settings.node_exporter_port,
        )

    def _plain_config_maps(self, name: str, args: MonitoringArgs) -> None:
        ns = args.namespace
        k8s.core.v1.ConfigMap(
            f"{name}-rules",
            metadata=metadata("gdx-prometheus-rules", ns, "monitor"),
            data=scrape.rule_texts(),
            opts=child(self),
        )
        k8s.core.v1.ConfigMap(
            f"{name}-scrape",
            metadata=metadata("gdx-prometheus-scrape", ns, "monitor"),
            data={
                "scrape.yml": pulumi.Output.from_input(ns).apply(
                    lambda namespace: yaml.safe_dump(
                        {"scrape_configs": self._scrape_jobs(args, namespace)}, sort_keys=False
                    )
                )
            },
            opts=child(self),
        )

    def _operator_objects(self, name: str, args: MonitoringArgs) -> None:
        ns = args.namespace
        groups = [group for text in scrape.rule_texts().values() for group in yaml.safe_load(text)["groups"]]
        k8s.apiextensions.CustomResource(
            f"{name}-prometheus-rule",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata=metadata("gdx", ns, "monitor"),
            spec={"groups": groups},
            opts=child(self),
        )
        k8s.apiextensions.CustomResource(
            f"{name}-service-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=metadata(SERVICE, ns, "monitor"),
            spec={
                "selector": {"matchLabels": selector("monitor")},
                "endpoints": [{"port": "http-metrics", "interval": f"{args.settings.interval_seconds:g}s"}],
            },
            opts=child(self),
        )
        secret = "gdx-prometheus-identity"
        k8s.apiextensions.CustomResource(
            f"{name}-exchange-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=metadata(scrape.EXCHANGE_JOB, ns, "monitor"),
            spec={
                "selector": {"matchLabels": selector("exchange")},
                "endpoints": [
                    {
                        "port": "https",
                        "scheme": "https",
                        "tlsConfig": {
                            "ca": {"secret": {"name": secret, "key": "ca.crt"}},
                            "cert": {"secret": {"name": secret, "key": "prometheus.crt"}},
                            "keySecret": {"name": secret, "key": "prometheus.key"},
                            "serverName": pulumi.Output.concat(args.exchange_host),
                        },
                    }
                ],
            },
            opts=child(self),
        )
        nodes = [job for job in self._scrape_jobs(args, "gdx") if job["job_name"] == scrape.NODE_EXPORTER_JOB]
        if nodes:
            k8s.apiextensions.CustomResource(
                f"{name}-node-exporters",
                api_version="monitoring.coreos.com/v1alpha1",
                kind="ScrapeConfig",
                metadata=metadata(scrape.NODE_EXPORTER_JOB, ns, "monitor"),
                spec={"staticConfigs": nodes[0]["static_configs"]},
                opts=child(self),
            )
