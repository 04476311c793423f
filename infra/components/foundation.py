"""The namespace and what every part of the platform reads: the CA bundle and the inventory."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra.components.common import PRIORITY_CLASS, child, labels
from infra.rules import REQUIRE_DIGESTS

CA_BUNDLE = "gdx-platform-ca"
INVENTORY = "gdx-inventory"


# Above ordinary workloads (0), far below the cluster's own (system-cluster-critical: 2,000,000,000):
# under pressure the exchange and its database are the last of the namespace's neighbours evicted.
PRIORITY = 100_000


@dataclass
class FoundationArgs:
    namespace: str
    ca_certificate: str
    inventory_yaml: str
    require_image_digests: bool = False  # labels the namespace for the policy rule
    quota: dict[str, str] = field(default_factory=dict)  # the ResourceQuota's hard limits (infra/capacity.py)
    container_defaults: dict[str, dict[str, str]] = field(default_factory=dict)  # the LimitRange's


class Foundation(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    ca_bundle: pulumi.Output[str]
    inventory: pulumi.Output[str]

    def __init__(self, name: str, args: FoundationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gdx:component:Foundation", name, None, opts)
        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": args.namespace,
                "labels": {
                    **labels("platform"),
                    # Pod Security Admission: the restricted profile, which every GDX pod meets.
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "v1.29",
                    **({REQUIRE_DIGESTS: "true"} if args.require_image_digests else {}),
                },
            },
            opts=child(self),
        )
        namespace = ns.metadata.name
        # A Secret, not a ConfigMap: ingress-nginx's auth-tls-secret reads ca.crt from a Secret.
        ca = k8s.core.v1.Secret(
            f"{name}-ca-bundle",
            metadata={"name": CA_BUNDLE, "namespace": namespace, "labels": labels("platform")},
            type="Opaque",
            string_data={"ca.crt": args.ca_certificate},
            opts=child(self),
        )
        inventory = k8s.core.v1.ConfigMap(
            f"{name}-inventory",
            metadata={"name": INVENTORY, "namespace": namespace, "labels": labels("platform")},
            data={"inventory.yml": args.inventory_yaml},
            opts=child(self),
        )
        self._guard_rails(name, namespace, args)
        self.namespace = namespace
        self.ca_bundle = ca.metadata.name
        self.inventory = inventory.metadata.name
        self.register_outputs({"namespace": self.namespace, "ca_bundle": self.ca_bundle, "inventory": self.inventory})

    def _guard_rails(self, name: str, namespace: pulumi.Output[str], args: FoundationArgs) -> None:
        """A priority for the platform's pods; a quota and defaults so nothing in the namespace
        can take more than the platform was sized for."""
        k8s.scheduling.v1.PriorityClass(
            f"{name}-priority",
            metadata={"name": PRIORITY_CLASS, "labels": labels("platform")},
            value=PRIORITY,
            global_default=False,
            preemption_policy="PreemptLowerPriority",
            description="GDX: the central exchange, its database and its monitoring",
            opts=child(self),
        )
        if args.quota:
            k8s.core.v1.ResourceQuota(
                f"{name}-quota",
                metadata={"name": "gdx", "namespace": namespace, "labels": labels("platform")},
                spec={"hard": args.quota},
                opts=child(self),
            )
        if args.container_defaults:
            k8s.core.v1.LimitRange(
                f"{name}-limits",
                metadata={"name": "gdx", "namespace": namespace, "labels": labels("platform")},
                spec={"limits": [{"type": "Container", **args.container_defaults}]},
                opts=child(self),
            )
