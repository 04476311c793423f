"""The exchange's PostgreSQL, one of three kinds chosen per stack.

Each kind ends in the same place: a Secret holding the connection URL under the key ``uri``,
which the exchange's pods read, and a description of where the database is for the NetworkPolicies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import pulumi
import pulumi_kubernetes as k8s

from infra.components.common import PRIORITY_CLASS, child, container_security, labels, metadata, resources, selector
from infra.settings import DatabaseSettings

URL_KEY = "uri"
POSTGRES_UID = 999  # the postgres user of the official image and of infra/images/postgres


@dataclass
class DatabaseArgs:
    namespace: pulumi.Input[str]
    settings: DatabaseSettings
    host_network: bool = False
    password: pulumi.Input[str] | None = None  # statefulset only: the gdx:databasePassword secret
    url: pulumi.Input[str] | None = None  # external only: the gdx:databaseUrl secret
    pod_monitor: bool = False  # cloudnative-pg: a PodMonitor for the Prometheus Operator


class Database(pulumi.ComponentResource):
    """What the exchange needs to know of any kind of database."""

    url_secret: pulumi.Output[str]
    port: int
    pod_selector: dict[str, str] | None  # pods to allow traffic to, when they run in the namespace
    cidr: str | None  # a network to allow traffic to, when they do not


class StatefulSetDatabase(Database):
    """One PostgreSQL pod with a PersistentVolumeClaim (local and dev stacks)."""

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gdx:component:StatefulSetDatabase", name, None, opts)
        s = args.settings
        if args.password is None:
            raise ValueError(
                "a statefulset database needs its password (pulumi config set --secret gdx:databasePassword)"
            )
        host = "127.0.0.1" if args.host_network else pulumi.Output.concat("gdx-db.", args.namespace, ".svc")
        url: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(host, args.password).apply(
                lambda v: f"postgresql://{s.user}:{quote(v[1], safe='')}@{v[0]}:{s.port}/{s.name}"
            )
        )
        self._name, self._args = name, args
        secret = self._credentials(url)
        service = self._service()
        self._statefulset(secret, service)
        self.url_secret = secret.metadata.name
        self.port = s.port
        self.pod_selector = selector("database")
        self.cidr = None
        self.register_outputs({"url_secret": self.url_secret})

    def _credentials(self, url: pulumi.Output[str]) -> k8s.core.v1.Secret:
        args = self._args
        return k8s.core.v1.Secret(
            f"{self._name}-credentials",
            metadata=metadata("gdx-db-credentials", args.namespace, "database"),
            type="Opaque",
            string_data={"password": pulumi.Output.secret(args.password), URL_KEY: url},
            opts=child(self),
        )

    def _service(self) -> k8s.core.v1.Service:
        args, s = self._args, self._args.settings
        return k8s.core.v1.Service(
            f"{self._name}-service",
            metadata=metadata("gdx-db", args.namespace, "database"),
            spec={
                "cluster_ip": "None",
                "selector": selector("database"),
                "ports": [{"name": "postgresql", "port": s.port, "target_port": s.port}],
            },
            opts=child(self),
        )

    def _statefulset(self, secret: k8s.core.v1.Secret, service: k8s.core.v1.Service) -> None:
        args, s = self._args, self._args.settings
        password_ref = {"secret_key_ref": {"name": secret.metadata.name, "key": "password"}}
        # The socket in /tmp (an emptyDir): the root filesystem is read-only.
        server_args = [
            "-p",
            str(s.port),
            "-c",
            "unix_socket_directories=/tmp",
            "-c",
            f"max_connections={s.max_connections}",
        ]
        ready = {"exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-p", str(s.port), "-U", s.user, "-d", s.name]}}
        k8s.apps.v1.StatefulSet(
            f"{self._name}-statefulset",
            metadata=metadata("gdx-db", args.namespace, "database"),
            spec={
                "service_name": service.metadata.name,
                "replicas": 1,
                "selector": {"match_labels": selector("database")},
                "template": {
                    "metadata": {"labels": labels("database")},
                    "spec": {
                        "host_network": args.host_network,
                        "automount_service_account_token": False,
                        "priority_class_name": PRIORITY_CLASS,
                        "security_context": {
                            "run_as_non_root": True,
                            "run_as_user": POSTGRES_UID,
                            "run_as_group": POSTGRES_UID,
                            "fs_group": POSTGRES_UID,
                            "seccomp_profile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "postgres",
                                "image": s.image,
                                "args": server_args,
                                "env": [
                                    {"name": "POSTGRES_USER", "value": s.user},
                                    {"name": "POSTGRES_DB", "value": s.name},
                                    {"name": "POSTGRES_PASSWORD", "value_from": password_ref},
                                    {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                                ],
                                "ports": [{"name": "postgresql", "container_port": s.port}],
                                "resources": resources(s.resources),
                                "security_context": container_security(),
                                "startup_probe": {**ready, "period_seconds": 2, "failure_threshold": 60},
                                "readiness_probe": {**ready, "period_seconds": 5},
                                "liveness_probe": {**ready, "period_seconds": 10, "failure_threshold": 6},
                                "volume_mounts": [
                                    {"name": "data", "mount_path": "/var/lib/postgresql/data"},
                                    {"name": "tmp", "mount_path": "/tmp"},
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "tmp", "empty_dir": {"size_limit": "256Mi"}},
                        ],
                    },
                },
                "volume_claim_templates": [
                    {
                        "metadata": {"name": "data", "labels": labels("database")},
                        "spec": {
                            "access_modes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": s.storage}},
                            **({"storage_class_name": s.storage_class} if s.storage_class else {}),
                        },
                    }
                ],
            },
            opts=child(self, depends_on=[secret]),
        )


class CloudNativePgDatabase(Database):
    """A CloudNativePG Cluster: several instances, failover, base backups and WAL to object storage (prod).

    The operator makes the Secret ``<cluster>-app`` with the application user's ``uri``."""

    CLUSTER = "gdx-db"
    METRICS_PORT = 9187  # each instance's exporter (port name "metrics")

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gdx:component:CloudNativePgDatabase", name, None, opts)
        self._name, self._args = name, args
        cluster = self._cluster(self._backup_credentials())
        self._nightly_backup(cluster)
        if args.pod_monitor:
            self._pod_monitor(cluster)
        self.url_secret = pulumi.Output.from_input(f"{self.CLUSTER}-app")
        self.port = 5432
        self.pod_selector = {"cnpg.io/cluster": self.CLUSTER}
        self.cidr = None
        self.register_outputs({"url_secret": self.url_secret})

    def _backup_credentials(self) -> k8s.core.v1.Secret:
        """The Secret the cloud team makes (settings.backup.credentials_secret), read, not made: a
        preview or an up stops right here when it does not exist, before anything is deployed."""
        backup = self._args.settings.backup
        assert backup is not None
        return k8s.core.v1.Secret.get(
            f"{self._name}-backup-credentials",
            pulumi.Output.concat(self._args.namespace, "/", backup.credentials_secret),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _cluster(self, credentials_secret: k8s.core.v1.Secret) -> k8s.apiextensions.CustomResource:
        s = self._args.settings
        assert s.backup is not None  # settings refuse cloudnative-pg without backup
        credentials = {"name": s.backup.credentials_secret}
        sealed = {"compression": "gzip", "encryption": s.backup.encryption}
        barman = {
            "destinationPath": s.backup.destination_path,
            "s3Credentials": {
                "accessKeyId": {**credentials, "key": "ACCESS_KEY_ID"},
                "secretAccessKey": {**credentials, "key": "ACCESS_SECRET_KEY"},
            },
            "wal": sealed,
            "data": sealed,
            **({"endpointURL": s.backup.endpoint_url} if s.backup.endpoint_url else {}),
        }
        storage_class = {"storageClass": s.storage_class} if s.storage_class else {}
        synchronous = (
            {"minSyncReplicas": s.synchronous_replicas, "maxSyncReplicas": s.synchronous_replicas}
            if s.synchronous_replicas
            else {}
        )
        # Requests equal to limits (the settings insist): Guaranteed QoS, the last pods evicted.
        limits = {"cpu": s.resources.cpu_limit, "memory": s.resources.memory_limit}
        return k8s.apiextensions.CustomResource(
            f"{self._name}-cluster",
            api_version="postgresql.cnpg.io/v1",
            kind="Cluster",
            metadata=metadata(self.CLUSTER, self._args.namespace, "database"),
            spec={
                "instances": s.instances,
                **({"imageName": s.image} if s.image else {}),
                "primaryUpdateStrategy": "unsupervised",
                "bootstrap": {"initdb": {"database": s.name, "owner": s.user}},
                "postgresql": {"parameters": {"max_connections": str(s.max_connections)}},
                **synchronous,
                "storage": {"size": s.storage, **storage_class},
                **({"walStorage": {"size": s.wal_storage, **storage_class}} if s.wal_storage else {}),
                "resources": {"requests": limits, "limits": limits},
                "affinity": {"enablePodAntiAffinity": True, "topologyKey": "kubernetes.io/hostname"},
                "priorityClassName": PRIORITY_CLASS,
                "backup": {"barmanObjectStore": barman, "retentionPolicy": s.backup.retention},
                "monitoring": {"enablePodMonitor": False},  # ours below: the operator's is deprecated
            },
            opts=child(self, depends_on=[credentials_secret]),
        )

    def _nightly_backup(self, cluster: k8s.apiextensions.CustomResource) -> None:
        backup = self._args.settings.backup
        assert backup is not None
        k8s.apiextensions.CustomResource(
            f"{self._name}-nightly-backup",
            api_version="postgresql.cnpg.io/v1",
            kind="ScheduledBackup",
            metadata=metadata("gdx-db-nightly", self._args.namespace, "database"),
            spec={
                "schedule": backup.utc_schedule(),
                # The first backup at once: a new cluster is not left without one until the night.
                "immediate": True,
                "backupOwnerReference": "self",
                "cluster": {"name": self.CLUSTER},
            },
            opts=child(self, depends_on=[cluster]),
        )

    def _pod_monitor(self, cluster: k8s.apiextensions.CustomResource) -> None:
        k8s.apiextensions.CustomResource(
            f"{self._name}-pod-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata=metadata(self.CLUSTER, self._args.namespace, "database"),
            spec={
                "selector": {"matchLabels": {"cnpg.io/cluster": self.CLUSTER}},
                "podMetricsEndpoints": [{"port": "metrics"}],
            },
            opts=child(self, depends_on=[cluster]),
        )


class ExternalDatabase(Database):
    """A managed PostgreSQL outside the cluster, known only by its URL, given as a Pulumi secret."""

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gdx:component:ExternalDatabase", name, None, opts)
        if args.url is None:
            raise ValueError("an external database needs its URL (pulumi config set --secret gdx:databaseUrl)")
        secret = k8s.core.v1.Secret(
            f"{name}-url",
            metadata=metadata("gdx-db-external", args.namespace, "database"),
            type="Opaque",
            string_data={URL_KEY: pulumi.Output.secret(args.url)},
            opts=child(self),
        )
        self.url_secret = secret.metadata.name
        self.port = args.settings.port
        self.pod_selector = None
        self.cidr = args.settings.external_cidr
        self.register_outputs({"url_secret": self.url_secret})


KINDS: dict[str, Callable[[str, DatabaseArgs], Database]] = {
    "statefulset": StatefulSetDatabase,
    "cloudnative-pg": CloudNativePgDatabase,
    "external": ExternalDatabase,
}
