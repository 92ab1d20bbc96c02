"""Unknown query parameters are refused, on every route.

Without this, ``POST /infer?fx=500`` answers 200 as if nothing was said, and a client that
believes it set the focal length (or misspelt ``min_confidence``) never learns otherwise. Each
route's parameters are read from the OpenAPI schema, so what is refused is exactly what is not
documented; routes outside the schema (the page, the docs) take none. Static files are left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send


def allowed_query_parameters(openapi: dict, paths: list[str]) -> dict[str, frozenset[str]]:
    """Path -> the query parameter names its operations declare (every method together).

    openapi: the app's OpenAPI schema. paths: every routed path; those not in the schema get none.
    """
    allowed = {path: frozenset() for path in paths}
    for path, operations in openapi.get("paths", {}).items():
        names = {p["name"] for op in operations.values() if isinstance(op, dict)
                 for p in op.get("parameters", ()) if p.get("in") == "query"}
        allowed[path] = frozenset(names)
    return allowed


def unknown_query_detail(path: str, unknown: list[str], allowed: frozenset[str]) -> list[dict]:
    """The 422 detail: one entry per unknown name, each saying what the route does take."""
    takes = f"{path} takes: {', '.join(sorted(allowed))}" if allowed else f"{path} takes no query parameters"
    return [{"loc": ["query", name], "msg": f"unknown query parameter {name!r}; {takes}", "type": "extra_forbidden"}
            for name in unknown]


class RejectUnknownQuery:
    """ASGI middleware: 422 naming the parameters a routed path does not declare.

    allowed: called on the first request (the schema is complete only once every route is added),
    path -> allowed names; paths missing from it (static files, 404s) pass through.
    """

    def __init__(self, app: ASGIApp, allowed: Callable[[], Mapping[str, frozenset[str]]]) -> None:
        self.app, self._allowed, self._table = app, allowed, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            if self._table is None:
                self._table = self._allowed()
            allowed = self._table.get(scope["path"])
            if allowed is not None:
                names = dict.fromkeys(k for k, _ in parse_qsl(scope["query_string"].decode("latin-1"),
                                                              keep_blank_values=True))
                unknown = [n for n in names if n not in allowed]
                if unknown:
                    detail = unknown_query_detail(scope["path"], unknown, allowed)
                    await JSONResponse({"detail": detail}, status_code=422)(scope, receive, send)
                    return
        await self.app(scope, receive, send)
