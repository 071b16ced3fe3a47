"""The prediction routes' short way in: the app as :class:`ServiceApp`, a FastAPI that hands a
request for a :func:`~app.api.routing.direct` route straight to it.

A request through FastAPI passes about a dozen layers before its endpoint runs and as many
on its way out (the body-limit and telemetry wrappers, Starlette's error and exception
middleware, the dependency exit stack, the router and the included routers, the route's
request-response wrapper): on the prediction routes, a share of the event loop's time per
request comparable to the endpoint's own (``docs/performance.md``). A direct endpoint needs
none of them: it reads its Request, answers a Response, and raises the service's errors.

So :meth:`ServiceApp.__call__` finds the route the way FastAPI's router does (each route's own
``matches()``, in the router's order: the routing rules stay the routes'), and when the route
it finds is a direct one, calls the endpoint inside the same user middleware the app was
given (:class:`~app.middleware.RequestContextMiddleware`: request id, body cap, metrics, access
line, a JSON 500 for a bug), turning the exceptions it raises into answers with the app's own
exception handlers. Every other request, and every request while FastAPI's telemetry is on
(its request spans come from the layers skipped here), goes through FastAPI as usual.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request, Exception], Awaitable[Response]]


class ServiceApp(FastAPI):
    """FastAPI, with the short way in for the direct routes (``direct_dispatch``)."""

    def __init__(self, *args: Any, direct_dispatch: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.direct_dispatch = direct_dispatch
        self._routes: list[BaseRoute] | None = None
        self._direct_stack: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.direct_dispatch and scope["type"] == "http" and scope["method"] == "POST":
            child = self._direct_match(scope)
            if child is not None:
                scope.update(child)
                scope["app"] = self
                scope["router"] = self.router
                if self._direct_stack is None:
                    self._direct_stack = self._build_direct_stack()
                await self._direct_stack(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _direct_match(self, scope: Scope) -> MutableMapping[str, Any] | None:
        """The child scope of the route FastAPI's router would pick, if it is a direct one."""
        if self._routes is None:
            self._routes = [
                context.original_route for context in iter_route_contexts(self.router.routes)
            ]
        for route in self._routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                endpoint = child.get("endpoint")
                return child if getattr(endpoint, "__direct_endpoint__", False) else None
        return None

    def _build_direct_stack(self) -> ASGIApp:
        app: ASGIApp = self._call_direct
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app

    async def _call_direct(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response: Response = await scope["endpoint"](request, **scope["path_params"])
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise  # a bug: the middleware answers its 500
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Handler | None:
        """The app's handler for the exception's class or its nearest base (not Exception
        itself: that is a bug's, which the middleware answers)."""
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            handler = self.exception_handlers.get(cls)
            if handler is not None:
                return handler  # type: ignore[return-value]
        return None
