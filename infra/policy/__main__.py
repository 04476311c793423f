"""The policy pack: `pulumi preview --policy-pack infra/policy` in infra/ (the CLI starts this)."""

from pulumi_policy import EnforcementLevel, PolicyPack

from infra.policy.policies import POLICIES

PolicyPack(name="gdx-kubernetes", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
