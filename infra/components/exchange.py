"""The central exchange service: its identity, the migration Job, the Deployment and what keeps it up."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

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
from infra.components.database import URL_KEY, Database
from infra.pki import Pair
from infra.settings import ExchangeSettings

TLS_DIR = "/etc/gdx/tls"
INVENTORY_DIR = "/etc/gdx/inventory"
SERVICE = "gdx-exchange"


@dataclass
class ExchangeArgs:
    namespace: pulumi.Input[str]
    image: str
    image_pull_policy: str
    settings: ExchangeSettings
    server_identity: Pair
    ca_certificate: str
    inventory: pulumi.Input[str]  # the ConfigMap holding inventory.yml
    database: Database
    host_network: bool = False


def migration_job_name(image: str) -> str:
    """One Job per image: Jobs are immutable, and a new version must run its own migrations."""
    version = image.rsplit("@", 1)[-1] if "@" in image else image.rsplit(":", 1)[-1]
    return ("gdx-migrate-" + re.sub(r"[^a-z0-9-]+", "-", version.lower()).strip("-"))[:63].rstrip("-")


class Exchange(pulumi.ComponentResource):
    service: pulumi.Output[str]
    deployment: pulumi.Output[str]
    migration: pulumi.Output[str]
    port: int

    def __init__(self, name: str, args: ExchangeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gdx:component:Exchange", name, None, opts)
        s = args.settings
        ns = args.namespace
        account = k8s.core.v1.ServiceAccount(
            f"{name}-account",
            metadata=metadata(SERVICE, ns, "exchange"),
            automount_service_account_token=False,
            opts=child(self),
        )
        tls = k8s.core.v1.Secret(
            f"{name}-tls",
            metadata=metadata("gdx-exchange-tls", ns, "exchange"),
            type="kubernetes.io/tls",
            string_data={
                "tls.crt": args.server_identity.cert,
                "tls.key": args.server_identity.key,
                "ca.crt": args.ca_certificate,
            },
            opts=child(self),
        )
        database_url = {
            "name": "GDX_DATABASE_URL",
            "value_from": {"secret_key_ref": {"name": args.database.url_secret, "key": URL_KEY}},
        }

        def container(name: str, command: list[str], **extra: object) -> dict[str, object]:
            return {
                "name": name,
                "image": args.image,
                "image_pull_policy": args.image_pull_policy,
                "command": command,
                "env": [database_url, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
                "resources": resources(s.resources),
                "security_context": container_security(),
                "volume_mounts": [{"name": "tmp", "mount_path": "/tmp"}],
                **extra,
            }

        pod_basics = {
            "service_account_name": account.metadata.name,
            "automount_service_account_token": False,
            "host_network": args.host_network,
            "security_context": pod_security(),
        }
        job = k8s.batch.v1.Job(
            f"{name}-migrate",
            metadata=metadata(migration_job_name(args.image), ns, "exchange-migrate"),
            spec={
                "backoff_limit": 2,
                "active_deadline_seconds": 600,
                "template": {
                    "metadata": {"labels": labels("exchange-migrate")},
                    "spec": {
                        **pod_basics,
                        "restart_policy": "Never",
                        "init_containers": [container("migrate", ["gdx", "exchange", "migrate"])],
                        "containers": [
                            container(
                                "load-departments",
                                ["gdx", "exchange", "load-departments", f"{INVENTORY_DIR}/inventory.yml"],
                                volume_mounts=[
                                    {"name": "tmp", "mount_path": "/tmp"},
                                    {"name": "inventory", "mount_path": INVENTORY_DIR, "read_only": True},
                                ],
                            )
                        ],
                        "volumes": [scratch_volume(), {"name": "inventory", "config_map": {"name": args.inventory}}],
                    },
                },
            },
            opts=child(self),
        )
        serve = container(
            "exchange",
            ["gdx", "exchange", "serve"],
            env=[
                database_url,
                {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                {"name": "GDX_TLS_CERT", "value": f"{TLS_DIR}/tls.crt"},
                {"name": "GDX_TLS_KEY", "value": f"{TLS_DIR}/tls.key"},
                {"name": "GDX_CA_CERT", "value": f"{TLS_DIR}/ca.crt"},
                {"name": "GDX_PORT", "value": str(s.port)},
                {"name": "GDX_POOL_MAX", "value": str(s.pool_max)},
                {"name": "GDX_TLS_ALERTS", "value": str(s.tls_alerts).lower()},
            ],
            ports=[{"name": "https", "container_port": s.port}],
            volume_mounts=[
                {"name": "tmp", "mount_path": "/tmp"},
                {"name": "tls", "mount_path": TLS_DIR, "read_only": True},
            ],
            **probes(s.port, scheme="HTTPS"),
        )
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata(SERVICE, ns, "exchange"),
            spec={
                "replicas": s.replicas,
                "selector": {"match_labels": selector("exchange")},
                "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
                "template": {
                    "metadata": {"labels": labels("exchange")},
                    "spec": {
                        **pod_basics,
                        "termination_grace_period_seconds": 30,
                        "topology_spread_constraints": [
                            {
                                "max_skew": 1,
                                "topology_key": "kubernetes.io/hostname",
                                "when_unsatisfiable": "ScheduleAnyway",
                                "label_selector": {"match_labels": selector("exchange")},
                            }
                        ],
                        "containers": [serve],
                        "volumes": [scratch_volume(), secret_volume("tls", tls.metadata.name)],
                    },
                },
            },
            # The new version serves only after its migrations ran (Pulumi waits for the Job to succeed).
            # With an autoscaler, replicas are its to set after the first deployment.
            opts=pulumi.ResourceOptions.merge(
                child(self, depends_on=[job]),
                pulumi.ResourceOptions(ignore_changes=["spec.replicas"] if s.max_replicas > s.replicas else None),
            ),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=metadata(SERVICE, ns, "exchange"),
            spec={
                "type": "ClusterIP",
                "selector": selector("exchange"),
                "ports": [{"name": "https", "port": s.port, "target_port": "https"}],
            },
            opts=child(self),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=metadata(SERVICE, ns, "exchange"),
            spec={"max_unavailable": 1, "selector": {"match_labels": selector("exchange")}},
            opts=child(self),
        )
        if s.max_replicas > s.replicas:
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{name}-hpa",
                metadata=metadata(SERVICE, ns, "exchange"),
                spec={
                    "scale_target_ref": {
                        "api_version": "apps/v1",
                        "kind": "Deployment",
                        "name": deployment.metadata.name,
                    },
                    "min_replicas": s.replicas,
                    "max_replicas": s.max_replicas,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "average_utilization": s.target_cpu_percent},
                            },
                        }
                    ],
                },
                opts=child(self),
            )
        self.service = service.metadata.name
        self.deployment = deployment.metadata.name
        self.migration = job.metadata.name
        self.port = s.port
        self.register_outputs({"service": self.service, "deployment": self.deployment, "migration": self.migration})
