"""Each component under Pulumi's mocks: its resources, their key properties, parents and dependencies."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pulumi
import pytest

from infra.render import ManifestMocks, RecordingMonitor, Registered, manifests

# Mocks first: the components' modules must meet a mocked runtime, never a real engine.
pulumi.runtime.set_mocks(ManifestMocks(), project="gdx", stack="unit", preview=False)

from gdx.inventory import load_inventory  # noqa: E402
from infra import pki as platform_pki  # noqa: E402
from infra.components.database import (  # noqa: E402
    CloudNativePgDatabase,
    DatabaseArgs,
    ExternalDatabase,
    StatefulSetDatabase,
)
from infra.components.exchange import Exchange, ExchangeArgs, migration_job_name  # noqa: E402
from infra.components.ingress import NGINX, IngressArgs, MutualTlsIngress  # noqa: E402
from infra.components.monitoring import Monitoring, MonitoringArgs, PrometheusInputs  # noqa: E402
from infra.components.network import NetworkPolicies, NetworkPoliciesArgs  # noqa: E402
from infra.settings import (  # noqa: E402
    BackupSettings,
    DatabaseSettings,
    ExchangeSettings,
    IngressSettings,
    MonitoringSettings,
    Resources,
)
from monitoring import dashboards, rules, scrape  # noqa: E402
from tests.support.stacks import INVENTORY  # noqa: E402

IMAGE = "registry.zjg.gov.cn/gdx/gdx:0.1.0"
PG = DatabaseSettings(kind="statefulset", image="registry.zjg.gov.cn/library/postgres:15.10")


@pytest.fixture
def monitor() -> RecordingMonitor:
    """A fresh mocked runtime per test, recording every registration."""
    recording = RecordingMonitor(ManifestMocks())
    pulumi.runtime.reset_options(project="gdx", stack="unit", preview=False)
    pulumi.runtime.set_mocks(recording.mocks, project="gdx", stack="unit", preview=False, monitor=recording)
    return recording


def objects(monitor: RecordingMonitor, kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests(monitor.registered) if m["kind"] == kind]


def registered(monitor: RecordingMonitor, kind: str) -> list[Registered]:
    return [r for r in monitor.registered if r.kind == kind]


def assert_all_parented(monitor: RecordingMonitor, component_type: str) -> None:
    children = [r for r in monitor.registered if r.is_kubernetes]
    assert children
    for r in children:
        parent_type = r.parent.split("::")[2].split("$")[-1]  # urn:pulumi:STACK::PROJECT::TYPE::NAME
        assert parent_type.startswith(component_type), f"{r.name} is not a child of {component_type}: {r.parent}"


def exchange_args(pki: Path, database: Any, **settings: Any) -> ExchangeArgs:
    identities = platform_pki.load(pki)
    return ExchangeArgs(
        namespace="gdx",
        image=IMAGE,
        image_pull_policy="IfNotPresent",
        settings=ExchangeSettings(**settings),
        server_identity=identities["exchange"],
        ca_certificate=identities.ca,
        inventory="gdx-inventory",
        database=database,
    )


def test_exchange_runs_migrations_before_serving_and_reads_the_database_secret(
    monitor: RecordingMonitor, pki: Path
) -> None:
    @pulumi.runtime.test
    def declare() -> pulumi.Output[Any]:
        database = StatefulSetDatabase(
            "db", DatabaseArgs(namespace="gdx", settings=PG, password=pulumi.Output.secret("pw"))
        )
        exchange = Exchange("exchange", exchange_args(pki, database, replicas=3, max_replicas=6))

        def check(values: list[str]) -> None:
            deployment, migration, db_secret = values
            assert deployment == "gdx-exchange"
            assert migration == migration_job_name(IMAGE) == "gdx-migrate-0-1-0"
            # Another inventory, another Job: its load-departments brings the registry up to date.
            assert migration_job_name(IMAGE, "ab" * 32) == "gdx-migrate-0-1-0-abababab"
            assert db_secret == "gdx-db-credentials"

        return pulumi.Output.all(exchange.deployment, exchange.migration, database.url_secret).apply(check)

    declare()
    (deployment,) = objects(monitor, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 3
    assert container["image"] == IMAGE
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8443, "scheme": "HTTPS"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 60
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = {e["name"]: e for e in container["env"]}
    assert env["GDX_CHANGE_RETENTION_DAYS"]["value"] == "30"
    assert env["GDX_UPLOAD_MAX_BYTES"]["value"] == str(512 * 1024 * 1024)
    scratch = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert scratch["emptyDir"]["sizeLimit"] == "576Mi"  # the largest upload spooled, and room besides
    assert env["GDX_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "gdx-db-credentials", "key": "uri"}

    (deployment_reg,) = registered(monitor, "Deployment")
    (job_reg,) = registered(monitor, "Job")
    secret_reg = next(r for r in registered(monitor, "Secret") if r.name == "db-credentials")
    assert job_reg.urn in deployment_reg.dependencies, "the Deployment must wait for the migration Job"
    assert deployment_reg.ignore_changes == ["spec.replicas"], "the autoscaler owns replicas after the first up"
    assert secret_reg.urn in deployment_reg.dependencies, "the database Secret must be wired into the Deployment"

    (job,) = objects(monitor, "Job")
    job_pod = job["spec"]["template"]["spec"]
    # The Job starts after the database's objects and waits for it to accept connections.
    assert [c["command"] for c in job_pod["initContainers"]] == [["gdx", "exchange", "migrate", "--wait", "300"]]
    assert job["spec"]["backoffLimit"] >= 2
    assert any(urn.endswith("::db-statefulset") for urn in job_reg.dependencies), job_reg.dependencies
    # A stopping pod keeps serving until the ingress knows, then has the longest request's time.
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "10"]
    assert pod["terminationGracePeriodSeconds"] >= 10 + 120
    assert len(spec["template"]["metadata"]["annotations"]["gdx.io/tls-checksum"]) == 64
    assert job_pod["containers"][0]["command"][:3] == ["gdx", "exchange", "load-departments"]
    assert job_pod["restartPolicy"] == "Never"

    (hpa,) = objects(monitor, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 6)
    (pdb,) = objects(monitor, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (tls,) = [r for r in registered(monitor, "Secret") if r.name == "exchange-tls"]
    assert tls.has_secret_input(), "the server key must travel as a Pulumi secret"
    assert_all_parented(monitor, "gdx:component:")


def test_exchange_without_headroom_gets_no_autoscaler(monitor: RecordingMonitor, pki: Path) -> None:
    @pulumi.runtime.test
    def declare() -> pulumi.Output[Any]:
        database = ExternalDatabase(
            "db",
            DatabaseArgs(
                "gdx",
                DatabaseSettings(kind="external", external_cidr="10.9.0.0/24"),
                url=pulumi.Output.secret("postgresql://x"),
            ),
        )
        return Exchange("exchange", exchange_args(pki, database, replicas=1, max_replicas=1)).deployment

    declare()
    assert objects(monitor, "HorizontalPodAutoscaler") == []
    assert objects(monitor, "Deployment")[0]["spec"]["replicas"] == 1
    assert registered(monitor, "Deployment")[0].ignore_changes == []


def test_statefulset_database_quotes_the_password_into_its_url_and_keeps_it_secret(monitor: RecordingMonitor) -> None:
    @pulumi.runtime.test
    def declare() -> pulumi.Output[Any]:
        db = StatefulSetDatabase("db", DatabaseArgs("gdx", PG, password=pulumi.Output.secret("p@ss/wörd")))
        return db.url_secret

    declare()
    (secret,) = objects(monitor, "Secret")
    assert secret["stringData"]["uri"] == "postgresql://gdx:p%40ss%2Fw%C3%B6rd@gdx-db.gdx.svc:5432/gdx"
    assert registered(monitor, "Secret")[0].has_secret_input()
    (sts,) = objects(monitor, "StatefulSet")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == PG.image
    (service,) = objects(monitor, "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert_all_parented(monitor, "gdx:component:StatefulSetDatabase")


def test_cloudnative_pg_cluster_has_three_instances_and_backups(monitor: RecordingMonitor) -> None:
    settings = DatabaseSettings(
        kind="cloudnative-pg",
        backup=BackupSettings(
            destination_path="s3://gdx-backups/prod",
            credentials_secret="gdx-backup-s3",
            object_storage_cidr="10.90.0.0/24",
            time="02:30",
        ),
        api_server_cidr="10.0.0.1/32",
        synchronous_replicas=1,
        resources=Resources(cpu_request="2", cpu_limit="2", memory_request="4Gi", memory_limit="4Gi"),
    )

    @pulumi.runtime.test
    def declare() -> pulumi.Output[Any]:
        db = CloudNativePgDatabase("db", DatabaseArgs("gdx", settings, pod_monitor=True))
        return db.url_secret.apply(lambda name: assert_equal(name, "gdx-db-app"))

    declare()
    (cluster,) = objects(monitor, "Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"]["instances"] == 3
    store = cluster["spec"]["backup"]["barmanObjectStore"]
    assert store["destinationPath"] == "s3://gdx-backups/prod"
    assert store["s3Credentials"]["secretAccessKey"] == {"name": "gdx-backup-s3", "key": "ACCESS_SECRET_KEY"}
    assert store["wal"]["encryption"] == store["data"]["encryption"] == "AES256"
    spec = cluster["spec"]
    assert spec["walStorage"]["size"] == "20Gi", "the WAL on a volume of its own"
    assert spec["postgresql"]["parameters"]["max_connections"] == "200"
    assert (spec["minSyncReplicas"], spec["maxSyncReplicas"]) == (1, 1)
    assert spec["resources"]["requests"] == spec["resources"]["limits"], "Guaranteed QoS"
    (nightly,) = objects(monitor, "ScheduledBackup")
    assert nightly["spec"]["cluster"] == {"name": "gdx-db"}
    assert nightly["spec"]["schedule"] == "0 30 18 * * *", "02:30 in Beijing is 18:30 UTC, the operator's clock"
    assert nightly["spec"]["immediate"] is True, "the first backup at once"
    (cluster_reg,) = registered(monitor, "Cluster")
    assert any("backup-credentials" in urn for urn in cluster_reg.dependencies), "the Secret is read before the Cluster"
    (pod_monitor,) = objects(monitor, "PodMonitor")
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {"cnpg.io/cluster": "gdx-db"}
    assert pod_monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics"}]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"synchronous_replicas": 3}, "synchronousReplicas (3) must be below instances (3)"),
        ({"api_server_cidr": None}, "needs apiServerCidr"),
        ({"resources": Resources(cpu_request="1", cpu_limit="2")}, "requests must equal its limits"),
    ],
)
def test_a_cloudnative_pg_database_an_operator_would_refuse_is_named(change: dict[str, Any], named: str) -> None:
    good = {
        "kind": "cloudnative-pg",
        "backup": BackupSettings(
            destination_path="s3://b/p", credentials_secret="s", object_storage_cidr="10.90.0.0/24"
        ),
        "api_server_cidr": "10.0.0.1/32",
        "resources": Resources(cpu_request="2", cpu_limit="2", memory_request="4Gi", memory_limit="4Gi"),
    }
    DatabaseSettings(**good)
    with pytest.raises(ValueError, match=re.escape(named)):
        DatabaseSettings(**{**good, **change})


def assert_equal(got: object, want: object) -> None:
    assert got == want


def test_ingress_verifies_client_certificates_and_forwards_them_over_its_own_tls(
    monitor: RecordingMonitor, pki: Path
) -> None:
    identities = platform_pki.load(pki)

    @pulumi.runtime.test
    def declare() -> pulumi.Output[Any]:
        ingress = MutualTlsIngress(
            "ingress",
            IngressArgs(
                namespace="gdx",
                settings=IngressSettings(host="exchange.zjg.gov.cn"),
                ca_bundle="gdx-platform-ca",
                ingress_identity=identities["ingress"],
                ca_certificate=identities.ca,
                exchange_service="gdx-exchange",
                exchange_port=8443,
                server_tls_secret="gdx-exchange-tls",
                body_max_mib=100,
            ),
        )
        return ingress.url.apply(lambda url: assert_equal(url, "https://exchange.zjg.gov.cn/"))

    declare()
    (ingress,) = objects(monitor, "Ingress")
    notes = ingress["metadata"]["annotations"]
    assert notes[NGINX + "auth-tls-verify-client"] == "on"
    assert notes[NGINX + "auth-tls-secret"] == "gdx/gdx-platform-ca"
    assert notes[NGINX + "auth-tls-pass-certificate-to-upstream"] == "true"
    assert notes[NGINX + "backend-protocol"] == "HTTPS"
    assert notes[NGINX + "proxy-ssl-secret"] == "gdx/gdx-ingress-client"
    assert notes[NGINX + "proxy-ssl-verify"] == "on"
    # Files are the largest bodies; the exchange refuses a batch over its own limit itself.
    assert notes[NGINX + "proxy-body-size"] == "100m"
    assert notes[NGINX + "proxy-request-buffering"] == "off"
    assert ingress["spec"]["tls"] == [{"hosts": ["exchange.zjg.gov.cn"], "secretName": "gdx-exchange-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "gdx-exchange", "port": {"number": 8443}}
    (client,) = registered(monitor, "Secret")
    assert client.has_secret_input()


@pytest.mark.parametrize("operator", [True, False], ids=["prometheus-operator", "plain-prometheus"])
def test_monitoring_ships_every_rule_the_scrape_targets_and_the_dashboards(
    monitor: RecordingMonitor, pki: Path, operator: bool
) -> None:
    identities = platform_pki.load(pki)
    inventory = load_inventory(INVENTORY, require_secrets=False)

    @pulumi.runtime.test
    def declare() -> pulumi.Output[Any]:
        monitoring = Monitoring(
            "monitoring",
            MonitoringArgs(
                namespace="gdx",
                image=IMAGE,
                image_pull_policy="IfNotPresent",
                settings=MonitoringSettings(prometheus_operator=operator),
                monitor_identity=identities["monitor"],
                prometheus_identity=identities["prometheus"],
                ca_certificate=identities.ca,
                inventory_config_map="gdx-inventory",
                exchange_host="gdx-exchange.gdx.svc",
                exchange_port=8443,
                prometheus=PrometheusInputs(
                    rule_files=rules.rule_texts(),
                    dashboards=dashboards.render(),
                    scrape_jobs=scrape.scrape_configs(
                        "gdx-monitor.gdx.svc:9480",
                        exchange="gdx-exchange.gdx.svc:8443",
                        exchange_tls=scrape.ClientTls("ca.crt", "prometheus.crt", "prometheus.key"),
                        inventory=inventory,
                    ),
                    monitor_job=scrape.MONITOR_JOB,
                    exchange_job=scrape.EXCHANGE_JOB,
                    node_exporter_job=scrape.NODE_EXPORTER_JOB,
                ),
            ),
        )
        return monitoring.dashboards.apply(
            lambda names: assert_equal(sorted(names), ["gdx-dashboard-gdx-department", "gdx-dashboard-gdx-overview"])
        )

    declare()
    alerts = rules.rule_texts()["alerts.yml"].count("- alert: ")
    assert alerts >= 15
    if operator:
        (rule,) = objects(monitor, "PrometheusRule")
        assert sum("alert" in r for g in rule["spec"]["groups"] for r in g["rules"]) == alerts
        monitors = {m["metadata"]["name"]: m for m in objects(monitor, "ServiceMonitor")}
        # The job label is the Service's name; GdxMonitorTargetAbsent looks for this one.
        assert set(monitors) == {scrape.MONITOR_JOB, scrape.EXCHANGE_JOB}
        assert (
            monitors[scrape.EXCHANGE_JOB]["spec"]["endpoints"][0]["tlsConfig"]["keySecret"]["key"] == "prometheus.key"
        )
        (nodes,) = objects(monitor, "ScrapeConfig")
        assert len(nodes["spec"]["staticConfigs"]) == len(inventory.nodes)
        assert objects(monitor, "ConfigMap") != []
        assert all("rules" not in c["metadata"]["name"] for c in objects(monitor, "ConfigMap"))
    else:
        maps = {m["metadata"]["name"]: m for m in objects(monitor, "ConfigMap")}
        assert maps["gdx-prometheus-rules"]["data"]["alerts.yml"].count("- alert: ") == alerts
        assert "job_name: gdx-monitor" in maps["gdx-prometheus-scrape"]["data"]["scrape.yml"]
        assert objects(monitor, "PrometheusRule") == []
    boards = [m for m in objects(monitor, "ConfigMap") if m["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(boards) == 2
    (deployment,) = objects(monitor, "Deployment")
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["gdx", "monitor", "run"]
    assert "https://gdx-exchange.gdx.svc:8443" in command
    assert_all_parented(monitor, "gdx:component:Monitoring")


def test_network_policies_deny_by_default_and_open_only_the_paths_of_the_design(monitor: RecordingMonitor) -> None:
    @pulumi.runtime.test
    def declare() -> pulumi.Output[Any]:
        db = StatefulSetDatabase("db", DatabaseArgs("gdx", PG, password=pulumi.Output.secret("pw")))
        policies = NetworkPolicies(
            "network",
            NetworkPoliciesArgs(
                namespace="gdx",
                database=db,
                exchange_port=8443,
                monitor_port=9480,
                ingress_namespace="ingress-nginx",
                prometheus_namespace="monitoring",
                node_networks=["10.40.1.10/32"],
                node_ports=[9470],
                webhook_cidrs=["10.50.0.0/24"],
                webhook_ports=[443],
            ),
        )
        return policies.names.apply(lambda names: assert_equal(len(names), 6))

    declare()
    by_name = {p["metadata"]["name"]: p["spec"] for p in objects(monitor, "NetworkPolicy")}
    assert by_name["gdx-default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    exchange = by_name["gdx-exchange"]
    sources = exchange["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in sources
    assert exchange["egress"][0]["ports"] == [{"protocol": "TCP", "port": 5432}]
    # The departments' inbox webhooks, and nothing else beyond the database.
    assert exchange["egress"][1] == {
        "to": [{"ipBlock": {"cidr": "10.50.0.0/24"}}],
        "ports": [{"protocol": "TCP", "port": 443}],
    }
    assert len(exchange["egress"]) == 2
    database = by_name["gdx-database"]
    allowed = [s["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for s in database["ingress"][0]["from"]]
    assert allowed == ["gdx-exchange", "gdx-exchange-migrate"]
    assert database["policyTypes"] == ["Ingress"]  # no egress at all for the database
    monitor_egress = by_name["gdx-monitor"]["egress"]
    assert {"ipBlock": {"cidr": "10.40.1.10/32"}} in monitor_egress[1]["to"]
    assert monitor_egress[1]["ports"] == [{"protocol": "TCP", "port": 9470}]


def test_foundation_publishes_the_ca_and_the_inventory_without_business_database_secrets(
    monitor: RecordingMonitor, pki: Path
) -> None:
    from gdx.inventory import central_view
    from infra.components.foundation import Foundation, FoundationArgs

    view = central_view(INVENTORY)

    @pulumi.runtime.test
    def declare() -> pulumi.Output[Any]:
        foundation = Foundation("platform", FoundationArgs("gdx", platform_pki.load(pki).ca, view))
        return pulumi.Output.all(foundation.namespace, foundation.ca_bundle, foundation.inventory).apply(
            lambda names: assert_equal(names, ["gdx", "gdx-platform-ca", "gdx-inventory"])
        )

    declare()
    (namespace,) = objects(monitor, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    (ca,) = objects(monitor, "Secret")
    assert ca["stringData"]["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    (inventory,) = objects(monitor, "ConfigMap")
    text = inventory["data"]["inventory.yml"]
    assert "ANSIBLE_VAULT" in INVENTORY.read_text(encoding="utf-8")
    assert "ANSIBLE_VAULT" not in text
    assert "gdx_business_db" not in text
    assert "zjg-gaj.population" in text  # what the exchange and the monitor need stays
    central_path = pki.parent / "central-inventory.yml"
    central_path.write_text(text, encoding="utf-8")
    central = load_inventory(central_path, require_secrets=False)
    original = load_inventory(INVENTORY, require_secrets=False)
    assert [(n.department_id, n.address, n.publishes, n.subscribes) for n in central.nodes] == [
        (n.department_id, n.address, n.publishes, n.subscribes) for n in original.nodes
    ]
    assert all(n.business_db is None for n in central.nodes)
