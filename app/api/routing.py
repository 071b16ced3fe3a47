"""A route class for the hot endpoints: they read the Request and build the Response themselves.

FastAPI's own request handler solves an endpoint's parameters on every request (query string,
dependencies, exit stacks, telemetry hooks), even when the only parameter is the Request: about
a tenth of the event loop's time per digits request under load (``make bench``). For
``endpoint(request: Request) -> SomeResponse`` there is nothing to solve, so :class:`RequestRoute`
calls it directly. FastAPI still builds the route's OpenAPI entry from the decorator as usual;
with ``OPENTELEMETRY=true`` these routes get request spans and metrics, but no per-operation
spans (there is no dependency or serialization step to trace).

Any other endpoint signature gets FastAPI's handler, unchanged.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class RequestRoute(APIRoute):
    """An APIRoute that calls ``endpoint(request)`` directly when that is all it takes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        if not _takes_request_returns_response(endpoint) or self.dependant.dependencies:
            return super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await endpoint(request)

        return handle


def _takes_request_returns_response(endpoint: Callable[..., Any]) -> bool:
    """``async def endpoint(request: Request) -> <a Response subclass>``, nothing else."""
    if not inspect.iscoroutinefunction(endpoint):
        return False
    hints = typing.get_type_hints(endpoint)
    parameters = list(inspect.signature(endpoint).parameters)
    returns = hints.get("return")
    return (
        len(parameters) == 1
        and hints.get(parameters[0]) is Request
        and inspect.isclass(returns)
        and issubclass(returns, Response)
    )
