"""The way in for front-end nodes: ingress-nginx verifying their client certificates against the platform CA.

The verified certificate travels to the exchange in the ``ssl-client-cert`` header, over a TLS
connection on which the ingress presents its own certificate (role ``ingress``). The exchange
believes that header only on such a connection and verifies the forwarded certificate again
(exchange/identity.py), so a caller cannot forge it: ingress-nginx overwrites the header, and a
pod that reaches the exchange directly holds no ingress certificate.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.components.common import child, identity_secret, metadata
from infra.pki import Pair
from infra.settings import IngressSettings

NGINX = "nginx.ingress.kubernetes.io/"


@dataclass
class IngressArgs:
    namespace: pulumi.Input[str]
    settings: IngressSettings
    ca_bundle: pulumi.Input[str]  # the Secret holding ca.crt
    ingress_identity: Pair
    ca_certificate: str
    exchange_service: pulumi.Input[str]
    exchange_port: int
    server_tls_secret: pulumi.Input[str]  # the exchange's server certificate, also served by the ingress
    request_timeout_s: int = 120  # the exchange's settings.request_timeout_s
    body_max_mib: int = 512  # the exchange's settings.upload_max_mib: files are its largest bodies


def nginx_annotations(
    namespace: str, ca_bundle: str, client_secret: str, service: str, timeout_s: int = 120, body_max_mib: int = 512
) -> dict[str, str]:
    return {
        # Caller -> ingress: a certificate issued by the platform CA, or no entry.
        NGINX + "auth-tls-verify-client": "on",
        NGINX + "auth-tls-secret": f"{namespace}/{ca_bundle}",
        NGINX + "auth-tls-verify-depth": "1",
        NGINX + "auth-tls-pass-certificate-to-upstream": "true",
        # Ingress -> exchange: TLS, the exchange's certificate verified, the ingress's presented.
        NGINX + "backend-protocol": "HTTPS",
        NGINX + "proxy-ssl-secret": f"{namespace}/{client_secret}",
        NGINX + "proxy-ssl-verify": "on",
        NGINX + "proxy-ssl-name": f"{service}.{namespace}.svc",
        NGINX + "proxy-ssl-server-name": "on",
        # The exchange limits each route's body itself (a batch 16 MiB, a file more) and audits
        # the refusal; the ingress passes bodies up to the largest, as they come, not buffered.
        NGINX + "proxy-body-size": f"{body_max_mib}m",
        NGINX + "proxy-request-buffering": "off",
        NGINX + "proxy-read-timeout": str(timeout_s),
        NGINX + "proxy-send-timeout": str(timeout_s),
    }


class MutualTlsIngress(pulumi.ComponentResource):
    url: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(self, name: str, args: IngressArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gdx:component:MutualTlsIngress", name, None, opts)
        s = args.settings
        client = identity_secret(
            self, f"{name}-client", "gdx-ingress-client", args.namespace, "ingress", args.ingress_identity,
            args.ca_certificate,
        )  # fmt: skip
        notes = pulumi.Output.all(args.namespace, args.ca_bundle, client.metadata.name, args.exchange_service).apply(
            lambda v: nginx_annotations(
                v[0], v[1], v[2], v[3], timeout_s=args.request_timeout_s, body_max_mib=args.body_max_mib
            )
        )
        ingress = k8s.networking.v1.Ingress(
            f"{name}-ingress",
            metadata=metadata("gdx-exchange", args.namespace, "ingress", annotations=notes),
            spec={
                "ingress_class_name": s.class_name,
                "tls": [{"hosts": [s.host], "secret_name": args.server_tls_secret}],
                "rules": [
                    {
                        "host": s.host,
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "path_type": "Prefix",
                                    "backend": {
                                        "service": {
                                            "name": args.exchange_service,
                                            "port": {"number": args.exchange_port},
                                        }
                                    },
                                }
                            ]
                        },
                    }
                ],
            },
            opts=child(self),
        )
        self.url = pulumi.Output.from_input(f"https://{s.host}/")
        self.name = ingress.metadata.name
        self.register_outputs({"url": self.url, "name": self.name})
