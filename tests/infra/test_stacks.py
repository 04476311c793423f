"""Every stack rendered under the mocks: what it holds, schema-valid, within the policy rules."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

from gdx import __version__
from gdx.pki import issue
from infra.capacity import quantity
from infra.render import REDACTED, RenderError, Rendering, render, stack_config, write
from infra.rules import check
from infra.settings import SettingsError
from infra.validate import crd_schemas_installed, validate
from tests.support.stacks import INVENTORY, SECRETS, STACKS


@pytest.mark.parametrize("stack", STACKS)
def test_every_manifest_is_valid_kubernetes_1_29_custom_resources_included(
    rendered: dict[str, Rendering], stack: str
) -> None:
    assert crd_schemas_installed(), "the CRDs' schemas are missing: make setup (npm ci in infra/crd)"
    report = validate(rendered[stack].manifests)
    assert report.problems == []
    assert report.unchecked == []
    assert report.checked == len(rendered[stack].manifests)


def test_a_custom_resource_off_its_schema_is_reported(rendered: dict[str, Rendering]) -> None:
    cluster = copy.deepcopy(rendered["prod"].one("Cluster", "gdx-db"))
    cluster["spec"]["instances"] = "three"
    rule = copy.deepcopy(rendered["prod"].one("PrometheusRule", "gdx"))
    del rule["spec"]["groups"][0]["name"]
    unknown = {"apiVersion": "example.gov.cn/v1", "kind": "Widget", "metadata": {"name": "w"}}
    report = validate([cluster, rule, unknown])
    assert len(report.problems) == 2, report.problems
    assert "Cluster gdx-db" in report.problems[0]
    assert "instances must be integer" in report.problems[0]
    assert "PrometheusRule gdx" in report.problems[1]
    assert "name" in report.problems[1]
    assert report.unchecked == ["example.gov.cn/v1 Widget w"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_keeps_the_policy_rules(rendered: dict[str, Rendering], stack: str) -> None:
    assert check(rendered[stack].manifests) == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_declares_the_platform_and_its_outputs(rendered: dict[str, Rendering], stack: str) -> None:
    r = rendered[stack]
    for kind, name in [
        ("Namespace", "gdx"),
        ("ServiceAccount", "gdx-exchange"),
        ("Deployment", "gdx-exchange"),
        ("Service", "gdx-exchange"),
        ("PodDisruptionBudget", "gdx-exchange"),
        ("Deployment", "gdx-monitor"),
        ("NetworkPolicy", "gdx-default-deny"),
        ("Secret", "gdx-platform-ca"),
        ("ConfigMap", "gdx-inventory"),
    ]:
        r.one(kind, name)
    assert len(r.find("Job")) == 1
    assert r.outputs["ca_bundle"] == "gdx-platform-ca"
    assert sorted(r.outputs["dashboards"]) == ["gdx-dashboard-gdx-department", "gdx-dashboard-gdx-overview"]
    assert r.outputs["exchange_url"].startswith("https://")
    # Every Kubernetes object belongs to a component: the program itself declares none.
    for resource in r.resources:
        assert "$gdx:component:" in resource.parent or resource.type.startswith("gdx:component:"), resource.urn
    # The migration Job precedes the exchange's Deployment in every stack.
    by_kind = {x.kind: x for x in r.resources if x.name.startswith("exchange-")}
    assert by_kind["Job"].urn in by_kind["Deployment"].dependencies
    deployment = r.one("Deployment", "gdx-exchange")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    url_secret = env["GDX_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
    assert url_secret == {"local": "gdx-db-credentials", "dev": "gdx-db-credentials", "prod": "gdx-db-app"}[stack]


def test_the_stacks_differ_where_the_design_says(rendered: dict[str, Rendering]) -> None:
    local, dev, prod = (rendered[s] for s in STACKS)
    assert local.find("Ingress") == []
    assert local.outputs["exchange_url"] == "https://127.0.0.1:8443/"
    assert local.one("Deployment", "gdx-exchange")["spec"]["template"]["spec"]["hostNetwork"] is True
    assert local.one("StatefulSet", "gdx-db")
    assert dev.one("StatefulSet", "gdx-db")
    assert prod.find("StatefulSet") == []
    assert prod.one("Cluster", "gdx-db")["spec"]["instances"] == 3
    assert dev.outputs["exchange_url"] == "https://exchange.dev.zjg.gov.cn/"
    assert prod.outputs["exchange_url"] == "https://exchange.zjg.gov.cn/"
    assert prod.one("Deployment", "gdx-exchange")["spec"]["replicas"] == 3
    assert prod.one("HorizontalPodAutoscaler", "gdx-exchange")["spec"]["maxReplicas"] == 8
    assert prod.one("PrometheusRule", "gdx")
    assert dev.find("PrometheusRule") == []
    assert dev.one("ConfigMap", "gdx-prometheus-rules")

    def tls_alerts(rendering: Rendering) -> str:
        container = rendering.one("Deployment", "gdx-exchange")["spec"]["template"]["spec"]["containers"][0]
        return next(e["value"] for e in container["env"] if e["name"] == "GDX_TLS_ALERTS")

    # Served directly, the exchange tells a refused client why; behind prod's ingress, the ingress does.
    assert (tls_alerts(local), tls_alerts(prod)) == ("true", "false")


@pytest.mark.parametrize("stack", STACKS)
def test_images_are_this_version(rendered: dict[str, Rendering], stack: str) -> None:
    """The stacks name the image of the version being released, so a release cannot ship an old one."""
    image = stack_config(stack)["image"].split("@sha256:")[0]
    assert image.endswith(f":{__version__}"), f"Pulumi.{stack}.yaml: gdx:image {image} is not version {__version__}"


def test_written_manifests_hide_secrets_unless_asked(rendered: dict[str, Rendering], tmp_path: Path) -> None:
    hidden = write(rendered["local"], tmp_path / "review")
    shown = write(rendered["local"], tmp_path / "play", with_secrets=True)
    assert [p.name for p in hidden] == [p.name for p in shown]
    assert [p.name for p in hidden[:2]] == ["000-priorityclass-gdx-platform.yaml", "001-namespace-gdx.yaml"]
    credentials = next(p for p in hidden if p.name.endswith("secret-gdx-db-credentials.yaml"))
    assert yaml.safe_load(credentials.read_text())["stringData"] == {"password": REDACTED, "uri": REDACTED}
    real = yaml.safe_load((tmp_path / "play" / credentials.name).read_text())
    assert real["stringData"]["uri"].startswith("postgresql://gdx:pa%20ss%2Fw%C3%B6rd%40%3A%25@127.0.0.1:15432/")
    assert (tmp_path / "play" / credentials.name).stat().st_mode & 0o077 == 0
    statefulset = yaml.safe_load(next(p for p in shown if "statefulset" in p.name).read_text())
    assert isinstance(statefulset["spec"]["replicas"], int)  # the mocks' floats made integers again
    assert "-----BEGIN" not in "".join(p.read_text() for p in hidden if "secret" in p.name)


def test_a_missing_secret_or_bad_setting_is_named(pki: Path) -> None:
    with pytest.raises(RenderError, match="statefulset database needs gdx:databasePassword; give it with --secret"):
        render("local", pki_dir=pki, inventory=INVENTORY)
    with pytest.raises(SettingsError) as bad:
        render(
            "dev",
            pki_dir=pki,
            inventory=INVENTORY,
            secrets={"databasePassword": "x"},
            overrides={
                "image": "registry.zjg.gov.cn/gdx/gdx:latest",
                "exchange": {"replica": 1},
                "hostNetwork": "maybe",
            },
        )
    assert bad.value.problems == [
        "gdx:image: 'registry.zjg.gov.cn/gdx/gdx:latest': never latest; pin a version tag or a digest",
        "gdx:hostNetwork: Input should be a valid boolean, unable to interpret input",
        "gdx:exchange.replica: unknown setting (misspelt?)",
    ]
    with pytest.raises(SettingsError, match=r"gdx:exchange: maxReplicas \(2\) is below replicas \(5\)"):
        render("dev", pki_dir=pki, inventory=INVENTORY, overrides={"exchange": {"replicas": 5, "maxReplicas": 2}})
    with pytest.raises(SettingsError, match=r"gdx:database: .*needs backup"):
        render("prod", pki_dir=pki, inventory=INVENTORY, overrides={"database": {"kind": "cloudnative-pg"}})
    with pytest.raises(RenderError, match="stacks: dev, local, prod"):
        render("staging", pki_dir=pki, inventory=INVENTORY)


def test_a_pki_folder_without_an_identity_says_how_to_make_it(pki: Path, tmp_path: Path) -> None:
    partial = tmp_path / "pki"
    partial.mkdir()
    for name in ("ca.crt", "exchange.crt", "exchange.key"):
        (partial / name).write_bytes((pki / name).read_bytes())
    with pytest.raises(RenderError, match=r"ingress.crt \(run `gdx ca issue ingress --role ingress"):
        render("prod", pki_dir=partial, inventory=INVENTORY)


def test_the_alerts_link_to_the_runbook_site_the_operator_names(pki: Path) -> None:
    base = "https://ops.zjg.gov.cn/gdx/runbooks"
    monitoring = {**stack_config("prod")["monitoring"], "runbookBaseUrl": base}
    rendering = render("prod", pki_dir=pki, inventory=INVENTORY, overrides={"monitoring": monitoring})
    (rule,) = [m for m in rendering.manifests if m["kind"] == "PrometheusRule"]
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) >= 15
    assert all(a["annotations"]["runbook_url"].startswith(f"{base}/Gdx") for a in alerts)
    assert {a["annotations"]["runbook_url"] for a in alerts if a["alert"] == "GdxNodeDown"} == {
        f"{base}/GdxNodeDown.md"
    }
    with pytest.raises(SettingsError, match="runbookBaseUrl"):
        render("prod", pki_dir=pki, inventory=INVENTORY, overrides={"monitoring": {"runbookBaseUrl": "ops wiki"}})


def test_a_changed_inventory_or_certificate_reaches_the_running_pods(pki: Path, tmp_path: Path) -> None:
    """New pods (checksum annotations) and a new migration Job, which loads the department registry."""

    def picked(rendering: Rendering) -> tuple[str, str, str]:
        by_kind = {(m["kind"], m["metadata"]["name"]): m for m in rendering.manifests}
        exchange = by_kind["Deployment", "gdx-exchange"]["spec"]["template"]["metadata"]["annotations"]
        monitor = by_kind["Deployment", "gdx-monitor"]["spec"]["template"]["metadata"]["annotations"]
        (job,) = [name for kind, name in by_kind if kind == "Job"]
        return exchange["gdx.io/tls-checksum"], monitor["gdx.io/config-checksum"], job

    before = picked(render("dev", pki_dir=pki, inventory=INVENTORY, secrets=SECRETS))
    changed = tmp_path / "inventory.yml"
    changed.write_text(INVENTORY.read_text(encoding="utf-8").replace("张家港市公安局", "张家港市公安局（新）"))
    after = picked(render("dev", pki_dir=pki, inventory=changed, secrets=SECRETS))
    assert after[0] == before[0], "the exchange's pods mount no inventory"
    assert after[1] != before[1], "the monitor reads the inventory at start: a new pod"
    assert after[2] != before[2], "a new Job loads the changed registry"
    renewed = tmp_path / "pki"
    shutil.copytree(pki, renewed)
    issue(renewed, "exchange", server_names=["gdx-exchange.gdx.svc", "exchange.zjg.gov.cn", "localhost"])
    again = picked(render("dev", pki_dir=renewed, inventory=INVENTORY, secrets=SECRETS))
    assert again[0] != before[0], "a renewed certificate rolls the exchange's pods"


def test_the_exchange_never_opens_more_connections_than_the_database_takes(pki: Path) -> None:
    exchange = {"replicas": 4, "maxReplicas": 20, "poolMax": 10}
    with pytest.raises(SettingsError, match=r"maxConnections \(200\) is below .* = 245; raise maxConnections"):
        render("dev", pki_dir=pki, inventory=INVENTORY, secrets=SECRETS, overrides={"exchange": exchange})
    database = {**stack_config("dev")["database"], "maxConnections": 300}
    rendering = render(
        "dev", pki_dir=pki, inventory=INVENTORY, secrets=SECRETS, overrides={"exchange": exchange, "database": database}
    )
    (statefulset,) = [m for m in rendering.manifests if m["kind"] == "StatefulSet"]
    assert "max_connections=300" in statefulset["spec"]["template"]["spec"]["containers"][0]["args"]


def test_the_prod_database_reaches_only_the_api_server_and_the_backup_store(rendered: dict[str, Rendering]) -> None:
    policies = {m["metadata"]["name"]: m for m in rendered["prod"].manifests if m["kind"] == "NetworkPolicy"}
    database = policies["gdx-database"]["spec"]
    outside = [rule for rule in database["egress"] if any("ipBlock" in peer for peer in rule.get("to", []))]
    assert all(rule.get("to") for rule in database["egress"]), "no egress rule without a destination"
    assert {peer["ipBlock"]["cidr"] for rule in outside for peer in rule["to"]} == {"10.0.0.1/32", "10.90.0.0/24"}
    metrics = [rule for rule in database["ingress"] if rule["ports"] == [{"protocol": "TCP", "port": 9187}]]
    assert metrics, "Prometheus reads the database's exporters"
    assert [m for m in rendered["prod"].manifests if m["kind"] == "PodMonitor"]


def test_production_pins_its_images_by_digest_and_guards_its_namespace(
    rendered: dict[str, Rendering], pki: Path
) -> None:
    prod = rendered["prod"].manifests
    (namespace,) = [m for m in prod if m["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["gdx.io/require-image-digests"] == "true"
    with pytest.raises(
        SettingsError, match=r"requireImageDigests: pin by digest .* image registry.zjg.gov.cn/gdx/gdx:0"
    ):
        render("prod", pki_dir=pki, inventory=INVENTORY, overrides={"image": "registry.zjg.gov.cn/gdx/gdx:0.1.0"})
    (quota,) = [m for m in prod if m["kind"] == "ResourceQuota"]
    hard = quota["spec"]["hard"]
    exchange = next(m for m in prod if m["kind"] == "Deployment" and m["metadata"]["name"] == "gdx-exchange")
    (autoscaler,) = [m for m in prod if m["kind"] == "HorizontalPodAutoscaler"]
    per_pod = quantity(exchange["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
    (cluster,) = [m for m in prod if m["kind"] == "Cluster"]
    database = cluster["spec"]["instances"] * quantity(cluster["spec"]["resources"]["requests"]["cpu"])
    at_most = (autoscaler["spec"]["maxReplicas"] + 1) * per_pod + database
    assert quantity(hard["requests.cpu"]) >= at_most, "the quota lets every exchange pod and the database run"
    assert {m["kind"] for m in prod} >= {"PriorityClass", "LimitRange"}


def test_inbox_webhooks_need_their_networks_and_get_an_egress_to_them(pki: Path, tmp_path: Path) -> None:
    with_hook = tmp_path / "inventory.yml"
    text = INVENTORY.read_text(encoding="utf-8")
    marker = "jurisdiction: zhangjiagang}"
    assert marker in text
    with_hook.write_text(
        text.replace(marker, "jurisdiction: zhangjiagang, inbox_webhook: 'https://oa.zjg.gov.cn:8443/inbox'}", 1),
        encoding="utf-8",
    )
    with pytest.raises(SettingsError, match=r"names inbox webhooks .*set gdx:exchange.webhookCidrs"):
        render("dev", pki_dir=pki, inventory=with_hook, secrets=SECRETS)
    cidrs = {"exchange": {"webhookCidrs": ["10.50.0.0/24"]}}
    rendering = render("dev", pki_dir=pki, inventory=with_hook, overrides=cidrs, secrets=SECRETS)
    (policy,) = [
        m for m in rendering.manifests if m["kind"] == "NetworkPolicy" and m["metadata"]["name"] == "gdx-exchange"
    ]
    assert {"to": [{"ipBlock": {"cidr": "10.50.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 8443}]} in policy[
        "spec"
    ]["egress"]


def test_an_object_store_for_files_is_configured_with_secret_keys_and_reached_through_the_policy(
    pki: Path, tmp_path: Path
) -> None:
    store = {"exchange": {"fileStore": {"endpoint": "https://oss.zjg.gov.cn:9000", "bucket": "gdx-files",
                                        "cidr": "10.60.0.0/24", "region": "zjg"}}}  # fmt: skip
    with pytest.raises(RenderError, match="--secret s3AccessKey=VALUE --secret s3SecretKey=VALUE"):
        render("dev", pki_dir=pki, inventory=INVENTORY, overrides=store, secrets=SECRETS)
    keys = {"s3AccessKey": "gdx-exchange", "s3SecretKey": "s3cr3t/key+"}
    rendering = render("dev", pki_dir=pki, inventory=INVENTORY, overrides=store, secrets={**SECRETS, **keys})
    exchange = next(
        m for m in rendering.manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "gdx-exchange"
    )
    env = {e["name"]: e for e in exchange["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GDX_S3_ENDPOINT"]["value"] == "https://oss.zjg.gov.cn:9000"
    assert env["GDX_S3_BUCKET"]["value"] == "gdx-files"
    assert env["GDX_S3_REGION"]["value"] == "zjg"
    assert env["GDX_S3_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "gdx-exchange-file-store",
        "key": "secret-key",
    }
    assert "s3cr3t" not in json.dumps(exchange)  # the keys only in the Secret
    (secret,) = [
        m for m in rendering.manifests if m["kind"] == "Secret" and m["metadata"]["name"] == "gdx-exchange-file-store"
    ]
    assert set(secret.get("stringData") or secret.get("data") or {}) == {"access-key", "secret-key"}
    (policy,) = [
        m for m in rendering.manifests if m["kind"] == "NetworkPolicy" and m["metadata"]["name"] == "gdx-exchange"
    ]
    assert {"to": [{"ipBlock": {"cidr": "10.60.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 9000}]} in policy[
        "spec"
    ]["egress"]
    plain_http = {"exchange": {"fileStore": {**store["exchange"]["fileStore"], "endpoint": "http://oss:9000"}}}
    with pytest.raises(SettingsError, match="endpoint"):
        render("dev", pki_dir=pki, inventory=INVENTORY, overrides=plain_http, secrets={**SECRETS, **keys})
