"""A route class for the hot endpoints, which read the Request and build the Response themselves.

FastAPI's request handler solves an endpoint's parameters on every request (query string,
dependencies, exit stacks, telemetry hooks), a noticeable share of the event loop's time per
request under load (``docs/performance.md``). An endpoint marked :func:`direct` opts out:
:class:`RequestRoute` calls it as ``endpoint(request, **path_params)``, the path parameters as
the strings the path matched. FastAPI still builds the route's OpenAPI entry from the decorator
and the signature as usual; with ``OPENTELEMETRY=true`` they get FastAPI's request spans, as
every route does (its per-operation spans are off, app/tracing.py). Requests for a direct
endpoint skip FastAPI's middleware stack and router too (:mod:`app.api.dispatch`), unless
tracing is on.

Unmarked endpoints get FastAPI's handler, unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute

DirectEndpoint = Callable[..., Awaitable[Response]]
E = TypeVar("E", bound=DirectEndpoint)


def direct(endpoint: E) -> E:
    """Opt an endpoint in: ``async def f(request: Request, <path params: str>) -> Response``."""
    endpoint.__direct_endpoint__ = True  # type: ignore[attr-defined]
    return endpoint


class RequestRoute(APIRoute):
    """An APIRoute that calls a :func:`direct` endpoint without FastAPI's parameter solving."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        if not getattr(endpoint, "__direct_endpoint__", False):
            return super().get_route_handler()
        expected = ["request", *self.param_convertors]
        parameters = list(inspect.signature(endpoint).parameters)
        if sorted(parameters) != sorted(expected) or not inspect.iscoroutinefunction(endpoint):
            raise TypeError(
                f"direct endpoint {endpoint.__qualname__} of {self.path} must be "
                f"async def ({', '.join(expected)}), not ({', '.join(parameters)})"
            )

        async def handle(request: Request) -> Response:
            response: Response = await endpoint(request, **request.path_params)
            return response

        return handle
