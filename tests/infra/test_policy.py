"""The policy rules catch what they exist for, and the Pulumi policy pack reports through them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.policy.policies import POLICIES
from infra.render import Rendering
from infra.rules import LOAD_BALANCER_REASON, RESOURCE_RULES, STACK_RULES, check
from infra.validate import validate

Manifest = dict[str, Any]


def _container(m: Manifest) -> dict[str, Any]:
    return m["spec"]["template"]["spec"]["containers"][0]


def _set(path: str, value: Any) -> Callable[[Manifest], None]:
    def change(m: Manifest) -> None:
        target = _container(m)
        *parents, last = path.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value

    return change


BREAKAGES: dict[str, tuple[str, Callable[[Manifest], None]]] = {
    "no memory limit": ("gdx-limits-and-probes", _set("resources.limits.memory", None)),
    "no readiness probe": ("gdx-limits-and-probes", _set("readinessProbe", None)),
    "runs as root": ("gdx-non-root", _set("securityContext.runAsUser", 0)),
    "may escalate": ("gdx-non-root", _set("securityContext.allowPrivilegeEscalation", True)),
    "writable root": ("gdx-read-only-root", _set("securityContext.readOnlyRootFilesystem", False)),
    "latest image": ("gdx-pinned-images", _set("image", "registry.zjg.gov.cn/gdx/gdx:latest")),
    "untagged image": ("gdx-pinned-images", _set("image", "registry.zjg.gov.cn/gdx/gdx")),
}


@pytest.mark.parametrize("breakage", BREAKAGES, ids=list(BREAKAGES))
def test_each_resource_rule_catches_its_fault(rendered: dict[str, Rendering], breakage: str) -> None:
    rule, change = BREAKAGES[breakage]
    # A tag in prod breaks the digest rule too (tested apart): the image rules are shown on dev.
    manifests = copy.deepcopy(rendered["dev" if rule == "gdx-pinned-images" else "prod"].manifests)
    deployment = next(m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "gdx-exchange")
    change(deployment)
    found = check(manifests)
    assert len(found) == 1, found
    assert found[0].startswith(f"{rule}: Deployment gdx/gdx-exchange container exchange: "), found


def test_a_load_balancer_needs_its_reason() -> None:
    service: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "gdx-exchange-lb", "namespace": "gdx"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]},
    }
    (_fn_text, fn) = RESOURCE_RULES["gdx-load-balancer-reason"]
    assert fn(service) == [
        f"Service gdx/gdx-exchange-lb: type LoadBalancer without the annotation {LOAD_BALANCER_REASON} saying why"
    ]
    service["metadata"]["annotations"] = {LOAD_BALANCER_REASON: "the government network's F5 forwards to it"}
    assert fn(service) == []


def test_stack_rules_want_a_network_policy_per_namespace_and_budgets_for_replicas(
    rendered: dict[str, Rendering],
) -> None:
    manifests = copy.deepcopy(rendered["prod"].manifests)
    without_policies = [m for m in manifests if m["kind"] != "NetworkPolicy"]
    assert STACK_RULES["gdx-network-policy-per-namespace"][1](without_policies) == [
        "namespace gdx: no NetworkPolicy (deny by default, then allow)"
    ]
    without_budget = [m for m in manifests if m["kind"] != "PodDisruptionBudget"]
    assert STACK_RULES["gdx-pdb-for-replicated"][1](without_budget) == [
        "Deployment gdx/gdx-exchange: 3 replicas and no PodDisruptionBudget selecting them"
    ]
    # A budget that selects other pods does not count.
    for m in manifests:
        if m["kind"] == "PodDisruptionBudget":
            m["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/name": "gdx-monitor"}
    assert len(STACK_RULES["gdx-pdb-for-replicated"][1](manifests)) == 1


def _resource(manifest: Manifest) -> tuple[str, Manifest]:
    group_version = manifest["apiVersion"] if "/" in manifest["apiVersion"] else f"core/{manifest['apiVersion']}"
    return f"kubernetes:{group_version}:{manifest['kind']}", manifest


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _run_pack(manifests: list[Manifest]) -> list[str]:
    reported: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        reported.append(message)

    for policy in POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            for m in manifests:
                kind, props = _resource(m)
                args = ResourceValidationArgs(
                    kind, props, f"urn:{m['metadata']['name']}", m["metadata"]["name"], _options(), None
                )
                policy.validate(args, report)  # type: ignore[operator]
        else:
            assert isinstance(policy, StackValidationPolicy)
            resources = [
                PolicyResource(
                    *_resource(m), f"urn:{m['metadata']['name']}", m["metadata"]["name"], _options(), None, None, [], {}
                )
                for m in manifests
            ]
            policy.validate(StackValidationArgs(resources), report)  # type: ignore[operator]
    return reported


def test_the_policy_pack_is_mandatory_and_reports_what_the_rules_find(rendered: dict[str, Rendering]) -> None:
    assert {p.name for p in POLICIES} == set(RESOURCE_RULES) | set(STACK_RULES)
    assert all(p.enforcement_level is EnforcementLevel.MANDATORY for p in POLICIES)
    manifests = copy.deepcopy(rendered["prod"].manifests)
    assert _run_pack(manifests) == []
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    _container(deployment)["image"] = "registry.zjg.gov.cn/gdx/gdx:latest"
    manifests = [m for m in manifests if m["kind"] != "NetworkPolicy"]
    reported = _run_pack(manifests)
    assert len(reported) == 3, reported
    assert any("never latest" in r for r in reported)
    assert any("not pinned by digest" in r for r in reported), "prod's namespace requires digests"
    assert any("no NetworkPolicy" in r for r in reported)


def test_schema_validation_catches_a_wrong_type_and_an_unknown_field(rendered: dict[str, Rendering]) -> None:
    manifests = copy.deepcopy(rendered["dev"].manifests)
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "two"
    job = next(m for m in manifests if m["kind"] == "Job")
    _container(job)["readOnlyRootFileSystem"] = True  # misspelt: strict validation refuses it
    report = validate(manifests)
    assert len(report.problems) == 2, report.problems
    assert any("spec.replicas" in p and "'two'" in p for p in report.problems)
    assert any("readOnlyRootFileSystem" in p for p in report.problems)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("a tag in production", "image registry.zjg.gov.cn/gdx/gdx:0.1.0 is not pinned by digest"),
        ("no quota", "namespace gdx: no ResourceQuota"),
        ("no limit range", "namespace gdx: no LimitRange"),
        ("no priority", "Deployment gdx/gdx-exchange: no priorityClassName"),
    ],
)
def test_the_namespace_rules_catch_their_faults(rendered: dict[str, Rendering], breakage: str, message: str) -> None:
    manifests = copy.deepcopy(rendered["prod"].manifests)
    exchange = next(m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "gdx-exchange")
    if breakage == "a tag in production":
        _container(exchange)["image"] = "registry.zjg.gov.cn/gdx/gdx:0.1.0"
    elif breakage == "no priority":
        del exchange["spec"]["template"]["spec"]["priorityClassName"]
    else:
        kind = "ResourceQuota" if breakage == "no quota" else "LimitRange"
        manifests = [m for m in manifests if m["kind"] != kind]
    found = check(manifests)
    assert len(found) == 1, found
    assert message in found[0], found
    assert check(rendered["dev"].manifests) == [], "dev has no digests and needs none"
