"""The central exchange service: its identity, the migration Job, the Deployment and what keeps it up."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.components.common import (
    PRIORITY_CLASS,
    child,
    container_security,
    identity_secret,
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
    # sha256 of the inventory's central view: a changed inventory makes a new migration Job, whose
    # load-departments brings the registry up to date.
    inventory_checksum: str = ""
    # The object store's access key and secret key (the stack's secrets), when settings.file_store is set.
    file_store_keys: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None


# How long a stopping pod keeps serving before uvicorn is told to stop: the time for its removal
# from the Service's endpoints to reach the ingress, which meanwhile still sends it requests.
PRE_STOP_S = 10
# How long a migration waits for its database (a CloudNativePG cluster may still be starting).
MIGRATION_WAIT_S = 300


def migration_job_name(image: str, inventory_checksum: str = "") -> str:
    """One Job per image and inventory: Jobs are immutable; a new version must run its own
    migrations, and a changed inventory its own load of the department registry."""
    name, _, digest = image.partition("@sha256:")
    version = name.rsplit(":", 1)[-1] + (f"-{digest[:12]}" if digest else "")
    stem = re.sub(r"[^a-z0-9-]+", "-", version.lower()).strip("-")
    suffix = f"-{inventory_checksum[:8]}" if inventory_checksum else ""
    return ("gdx-migrate-" + stem)[: 63 - len(suffix)].rstrip("-") + suffix


def checksum(*parts: str) -> str:
    """What a pod template carries of the files it mounts: a change rolls the pods."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class Exchange(pulumi.ComponentResource):
    service: pulumi.Output[str]
    deployment: pulumi.Output[str]
    migration: pulumi.Output[str]
    tls_secret: pulumi.Output[str]
    port: int

    def __init__(self, name: str, args: ExchangeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gdx:component:Exchange", name, None, opts)
        self._name, self._args = name, args
        account = k8s.core.v1.ServiceAccount(
            f"{name}-account",
            metadata=metadata(SERVICE, args.namespace, "exchange"),
            automount_service_account_token=False,
            opts=child(self),
        )
        self._pod_basics = {
            "service_account_name": account.metadata.name,
            "automount_service_account_token": False,
            "priority_class_name": PRIORITY_CLASS,
            "host_network": args.host_network,
            "security_context": pod_security(),
        }
        tls = identity_secret(
            self, f"{name}-tls", "gdx-exchange-tls", args.namespace, "exchange", args.server_identity,
            args.ca_certificate, kind="kubernetes.io/tls",
        )  # fmt: skip
        job = self._migration_job()
        self._file_store_env = self._file_store()
        deployment = self._deployment(tls, job)
        service = self._service()
        self._disruption_budget()
        if args.settings.max_replicas > args.settings.replicas:
            self._autoscaler(deployment)
        self.service = service.metadata.name
        self.deployment = deployment.metadata.name
        self.migration = job.metadata.name
        self.tls_secret = tls.metadata.name
        self.port = args.settings.port
        self.register_outputs(
            {
                "service": self.service,
                "deployment": self.deployment,
                "migration": self.migration,
                "tls_secret": self.tls_secret,
            }
        )

    def _container(self, name: str, command: list[str], **extra: object) -> dict[str, object]:
        """A container of the exchange's image, with the database's URL from its Secret."""
        args = self._args
        return {
            "name": name,
            "image": args.image,
            "image_pull_policy": args.image_pull_policy,
            "command": command,
            "env": self._env(),
            "resources": resources(args.settings.resources),
            "security_context": container_security(),
            "volume_mounts": [{"name": "tmp", "mount_path": "/tmp"}],
            **extra,
        }

    def _env(self, **settings: str) -> list[dict[str, object]]:
        database_url: dict[str, object] = {
            "name": "GDX_DATABASE_URL",
            "value_from": {"secret_key_ref": {"name": self._args.database.url_secret, "key": URL_KEY}},
        }
        plain: list[dict[str, object]] = [
            {"name": key, "value": value} for key, value in {"PYTHONDONTWRITEBYTECODE": "1", **settings}.items()
        ]
        return [database_url, *plain]

    def _file_store(self) -> list[dict[str, object]]:
        """The object store's settings as the exchange's environment, its keys from a Secret."""
        store, keys = self._args.settings.file_store, self._args.file_store_keys
        if store is None:
            return []
        if keys is None:
            raise ValueError(
                "exchange.fileStore is set: give its keys (pulumi config set --secret gdx:s3AccessKey ...)"
            )
        secret = k8s.core.v1.Secret(
            f"{self._name}-file-store",
            metadata=metadata("gdx-exchange-file-store", self._args.namespace, "exchange"),
            type="Opaque",
            string_data={"access-key": keys[0], "secret-key": keys[1]},
            opts=child(self),
        )
        plain = {"GDX_S3_ENDPOINT": store.endpoint, "GDX_S3_BUCKET": store.bucket, "GDX_S3_PREFIX": store.prefix}
        if store.region:
            plain["GDX_S3_REGION"] = store.region
        from_secret: list[dict[str, object]] = [
            {"name": name, "value_from": {"secret_key_ref": {"name": secret.metadata.name, "key": key}}}
            for name, key in (("GDX_S3_ACCESS_KEY", "access-key"), ("GDX_S3_SECRET_KEY", "secret-key"))
        ]
        values: list[dict[str, object]] = [{"name": key, "value": value} for key, value in plain.items()]
        return values + from_secret

    def _migration_job(self) -> k8s.batch.v1.Job:
        """Migrations, then the department registry from the inventory: one Job per image."""
        args = self._args
        load_departments = self._container(
            "load-departments",
            ["gdx", "exchange", "load-departments", f"{INVENTORY_DIR}/inventory.yml"],
            volume_mounts=[
                {"name": "tmp", "mount_path": "/tmp"},
                {"name": "inventory", "mount_path": INVENTORY_DIR, "read_only": True},
            ],
        )
        return k8s.batch.v1.Job(
            f"{self._name}-migrate",
            metadata=metadata(
                migration_job_name(args.image, args.inventory_checksum), args.namespace, "exchange-migrate"
            ),
            spec={
                # The migration waits for the database itself; retries are for what fails after.
                "backoff_limit": 4,
                "active_deadline_seconds": MIGRATION_WAIT_S + 600,
                "template": {
                    "metadata": {"labels": labels("exchange-migrate")},
                    "spec": {
                        **self._pod_basics,
                        "restart_policy": "Never",
                        "init_containers": [
                            self._container("migrate", ["gdx", "exchange", "migrate", "--wait", str(MIGRATION_WAIT_S)])
                        ],
                        "containers": [load_departments],
                        "volumes": [scratch_volume(), {"name": "inventory", "config_map": {"name": args.inventory}}],
                    },
                },
            },
            opts=child(self, depends_on=[args.database]),
        )

    def _deployment(self, tls: k8s.core.v1.Secret, job: k8s.batch.v1.Job) -> k8s.apps.v1.Deployment:
        args, s = self._args, self._args.settings
        serve = self._container(
            "exchange",
            ["gdx", "exchange", "serve"],
            env=self._env(
                GDX_TLS_CERT=f"{TLS_DIR}/tls.crt",
                GDX_TLS_KEY=f"{TLS_DIR}/tls.key",
                GDX_CA_CERT=f"{TLS_DIR}/ca.crt",
                GDX_PORT=str(s.port),
                GDX_POOL_MAX=str(s.pool_max),
                GDX_TLS_ALERTS=str(s.tls_alerts).lower(),
                GDX_CHANGE_RETENTION_DAYS=str(s.change_retention_days),
                GDX_UPLOAD_MAX_BYTES=str(s.upload_max_mib * 1024 * 1024),
                GDX_UPLOAD_MAX_ROWS=str(s.upload_max_rows),
            )
            + self._file_store_env,
            ports=[{"name": "https", "container_port": s.port}],
            volume_mounts=[
                {"name": "tmp", "mount_path": "/tmp"},
                {"name": "tls", "mount_path": TLS_DIR, "read_only": True},
            ],
            lifecycle={"pre_stop": {"exec": {"command": ["sleep", str(PRE_STOP_S)]}}},
            **probes(s.port, scheme="HTTPS"),
        )
        # A renewed identity is a new certificate (the key itself is a secret, and need not be read).
        identity = checksum(args.server_identity.cert, args.ca_certificate)
        return k8s.apps.v1.Deployment(
            f"{self._name}-deployment",
            metadata=metadata(SERVICE, args.namespace, "exchange"),
            spec={
                "replicas": s.replicas,
                "selector": {"match_labels": selector("exchange")},
                "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
                "template": {
                    "metadata": {"labels": labels("exchange"), "annotations": {"gdx.io/tls-checksum": identity}},
                    "spec": {
                        **self._pod_basics,
                        # The endpoints' update, then the longest request the ingress waits for.
                        "termination_grace_period_seconds": PRE_STOP_S + s.request_timeout_s + 5,
                        "topology_spread_constraints": [
                            {
                                "max_skew": 1,
                                "topology_key": "kubernetes.io/hostname",
                                "when_unsatisfiable": "ScheduleAnyway",
                                "label_selector": {"match_labels": selector("exchange")},
                            }
                        ],
                        "containers": [serve],
                        # An upload is spooled here while it is read (and a workbook download written,
                        # and an attachment checked before it goes to the object store).
                        "volumes": [
                            scratch_volume(size=f"{s.upload_max_mib + 64}Mi"),
                            secret_volume("tls", tls.metadata.name),
                        ],
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

    def _service(self) -> k8s.core.v1.Service:
        return k8s.core.v1.Service(
            f"{self._name}-service",
            metadata=metadata(SERVICE, self._args.namespace, "exchange"),
            spec={
                "type": "ClusterIP",
                "selector": selector("exchange"),
                "ports": [{"name": "https", "port": self._args.settings.port, "target_port": "https"}],
            },
            opts=child(self),
        )

    def _disruption_budget(self) -> None:
        k8s.policy.v1.PodDisruptionBudget(
            f"{self._name}-pdb",
            metadata=metadata(SERVICE, self._args.namespace, "exchange"),
            spec={"max_unavailable": 1, "selector": {"match_labels": selector("exchange")}},
            opts=child(self),
        )

    def _autoscaler(self, deployment: k8s.apps.v1.Deployment) -> None:
        s = self._args.settings
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{self._name}-hpa",
            metadata=metadata(SERVICE, self._args.namespace, "exchange"),
            spec={
                "scale_target_ref": {"api_version": "apps/v1", "kind": "Deployment", "name": deployment.metadata.name},
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
