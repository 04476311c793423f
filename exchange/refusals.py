"""Every refusal answers in one shape and leaves one audit entry.

The shape is ``{"error": code, "message": text, "details": [...]}`` for every status the
exchange sends (FastAPI's own 404, 405 and body errors included). The audit entry names who
asked (the certificate's subject, or none), the route, the resource, the status and the
reason. A refusal that a route audits itself (exchange.deps.refused, with what it knows
of the request) is not audited twice.
"""

from __future__ import annotations

from typing import Any

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from exchange import audit, metrics
from exchange.errors import ApiError
from exchange.identity import Principal, certificate_identity
from gdx.protocol import MAX_BATCH_CHANGES

log = structlog.get_logger("gdx.exchange")

# A refusal's audit entry waits this long for a pooled connection, no longer: the refusal is
# answered all the same, and a failed entry is logged and counted.
AUDIT_WAIT_S = 5.0
_PATH_KEPT = 200  # characters of an unmatched path kept in its audit entry


def error_response(status: int, code: str, message: str, details: list[Any] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, "details": details or []}, status_code=status)


def _caller(request: Request) -> Principal | None:
    try:
        identity = certificate_identity(request)
    except ApiError:
        return None
    return Principal(identity.name, identity.role)


async def record_refusal(request: Request, status: int, code: str, message: str) -> None:
    """One audit entry for a refused request, in a transaction of its own."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    scope = {
        "route": f"{request.method} {template}" if template else None,
        "path": None if template else request.url.path[:_PATH_KEPT],
        "status": status,
        "error": code,
        "reason": message,
    }
    pool = getattr(request.app.state, "pool", None)
    if pool is None:
        return
    try:
        async with pool.connection(timeout=AUDIT_WAIT_S) as conn, conn.transaction():
            await audit.record(
                conn,
                _caller(request),
                getattr(route, "name", None) or "request",
                resource=request.path_params.get("code"),
                scope={k: v for k, v in scope.items() if v is not None},
                outcome="refused",
            )
    except (psycopg.Error, PoolTimeout, OSError) as exc:
        metrics.AUDIT_FAILURES.inc()
        log.error("a refusal could not be audited", status=status, reason=message, error=str(exc))


async def refuse(
    request: Request, status: int, code: str, message: str, details: list[Any] | None = None
) -> JSONResponse:
    await record_refusal(request, status, code, message)
    return error_response(status, code, message, details)


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.audited:
            return error_response(exc.status, exc.code, exc.message, exc.details)
        return await refuse(request, exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, ClientDisconnect):
            raise exc.__cause__  # FastAPI took it for a body it could not parse; nobody is left to answer
        if exc.status_code == 404 and request.scope.get("route") is None:
            message = f"no such route: {request.method} {request.url.path[:_PATH_KEPT]} (the API is listed at /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path[:_PATH_KEPT]}"
        else:
            message = str(exc.detail)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        response = await refuse(request, exc.status_code, code, message)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(psycopg.errors.DataError)
    async def _data_error(request: Request, exc: psycopg.errors.DataError) -> JSONResponse:
        # Input that passed validation but that PostgreSQL cannot store or compare (a NUL
        # character in a text value, for instance) is the caller's error, not the server's.
        message = f"the request holds a value the database cannot take: {exc.diag.message_primary or exc}"
        return await refuse(request, 422, "invalid_value", message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        for err in errors:
            if err.get("type") == "too_long" and tuple(err.get("loc", ())) == ("body", "changes"):
                message = f"a batch holds at most {MAX_BATCH_CHANGES} changes; split it"
                return await refuse(request, 413, "batch_too_large", message)
        if any(err.get("type") == "json_invalid" for err in errors):
            first = errors[0]
            message = f"the body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}"
            return await refuse(request, 400, "malformed_json", message)
        details = [{"where": _where(tuple(err["loc"])), "problem": err["msg"]} for err in errors]
        summary = "; ".join(f"{d['where']}: {d['problem']}" for d in details[:5])
        return await refuse(request, 422, "invalid_request", summary, details)

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(psycopg.OperationalError)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database is out of reach (restarting, failing over): not the caller's fault, nor a
        # refusal; the agents retry, and Retry-After says when.
        log.warning("the database is unavailable", route=request.url.path, error=str(exc).splitlines()[0][:200])
        response = error_response(503, "unavailable", "the exchange's database is unavailable; try again shortly")
        response.headers["retry-after"] = "5"
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the exception after this; the client gets the documented shape.
        return error_response(500, "internal_error", "the exchange failed to answer; the operators have its log")
