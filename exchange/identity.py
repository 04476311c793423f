"""Who is calling: the subject of the verified client certificate, nothing else.

Two ways a certificate reaches us:
- directly, from the TLS handshake (front-end nodes, staff tools, tests);
- through the cluster's ingress, which verified the caller's certificate and forwards it
  URL-encoded in the ``ssl-client-cert`` header (ingress-nginx's
  ``auth-tls-pass-certificate-to-upstream``). That header is believed only when the
  connection itself comes from a peer whose own certificate has the ``ingress`` role, and
  the forwarded certificate is verified against the CA again; from anyone else the header
  is ignored, so it cannot be forged from outside.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import unquote

from cryptography import x509
from fastapi import Depends, Request

from exchange.errors import ApiError, forbidden
from gdx.peer_tls import peer_certificate_pem
from gdx.pki import Identity, PkiError, Role, identity_of, verify_issued_by

FORWARDED_CERT_HEADER = "ssl-client-cert"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    @property
    def is_department(self) -> bool:
        return self.role is Role.DEPARTMENT


@functools.lru_cache(maxsize=4096)
def _parse(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _unauthenticated(message: str) -> ApiError:
    return ApiError(401, "unauthenticated", message)


def _peer_certificate(request: Request) -> x509.Certificate | None:
    pem = peer_certificate_pem(request.scope)
    return _parse(pem) if pem else None


def certificate_identity(request: Request) -> Identity:
    peer = _peer_certificate(request)
    if peer is None:
        raise _unauthenticated("a client certificate issued by the platform CA is required")
    try:
        identity = identity_of(peer)
    except PkiError as exc:
        raise _unauthenticated(str(exc)) from None
    if identity.role is not Role.INGRESS:
        return identity
    forwarded = request.headers.get(FORWARDED_CERT_HEADER)
    if not forwarded:
        raise _unauthenticated("the ingress forwarded no client certificate")
    try:
        cert = _parse(unquote(forwarded))
        verify_issued_by(cert, request.app.state.ca_cert)
        identity = identity_of(cert)
    except (PkiError, ValueError) as exc:
        raise _unauthenticated(f"forwarded client certificate refused: {exc}") from None
    if identity.role is Role.INGRESS:
        raise _unauthenticated("an ingress certificate cannot act as a caller")
    return identity


async def principal(request: Request) -> Principal:
    identity = certificate_identity(request)
    if identity.role is Role.DEPARTMENT:
        active = await request.app.state.registry.is_active(identity.name)
        if not active:
            raise forbidden(f"department {identity.name!r} is not in the department registry")
    return Principal(identity.name, identity.role)


def require(*roles: Role) -> object:
    """A dependency that lets only callers of ``roles`` through."""

    async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if who.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise forbidden(f"this needs the role {allowed}; your certificate has {who.role.value}")
        return who

    return Depends(check)


Department = Annotated[Principal, require(Role.DEPARTMENT)]
Admin = Annotated[Principal, require(Role.ADMIN)]
Auditor = Annotated[Principal, require(Role.AUDITOR)]
Staff = Annotated[Principal, require(Role.ADMIN, Role.OPERATOR, Role.AUDITOR)]
Operator = Annotated[Principal, require(Role.OPERATOR, Role.ADMIN)]
Anyone = Annotated[Principal, Depends(principal)]
