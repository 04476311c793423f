"""The monitoring agent in the cluster, and what Prometheus and Grafana need to use it.

Rules and scrape targets take the Prometheus Operator's form (PrometheusRule, ServiceMonitor,
ScrapeConfig) where the operator runs, plain ConfigMaps for a hand-run Prometheus otherwise.
Dashboards are ConfigMaps labelled for Grafana's sidecar (``grafana_dashboard: "1"``).

The rules, dashboards and scrape jobs themselves come from the monitoring package, through the
args (infra/program.py builds them): this component only places them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra.components import common
from infra.pki import Pair
from infra.settings import MonitoringSettings, Resources

PKI_DIR = "/etc/gdx/pki"
INVENTORY_DIR = "/etc/gdx/inventory"
# Where the Prometheus Operator mounts a Secret listed in the Prometheus resource's spec.secrets;
# a hand-run Prometheus mounts it at the same path.
PROMETHEUS_SECRET_DIR = "/etc/prometheus/secrets/gdx-prometheus-identity"
PROMETHEUS_SECRET = "gdx-prometheus-identity"


@dataclass(frozen=True)
class PrometheusInputs:
    """What Prometheus and Grafana are given: rule files by name, dashboards by stem, the scrape
    jobs of a hand-run Prometheus, and the job names (the monitor's is its Service's name, which
    the rules look for)."""

    rule_files: Mapping[str, str]
    dashboards: Mapping[str, Any]
    scrape_jobs: list[dict[str, Any]]
    monitor_job: str
    exchange_job: str
    node_exporter_job: str


@dataclass
class MonitoringArgs:
    namespace: pulumi.Input[str]
    image: str
    image_pull_policy: str
    settings: MonitoringSettings
    monitor_identity: Pair
    prometheus_identity: Pair
    ca_certificate: str
    inventory_config_map: pulumi.Input[str]
    exchange_host: str
    exchange_port: int
    prometheus: PrometheusInputs
    host_network: bool = False
    # sha256 of what the monitor reads at start (inventory, identity): a change rolls its pod.
    config_checksum: str = ""


class Monitoring(pulumi.ComponentResource):
    service: pulumi.Output[str]
    dashboards: pulumi.Output[list[str]]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gdx:component:Monitoring", name, None, opts)
        self._name, self._args = name, args
        identity = common.identity_secret(
            self, f"{name}-identity", "gdx-monitor-identity", args.namespace, "monitor", args.monitor_identity,
            args.ca_certificate, files=("monitor.crt", "monitor.key"),
        )  # fmt: skip
        self._deployment(identity)
        service = self._service()
        common.identity_secret(
            self, f"{name}-prometheus-identity", PROMETHEUS_SECRET, args.namespace, "monitor",
            args.prometheus_identity, args.ca_certificate, files=("prometheus.crt", "prometheus.key"),
        )  # fmt: skip
        if args.settings.prometheus_operator:
            self._operator_objects()
        else:
            self._plain_config_maps()
        boards = self._dashboards()
        self.service = service.metadata.name
        self.dashboards = pulumi.Output.all(*[b.metadata.name for b in boards])
        self.register_outputs({"service": self.service, "dashboards": self.dashboards})

    def _deployment(self, identity: k8s.core.v1.Secret) -> k8s.apps.v1.Deployment:
        args, s = self._args, self._args.settings
        exchange_url = f"https://{args.exchange_host}:{args.exchange_port}"
        command = [
            "gdx", "monitor", "run", "--inventory", f"{INVENTORY_DIR}/inventory.yml", "--identity", "monitor",
            "--pki-dir", PKI_DIR, "--exchange-url", exchange_url, "--listen", f"0.0.0.0:{s.port}",
            "--interval", f"{s.interval_seconds:g}",
        ]  # fmt: skip
        monitor = {
            "name": "monitor",
            "image": args.image,
            "image_pull_policy": args.image_pull_policy,
            "command": command,
            "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
            "ports": [{"name": "http-metrics", "container_port": s.port}],
            "resources": common.resources(Resources(memory_request="128Mi", memory_limit="512Mi")),
            "security_context": common.container_security(),
            **common.probes(s.port, scheme="HTTP", ready="/healthz"),
            "volume_mounts": [
                {"name": "tmp", "mount_path": "/tmp"},
                {"name": "pki", "mount_path": PKI_DIR, "read_only": True},
                {"name": "inventory", "mount_path": INVENTORY_DIR, "read_only": True},
            ],
        }
        return k8s.apps.v1.Deployment(
            f"{self._name}-deployment",
            metadata=common.metadata(args.prometheus.monitor_job, args.namespace, "monitor"),
            spec={
                # One: the monitor holds per-hop history (stall detection); two would double every alert.
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"match_labels": common.selector("monitor")},
                "template": {
                    "metadata": {
                        "labels": common.labels("monitor"),
                        "annotations": {"gdx.io/config-checksum": args.config_checksum},
                    },
                    "spec": {
                        "automount_service_account_token": False,
                        "priority_class_name": common.PRIORITY_CLASS,
                        "host_network": args.host_network,
                        "security_context": common.pod_security(),
                        "containers": [monitor],
                        "volumes": [
                            common.scratch_volume(),
                            common.secret_volume("pki", identity.metadata.name),
                            {"name": "inventory", "config_map": {"name": args.inventory_config_map}},
                        ],
                    },
                },
            },
            opts=common.child(self),
        )

    def _service(self) -> k8s.core.v1.Service:
        args = self._args
        return k8s.core.v1.Service(
            f"{self._name}-service",
            metadata=common.metadata(args.prometheus.monitor_job, args.namespace, "monitor"),
            spec={
                "selector": common.selector("monitor"),
                "ports": [{"name": "http-metrics", "port": args.settings.port, "target_port": "http-metrics"}],
            },
            opts=common.child(self),
        )

    def _dashboards(self) -> list[k8s.core.v1.ConfigMap]:
        return [
            k8s.core.v1.ConfigMap(
                f"{self._name}-dashboard-{stem}",
                metadata=common.metadata(f"gdx-dashboard-{stem}", self._args.namespace, "monitor")
                | {"labels": {**common.labels("monitor"), "grafana_dashboard": "1"}},
                data={f"{stem}.json": json.dumps(board, indent=1, ensure_ascii=False, sort_keys=True)},
                opts=common.child(self),
            )
            for stem, board in self._args.prometheus.dashboards.items()
        ]

    def _plain_config_maps(self) -> None:
        """For a Prometheus run by hand: its rule files and its scrape jobs, as ConfigMaps."""
        args = self._args
        k8s.core.v1.ConfigMap(
            f"{self._name}-rules",
            metadata=common.metadata("gdx-prometheus-rules", args.namespace, "monitor"),
            data=dict(args.prometheus.rule_files),
            opts=common.child(self),
        )
        k8s.core.v1.ConfigMap(
            f"{self._name}-scrape",
            metadata=common.metadata("gdx-prometheus-scrape", args.namespace, "monitor"),
            data={"scrape.yml": yaml.safe_dump({"scrape_configs": args.prometheus.scrape_jobs}, sort_keys=False)},
            opts=common.child(self),
        )

    def _custom(self, suffix: str, kind: str, name: str, spec: dict[str, Any], version: str = "v1") -> None:
        """An object of the Prometheus Operator's API (monitoring.coreos.com)."""
        k8s.apiextensions.CustomResource(
            f"{self._name}-{suffix}",
            api_version=f"monitoring.coreos.com/{version}",
            kind=kind,
            metadata=common.metadata(name, self._args.namespace, "monitor"),
            spec=spec,
            opts=common.child(self),
        )

    def _operator_objects(self) -> None:
        """For the Prometheus Operator: a PrometheusRule, ServiceMonitors and the node exporters' ScrapeConfig."""
        args, inputs = self._args, self._args.prometheus
        groups = [group for text in inputs.rule_files.values() for group in yaml.safe_load(text)["groups"]]
        self._custom("prometheus-rule", "PrometheusRule", "gdx", {"groups": groups})
        every = f"{args.settings.interval_seconds:g}s"
        self._custom(
            "service-monitor",
            "ServiceMonitor",
            inputs.monitor_job,
            {
                "selector": {"matchLabels": common.selector("monitor")},
                "endpoints": [{"port": "http-metrics", "interval": every}],
            },
        )
        tls = {
            "ca": {"secret": {"name": PROMETHEUS_SECRET, "key": "ca.crt"}},
            "cert": {"secret": {"name": PROMETHEUS_SECRET, "key": "prometheus.crt"}},
            "keySecret": {"name": PROMETHEUS_SECRET, "key": "prometheus.key"},
            "serverName": pulumi.Output.concat(args.exchange_host),
        }
        self._custom(
            "exchange-monitor",
            "ServiceMonitor",
            inputs.exchange_job,
            {
                "selector": {"matchLabels": common.selector("exchange")},
                "endpoints": [{"port": "https", "scheme": "https", "tlsConfig": tls}],
            },
        )
        nodes = [job for job in inputs.scrape_jobs if job["job_name"] == inputs.node_exporter_job]
        if nodes:
            spec = {"staticConfigs": nodes[0]["static_configs"]}
            self._custom("node-exporters", "ScrapeConfig", inputs.node_exporter_job, spec, version="v1alpha1")
