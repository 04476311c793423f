"""One error shape for every refusal: ``{"error": code, "message": text, "details": [...]}``."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from gdx.protocol import MAX_BATCH_CHANGES


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} does not exist")


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        body = {"error": exc.code, "message": exc.message, "details": exc.details}
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(psycopg.errors.DataError)
    async def _data_error(_: Request, exc: psycopg.errors.DataError) -> JSONResponse:
        # Input that passed validation but that PostgreSQL cannot store or compare (a NUL
        # character in a text value, for instance) is the caller's error, not the server's.
        message = f"the request holds a value the database cannot take: {exc.diag.message_primary or exc}"
        return JSONResponse({"error": "invalid_value", "message": message, "details": []}, 422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        for err in errors:
            if err.get("type") == "too_long" and tuple(err.get("loc", ())) == ("body", "changes"):
                message = f"a batch holds at most {MAX_BATCH_CHANGES} changes; split it"
                return JSONResponse({"error": "batch_too_large", "message": message, "details": []}, 413)
        if any(err.get("type") == "json_invalid" for err in errors):
            first = errors[0]
            message = f"the body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}"
            return JSONResponse({"error": "malformed_json", "message": message, "details": []}, 400)
        details = [{"where": _where(tuple(err["loc"])), "problem": err["msg"]} for err in errors]
        summary = "; ".join(f"{d['where']}: {d['problem']}" for d in details[:5])
        return JSONResponse({"error": "invalid_request", "message": summary, "details": details}, 422)
