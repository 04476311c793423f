"""infra/rules.py as Pulumi policies: one per rule, all mandatory."""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.rules import RESOURCE_RULES, STACK_RULES, Manifest


def _is_kubernetes(resource_type: str) -> bool:
    return resource_type.startswith("kubernetes:")


def _resource_policy(name: str, description: str, rule: Any) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if _is_kubernetes(args.resource_type):
            for problem in rule(dict(args.props)):
                report(problem, None)

    return ResourceValidationPolicy(name, description, validate, EnforcementLevel.MANDATORY)


def _stack_policy(name: str, description: str, rule: Any) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        manifests: list[Manifest] = [dict(r.props) for r in args.resources if _is_kubernetes(r.resource_type)]
        for problem in rule(manifests):
            report(problem, None)

    return StackValidationPolicy(name, description, validate, EnforcementLevel.MANDATORY)


POLICIES: list[Policy] = [_resource_policy(name, text, fn) for name, (text, fn) in RESOURCE_RULES.items()] + [
    _stack_policy(name, text, fn) for name, (text, fn) in STACK_RULES.items()
]
