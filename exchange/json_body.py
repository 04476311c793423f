"""Request bodies parsed with orjson, for the routes that take large ones.

FastAPI reads a JSON body with the standard library's json.loads; for a 1,000-change batch that
was 6 ms of the exchange's single thread, orjson takes 2 ms. orjson's decode error is a
json.JSONDecodeError, so a malformed body gets the same 422 as before.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

_UNREAD = object()


class _OrjsonRequest(Request):
    _parsed: Any = _UNREAD

    async def json(self) -> Any:
        if self._parsed is _UNREAD:
            self._parsed = orjson.loads(await self.body())
        return self._parsed


class OrjsonRoute(APIRoute):
    """An APIRoute whose handler sees a request that parses its body with orjson."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(_OrjsonRequest(request.scope, request.receive))

        return route
