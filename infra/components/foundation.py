"""The namespace and what every part of the platform reads: the CA bundle and the inventory."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.components.common import child, labels

CA_BUNDLE = "gdx-platform-ca"
INVENTORY = "gdx-inventory"


@dataclass
class FoundationArgs:
    namespace: str
    ca_certificate: str
    inventory_yaml: str


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
        self.namespace = namespace
        self.ca_bundle = ca.metadata.name
        self.inventory = inventory.metadata.name
        self.register_outputs({"namespace": self.namespace, "ca_bundle": self.ca_bundle, "inventory": self.inventory})
