"""A stack's settings: the `gdx:*` keys of Pulumi.<stack>.yaml, validated with messages naming the key.

Secrets never live here as plain values: the external database's URL and the statefulset database's
password come from `pulumi config set --secret`, the certificates' keys from the PKI folder; both
reach the program as Pulumi secrets only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

NAMESPACE = "gdx"  # the Pulumi config namespace: keys are gdx:exchange, gdx:database, ...
# PostgreSQL's superuser_reserved_connections (3) and replication connections (CloudNativePG: up to 10).
RESERVED_CONNECTIONS = 13
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$"
_TAG_OR_DIGEST = re.compile(r"^(?P<repo>[^@]+?)(:(?P<tag>[\w][\w.-]{0,127}))?(@(?P<digest>sha256:[0-9a-f]{64}))?$")


class SettingsError(Exception):
    def __init__(self, stack: str, problems: list[str]) -> None:
        super().__init__(f"stack {stack}: " + "; ".join(problems))
        self.stack = stack
        self.problems = problems


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class Resources(_Section):
    cpu_request: str = Field("250m", pattern=_QUANTITY)
    cpu_limit: str = Field("1", pattern=_QUANTITY)
    memory_request: str = Field("256Mi", pattern=_QUANTITY)
    memory_limit: str = Field("512Mi", pattern=_QUANTITY)


class FileStoreSettings(_Section):
    """An S3-compatible object store for the files of resources of format file (docs/exchange.md,
    "Attachments"); its access key and secret key are the stack's secrets s3AccessKey and s3SecretKey."""

    endpoint: str = Field(pattern=r"^https://[a-z0-9.-]+(:[0-9]{1,5})?/?$")
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = Field("gdx-files/", pattern=r"^([A-Za-z0-9._-]+/)*$")
    region: str | None = None
    # The store's network: the exchange's pods may reach it on the endpoint's port, and nothing else new.
    cidr: str = Field(pattern=r"^[0-9a-f.:]+/[0-9]{1,3}$")

    @property
    def port(self) -> int:
        host = self.endpoint.removeprefix("https://").rstrip("/")
        return int(host.rsplit(":", 1)[1]) if ":" in host else 443


class ExchangeSettings(_Section):
    replicas: int = Field(2, ge=1, le=50)
    max_replicas: int = Field(6, ge=1, le=100)
    target_cpu_percent: int = Field(70, ge=10, le=100)
    port: int = Field(8443, ge=1024, le=65535)
    host_port: int | None = Field(None, ge=1, le=65535)
    pool_max: int = Field(10, ge=1, le=200)
    # The TLS alert of a refused client certificate (gdx exchange serve --tls-alerts); off behind
    # an ingress that checks client certificates itself, for uvloop's throughput.
    tls_alerts: bool = True
    # The longest a request may take (a large batch on a slow link): the ingress's proxy timeouts,
    # and what a pod that is shutting down leaves its last requests (terminationGracePeriodSeconds).
    request_timeout_s: int = Field(120, ge=10, le=600)
    # Days a superseded version stays in the change log (docs/exchange.md, "Retention"); 0: for ever.
    change_retention_days: int = Field(30, ge=0, le=3650)
    # Files uploaded by departments without a front-end node (docs/exchange.md, "Files"): the largest
    # body the ingress and the exchange take, spooled in the pod's scratch volume; rows of a CSV file.
    upload_max_mib: int = Field(512, ge=1, le=4096)
    upload_max_rows: int = Field(2_000_000, ge=1, le=100_000_000)
    # Where attachments are kept: an object store, or (unset) the exchange's database.
    file_store: FileStoreSettings | None = None
    # The networks of the departments' inbox webhooks (the inventory's gdx_department.inbox_webhook):
    # the exchange's NetworkPolicy lets it reach them, on the ports their URLs name, and nothing else.
    webhook_cidrs: list[str] = Field(default_factory=list)
    resources: Resources = Resources()

    @model_validator(mode="after")
    def _replicas_fit(self) -> ExchangeSettings:
        if self.max_replicas < self.replicas:
            raise ValueError(f"maxReplicas ({self.max_replicas}) is below replicas ({self.replicas})")
        return self


class IngressSettings(_Section):
    enabled: bool = True
    host: str = Field(pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
    class_name: str = "nginx"
    controller_namespace: str = "ingress-nginx"
    # A Service of type LoadBalancer in front of the ingress is the cluster's business; when this
    # program makes one it must say why (the policy pack refuses it otherwise).
    load_balancer_reason: str | None = None


class BackupSettings(_Section):
    destination_path: str = Field(pattern=r"^s3://[^/]+(/.*)?$")
    endpoint_url: str | None = None
    credentials_secret: str = Field(description="an existing Secret with ACCESS_KEY_ID and ACCESS_SECRET_KEY")
    retention: str = Field("30d", pattern=r"^[0-9]+[dwm]$")
    # The backup store's network: the only address the database's pods may reach on 443 besides
    # the API server.
    object_storage_cidr: str = Field(pattern=r"^[0-9a-f.:]+/[0-9]{1,3}$")
    # When the nightly base backup starts, in Beijing time (the operator's cron runs in UTC).
    time: str = Field("02:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    # Server-side encryption of every object the backups write (base backups and WAL).
    encryption: Literal["AES256", "aws:kms"] = "AES256"

    def utc_schedule(self) -> str:
        """The ScheduledBackup's cron (seconds first, as CloudNativePG reads it), in UTC."""
        hour, minute = (int(part) for part in self.time.split(":"))
        return f"0 {minute} {(hour - 8) % 24} * * *"


class DatabaseSettings(_Section):
    kind: Literal["cloudnative-pg", "statefulset", "external"]
    name: str = "gdx"
    user: str = "gdx"
    port: int = Field(5432, ge=1, le=65535)
    image: str | None = None
    storage: str = Field("10Gi", pattern=_QUANTITY)
    storage_class: str | None = None
    instances: int = Field(3, ge=1, le=9)
    operator_namespace: str = "cnpg-system"
    backup: BackupSettings | None = None
    external_cidr: str | None = None
    resources: Resources = Resources(cpu_request="500m", cpu_limit="2", memory_request="512Mi", memory_limit="2Gi")
    # What the server accepts; the exchange's pools (at their most, during a rollout) must fit.
    max_connections: int = Field(200, ge=20, le=10000)
    # cloudnative-pg: the write-ahead log on a volume of its own, so a burst of WAL cannot fill the data volume.
    wal_storage: str | None = Field("20Gi", pattern=_QUANTITY)
    # cloudnative-pg: standbys that must confirm each commit (0: asynchronous replication).
    synchronous_replicas: int = Field(0, ge=0, le=8)
    # cloudnative-pg: the API server's address (kubectl get endpoints kubernetes), which the
    # instance managers talk to; their only other way out is the backup store.
    api_server_cidr: str | None = Field(None, pattern=r"^[0-9a-f.:]+/[0-9]{1,3}$")

    @model_validator(mode="after")
    def _kind_needs(self) -> DatabaseSettings:
        if self.kind == "cloudnative-pg":
            self._cloudnative_pg_needs()
        if self.kind == "external" and not self.external_cidr:
            raise ValueError("kind external needs externalCidr (the managed database's network, for the NetworkPolicy)")
        if self.kind == "statefulset" and not self.image:
            raise ValueError("kind statefulset needs image (a PostgreSQL 15 image, never :latest)")
        return self

    def _cloudnative_pg_needs(self) -> None:
        if self.backup is None:
            raise ValueError("kind cloudnative-pg needs backup (object storage for base backups and WAL)")
        if not self.api_server_cidr:
            raise ValueError(
                "kind cloudnative-pg needs apiServerCidr (the API server's address, `kubectl get endpoints "
                "kubernetes`): the database's pods may reach nothing else but the backup store"
            )
        if self.synchronous_replicas >= self.instances:
            raise ValueError(
                f"synchronousReplicas ({self.synchronous_replicas}) must be below instances ({self.instances})"
            )
        r = self.resources
        if (r.cpu_request, r.memory_request) != (r.cpu_limit, r.memory_limit):
            raise ValueError(
                "resources: the database's requests must equal its limits (Guaranteed QoS: its pods are the "
                f"last evicted); cpu {r.cpu_request}/{r.cpu_limit}, memory {r.memory_request}/{r.memory_limit}"
            )


class MonitoringSettings(_Section):
    enabled: bool = True
    prometheus_operator: bool = False
    prometheus_namespace: str = "monitoring"
    grafana_namespace: str = "monitoring"
    node_cidrs: list[str] = Field(default_factory=list)
    interval_seconds: float = Field(15, ge=1)
    node_exporter_port: int = Field(9100, ge=1, le=65535)
    port: int = Field(9480, ge=1024, le=65535)
    host_port: int | None = Field(None, ge=1, le=65535)
    # Where the alerts' runbook links point: a copy of docs/runbooks/ the administrators can reach
    # (on a government network, seldom the public repository). Default: the project's site.
    runbook_base_url: str | None = Field(None, pattern=r"^https?://[^\s]+$")


class StackSettings(_Section):
    stack: str
    namespace: str = Field("gdx", pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    image: str
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    # Production: every image by digest (a tag can be pushed again); labels the namespace so that
    # the policy pack holds every workload in it to the same.
    require_image_digests: bool = False
    # Local only: pods share the host's network (podman kube play has no cluster DNS); addresses are 127.0.0.1.
    host_network: bool = False
    pki_dir: Path
    inventory: Path
    exchange: ExchangeSettings = ExchangeSettings()
    ingress: IngressSettings
    database: DatabaseSettings
    monitoring: MonitoringSettings = MonitoringSettings()

    @field_validator("image")
    @classmethod
    def _pinned(cls, value: str) -> str:
        return pinned_image(value)

    @field_validator("pki_dir")
    @classmethod
    def _pki_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"{value} does not exist (make it with `gdx ca init --dir {value}`, or pass --pki)")
        return value

    @field_validator("inventory")
    @classmethod
    def _inventory_exists(cls, value: Path) -> Path:
        if not value.is_file():
            raise ValueError(f"{value} does not exist (the inventory Ansible uses; or pass --inventory)")
        return value

    @model_validator(mode="after")
    def _digests_given(self) -> StackSettings:
        if self.require_image_digests:
            tags = [("image", self.image), ("database.image", self.database.image or "")]
            bare = [f"{key} {value or '(the operator default)'}" for key, value in tags if "@sha256:" not in value]
            if self.database.kind == "external":
                bare = [b for b in bare if not b.startswith("database.image")]
            if bare:
                raise ValueError(
                    "requireImageDigests: pin by digest (NAME:TAG@sha256:..., as `podman image inspect "
                    "--format '{{.Digest}}'` gives it): " + "; ".join(bare)
                )
        return self

    @model_validator(mode="after")
    def _connections_fit(self) -> StackSettings:
        # Every exchange pod at its autoscaler's most, one more during a rollout (maxSurge 1), each
        # with a full pool and its compactor's connection; the migration Job; and what PostgreSQL
        # keeps for superusers and replicas.
        x = self.exchange
        needed = (x.max_replicas + 1) * (x.pool_max + 1) + 1 + RESERVED_CONNECTIONS
        if needed > self.database.max_connections:
            raise ValueError(
                f"database.maxConnections ({self.database.max_connections}) is below what the exchange may open: "
                f"({x.max_replicas} maxReplicas + 1 in a rollout) x ({x.pool_max} poolMax + 1 compactor) + "
                f"1 migration + {RESERVED_CONNECTIONS} reserved = {needed}; raise maxConnections or lower poolMax"
            )
        return self

    def service_host(self, service: str) -> str:
        """Where a pod reaches a Service of this stack."""
        return "127.0.0.1" if self.host_network else f"{service}.{self.namespace}.svc"


def pinned_image(value: str) -> str:
    match = _TAG_OR_DIGEST.match(value)
    if not match or not (match["tag"] or match["digest"]):
        raise ValueError(f"{value!r} names no tag or digest; pin one (e.g. {value}:0.5.0 or @sha256:...)")
    if match["tag"] == "latest" and not match["digest"]:
        raise ValueError(f"{value!r}: never latest; pin a version tag or a digest")
    return value


def parse(stack: str, config: dict[str, Any], base: Path) -> StackSettings:
    """``config`` maps keys without the ``gdx:`` prefix to values (strings holding JSON allowed, as
    Pulumi passes structured config); relative paths are taken from ``base`` (the project folder)."""
    values = {key: _decoded(value) for key, value in config.items()}
    for key in ("pkiDir", "inventory"):
        if isinstance(values.get(key), str):
            values[key] = str((base / values[key]).resolve()) if not Path(values[key]).is_absolute() else values[key]
    try:
        return StackSettings.model_validate({"stack": stack, **values})
    except ValidationError as exc:
        raise SettingsError(stack, [_problem(error) for error in exc.errors()]) from None


def from_pulumi() -> StackSettings:
    """The running stack's settings (inside `pulumi up` or the renderer)."""
    import pulumi

    config = pulumi.Config(NAMESPACE)
    keys = StackSettings.model_fields
    raw = {
        field.alias or name: value
        for name, field in keys.items()
        if name != "stack" and (value := config.get(field.alias or name)) is not None
    }
    return parse(pulumi.get_stack(), raw, Path.cwd())


def _decoded(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if value in ("true", "false"):
        return value == "true"
    return value


def _problem(error: Any) -> str:
    where = "gdx:" + ".".join(str(part) for part in error["loc"]) if error["loc"] else "gdx"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "required; set it in Pulumi.<stack>.yaml"
    elif error["type"] == "extra_forbidden":
        message = "unknown setting (misspelt?)"
    return f"{where}: {message}"
