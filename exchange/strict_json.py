"""JSON bodies read strictly: an object that names a member twice is refused (400).

Most parsers, FastAPI's (json.loads) and the push's fast reader (msgspec) among them, keep
the last of two members with one name, so a bad value could hide behind a later good one.
Every route's body goes through loads_strict: FastAPI's through StrictJsonRoute, the push's
through exchange.push_body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class DuplicateMember(json.JSONDecodeError):
    """A JSON object naming a member twice: most parsers keep the last one silently, so a bad
    value could hide behind a later good one."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        names = [name for name, _ in pairs]
        twice = next(name for name in names if names.count(name) > 1)
        raise DuplicateMember(f"an object names the member {twice!r} twice", "", 0)
    return obj


def loads_strict(body: bytes | str) -> Any:
    """JSON as json.loads reads it, refusing objects that name a member twice (DuplicateMember,
    a JSONDecodeError: FastAPI answers it as malformed JSON)."""
    return json.loads(body, object_pairs_hook=_no_duplicates)


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose JSON body is read by loads_strict (FastAPI's pattern for a custom request class)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
